"""A 双公示 penalty export read in parts by reader processes (node.split_reading), on SQLite
and PostgreSQL: the store ends up as one reader would leave it, a bad file is rejected with
the same problems in the same order (a record named twice across parts, too), a whole-file
problem in a later part sends the file to one reader, and a reader that fails or dies stops
the import with nothing written."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.decoding import Settled, settle
from adapters.shuanggongshi import PENALTY_FORMATS
from adapters.splitting import CsvPart, cut_csv
from node.clock import ManualClock
from node.errors import ImportRejected, RowProblem
from node.gendata import generate_penalties
from node.public_records import RecordKind
from node.repair import CHINA
from node.split_reading import ReaderFailed, ReadWhole, read_in_parts
from node.store import Store
from node.store.record_import import RecordImportSummary, StagedRecords, staged_records
from node.store.results import ProblemList

NOW = dt.datetime(2030, 6, 1, 10, tzinfo=CHINA)
FORMAT = "shuanggongshi-cf-csv"
CF_CSV = PENALTY_FORMATS[FORMAT]


def _export(path: pathlib.Path, rows: int) -> bytes:
    records = list(generate_penalties("cn-330500", rows, seed=7, as_of=NOW.date()))
    data = CF_CSV.render(records)
    path.write_bytes(data)
    return data


def _parts(path: pathlib.Path, count: int) -> list[CsvPart]:
    with path.open("rb") as file:
        settled = settle(file, FORMAT)
        assert isinstance(settled, Settled)
        parts = cut_csv(file, settled, count, min_part_bytes=1024)
    assert parts is not None and len(parts) == count
    return parts


def _staging(store: Store) -> StagedRecords:
    return staged_records(
        store, source="f", fmt=FORMAT, kind=RecordKind.PENALTY, now=NOW, repeat=CF_CSV.repeat
    )


def _whole(store: Store, path: pathlib.Path) -> RecordImportSummary:
    with _staging(store) as staged, path.open("rb") as file:
        for chunk in CF_CSV.read(file, seen=staged, chunk_rows=50):
            staged.add(chunk.records, chunk.problems)
        return staged.commit("0" * 64)


def _reading(staged: StagedRecords, path: pathlib.Path, parts: list[CsvPart]) -> Iterator[Any]:
    return read_in_parts(
        staged,
        path,
        parts,
        format_name=FORMAT,
        variants=None,
        legacy_codes=frozenset(),
        subject_key=None,
    )


def _in_parts(store: Store, path: pathlib.Path, parts: list[CsvPart]) -> RecordImportSummary:
    with _staging(store) as staged:
        for _ in _reading(staged, path, parts):
            pass
        return staged.commit("0" * 64)


def _held(store: Store, record_ids: list[str]) -> list[tuple[Any, ...]]:
    held: list[tuple[Any, ...]] = []
    for record_id in sorted(record_ids):
        r = store.penalties.get(record_id)
        assert r is not None, record_id
        held.append((r.record_id, r.subject, r.severity, r.decided_on, r.publicity_ends_on))
        held.append(tuple(sorted(r.content.items())))
    return held


def _rejected(store: Store, read: Any) -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        read()
    assert store.penalties.in_force() == []
    return caught.value


def test_parts_import_what_one_reader_imports(store: Store, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cf.csv"
    data = _export(path, 600)
    summary = _in_parts(store, path, _parts(path, 3))
    assert summary.added + summary.expired == 600 and summary.expired > 0
    expected = CF_CSV.parse(data)
    held = _held(store, [r.record_id for r in expected])
    assert held[::2] == sorted(
        (r.record_id, r.subject, r.severity, r.decided_on, r.publicity_ends_on) for r in expected
    )
    assert held[1::2] == [tuple(sorted(r.content.items())) for r in sorted(expected, key=_id)]
    again = _in_parts(store, path, _parts(path, 2))
    assert again.unchanged == 600 and again.added == 0
    assert _held(store, [r.record_id for r in expected]) == held


def _id(record: Any) -> str:
    return str(record.record_id)


def test_a_bad_file_gets_the_same_problems_in_parts(store: Store, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cf.csv"
    lines = _export(path, 600).decode().split("\r\n")
    lines[5] = lines[5].replace("湖州", "", 1).replace(",法人及非法人组织,", ",法人,", 1)
    lines[250] = lines[250].replace("-", "/", 1)  # still a date
    lines[300] = lines[300][: lines[300].rindex(",20")] + ",2030-13-01" + ",,,,,,"
    lines[590] = lines[17]  # the same record again, in the last part
    lines[420] = ",".join(["x"] * (lines[420].count(",") + 3))
    path.write_text("\r\n".join(lines), encoding="utf-8")
    parts = _parts(path, 3)
    assert parts[0].first_row < 17 < parts[1].first_row < 300 < parts[2].first_row < 590
    whole = _rejected(store, lambda: _whole(store, path))
    split = _rejected(store, lambda: _in_parts(store, path, parts))
    assert split.problems == whole.problems and split.more == whole.more
    assert split.message == whole.message
    rows = {p.row for p in split.problems}
    assert {300, 420, 590} <= rows
    assert any("is in row 17" in p.reason for p in split.problems if p.row == 590)


def test_more_problems_than_shown_are_counted_alike(store: Store, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cf.csv"
    lines = _export(path, 2400).decode().split("\r\n")
    bad = [lines[0], *(line.replace("-", "x", 1) for line in lines[1:])]  # no date reads
    path.write_text("\r\n".join(bad), encoding="utf-8")
    whole = _rejected(store, lambda: _whole(store, path))
    split = _rejected(store, lambda: _in_parts(store, path, _parts(path, 4)))
    assert whole.more > 0
    assert (split.problems, split.more, split.message) == (
        whole.problems,
        whole.more,
        whole.message,
    )


def test_a_whole_file_problem_in_a_later_part_is_read_whole(
    store: Store, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "cf.csv"
    lines = _export(path, 2000).decode().split("\r\n")
    lines[1500] = lines[1500].replace(",", "," + "x" * 140_000, 1)  # over csv's field limit
    path.write_text("\r\n".join(lines), encoding="utf-8")
    parts = _parts(path, 2)
    assert parts[1].first_row < 1500
    with pytest.raises(ReadWhole):
        _in_parts(store, path, parts)
    whole = _rejected(store, lambda: _whole(store, path))
    assert whole.problems[0].row == 0 and "not valid CSV near line 1501" in whole.problems[0].reason


def test_a_reader_that_fails_stops_the_import(store: Store, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cf.csv"
    _export(path, 600)
    parts = _parts(path, 2)
    gone = tmp_path / "moved.csv"  # the readers open a file that is not there
    with pytest.raises(ReaderFailed, match="failed with FileNotFoundError; nothing was imported"):
        _in_parts(store, gone, parts)
    assert store.penalties.in_force() == []
    summary = _whole(store, path)  # the store still takes the file
    assert summary.added + summary.expired == 600


def _readers() -> list[int]:
    """The pids of this process's reader processes."""
    me = pathlib.Path(f"/proc/{os.getpid()}/task")
    children = [
        int(pid) for task in me.iterdir() for pid in (task / "children").read_text().split()
    ]
    return [
        pid
        for pid in children
        if b"node.reader_process" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_a_reader_killed_mid_file_stops_the_import(store: Store, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cf.csv"
    _export(path, 20_000)  # two chunks a part: no reader is done before its first is taken
    parts = _parts(path, 2)
    with _staging(store) as staged:
        reading = _reading(staged, path, parts)
        next(reading)
        readers = _readers()
        assert len(readers) == 2
        for pid in readers:
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(ReaderFailed, match="was killed by SIGKILL before it was done"):
            list(reading)
    assert store.penalties.in_force() == [] and _readers() == []


def test_a_parts_problems_extend_the_list_as_if_added_one_by_one() -> None:
    problems = [RowProblem(row, "CF_JDRQ", f"bad {row}") for row in range(1, 40) for _ in (1, 2)]
    one_by_one = ProblemList(cap=25)
    one_by_one.add([RowProblem(0, "file", "whole"), *problems])
    first, second, third = ProblemList(cap=25), ProblemList(cap=25), ProblemList(cap=25)
    first.add([RowProblem(0, "file", "whole"), *problems[:10]])
    second.add(problems[10:60])
    third.add(problems[60:])
    first.extend(second)
    first.extend(third)
    a, b = one_by_one.rejected("f"), first.rejected("f")
    assert (a.problems, a.more, a.message) == (b.problems, b.more, b.message)
    assert b.problems[-1] == RowProblem(12, "CF_JDRQ", "bad 12")


def test_the_cli_reads_a_large_export_in_parts(tmp_path: pathlib.Path) -> None:
    from click.testing import CliRunner

    from node.cli import main as cli
    from node.cli.ingest_records import ingest_records

    home = tmp_path / "home"
    cli.main(
        ["init", "--node-id", "cn-330500", "--name", "湖州", "--home", str(home)],
        standalone_mode=False,
    )
    path = tmp_path / "cf.csv"
    _export(path, 600)
    said = ingest_records(FORMAT, path, home, ManualClock(NOW), jobs=3, min_part_bytes=1024)
    in_force, expired = (int(n) for n in re.findall(r"([\d,]+) (?:in force|already past)", said))
    assert in_force + expired == 600 and expired > 0
    again = ingest_records(FORMAT, path, home, ManualClock(NOW), jobs=1)
    assert "600 unchanged" in again
    args = ["ingest", "--format", FORMAT, str(path), "--home", str(home)]
    refused = CliRunner().invoke(cli, [*args, "--jobs", "0"])
    assert refused.exit_code == 2 and "--jobs" in refused.output
    assert "600 unchanged" in CliRunner().invoke(cli, [*args, "--jobs", "2"]).output
