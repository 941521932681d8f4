"""A CSV export cut into parts (adapters.splitting): every part, read as the header and then
its bytes, gives exactly the records of the whole file from its first row on; a cut that
could fall inside a quoted field is not made."""

from __future__ import annotations

import csv
import io
import random

import pytest

from adapters.decoding import Settled, settle
from adapters.splitting import CsvPart, cut_csv

HEADER = "名称,代码,说明\r\n"


def _settled(data: bytes) -> Settled:
    found = settle(io.BytesIO(data), "test")
    assert isinstance(found, Settled)
    return found


def _records(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


def _part_records(data: bytes, part: CsvPart) -> list[list[str]]:
    raw = part.open(io.BytesIO(data)).read()
    text = raw.decode(part.settled.encoding)
    return _records(text)[1:]  # after the header


def _export(rng: random.Random, rows: int, newline: str) -> str:
    """Rows with plain cells, blank lines, and quoted cells holding commas, quotes and line
    breaks."""
    lines = [HEADER.replace("\r\n", newline)]
    for n in range(rows):
        roll = rng.random()
        if roll < 0.05:
            lines.append(newline)
        elif roll < 0.2:
            lines.append(f'湖州{n},"多行\n说明, 含""引号""\r\n{n}",x{newline}')
        else:
            lines.append(f"湖州{n},913305{n:06d},说明{n}{newline}")
    return "".join(lines)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_parts_give_the_whole_files_records_from_their_first_row(
    newline: str, encoding: str
) -> None:
    rng = random.Random(f"{newline}{encoding}")
    for _ in range(5):
        text = _export(rng, rng.randrange(50, 400), newline)
        data = text.encode(encoding)
        whole = _records(text.removeprefix("\ufeff"))[1:]
        for parts in (2, 3, 5):
            cut = cut_csv(io.BytesIO(data), _settled(data), parts, min_part_bytes=64)
            assert cut is not None  # each cut moves on to where a record ends
            assert len(cut) == parts
            assert cut[0].first_row == 1 and cut[-1].end == len(data)
            read: list[list[str]] = []
            for part in cut:
                assert part.first_row == len(read) + 1
                read += _part_records(data, part)
            assert read == whole


def test_lines_before_each_part_are_counted_as_csv_counts_them() -> None:
    text = HEADER + 'a,"two\nlines",x\r\n' * 40 + "b,plain,x\r\n" * 40
    data = text.encode()
    cut = cut_csv(io.BytesIO(data), _settled(data), 2, min_part_bytes=64)
    assert cut is not None
    reader = csv.reader(io.StringIO(text, newline=""))
    lines_at_row = {}
    for row, _ in enumerate(reader):  # row 0: the header
        lines_at_row[row] = reader.line_num - 1  # lines after the header, to this row's end
    second = cut[1]
    assert second.lines_before == lines_at_row[second.first_row - 1]


def test_a_cut_inside_a_quoted_field_is_not_made() -> None:
    body = '"' + "一行\n" * 2000 + '",x,y\n'  # one record over 2,000 lines
    data = (HEADER + body).encode()
    assert cut_csv(io.BytesIO(data), _settled(data), 2, min_part_bytes=64) is None


@pytest.mark.parametrize(
    ("header", "why"),
    [('"名称",代码\n', "a quoted header"), ("名称\r代码\n", "a lone carriage return")],
)
def test_a_header_that_is_not_one_plain_line_is_not_cut(header: str, why: str) -> None:
    data = (header + "a,b\n" * 1000).encode()
    assert cut_csv(io.BytesIO(data), _settled(data), 2, min_part_bytes=64) is None, why


def test_a_small_file_or_one_with_a_nul_is_not_cut() -> None:
    data = (HEADER + "a,b,c\n" * 100).encode()
    assert cut_csv(io.BytesIO(data), _settled(data), 2, min_part_bytes=len(data)) is None
    assert cut_csv(io.BytesIO(data), _settled(data), 2, min_part_bytes=64) is not None
    with_nul = data.replace(b"a,b", b"a\x00,b", 1)
    assert cut_csv(io.BytesIO(with_nul), _settled(with_nul), 2, min_part_bytes=64) is None


def test_a_stray_quote_in_a_plain_cell_moves_a_cut_on_but_not_into_a_record() -> None:
    # One quote per line (a plain cell: csv keeps it as text): only every other line feed
    # has an even count before it, and the cut goes there.
    text = HEADER + "".join(f'管材{n},5" pipe,x\r\n' for n in range(300))
    data = text.encode()
    cut = cut_csv(io.BytesIO(data), _settled(data), 3, min_part_bytes=64)
    assert cut is not None and len(cut) == 3
    assert [r for part in cut for r in _part_records(data, part)] == _records(text)[1:]
