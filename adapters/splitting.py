"""A large CSV export cut into parts that processes read side by side (node.split_reading).

Each part is a run of whole records, read as the header's bytes followed by its own, and
knows the row number of its first record and how many lines come before it, so that its rows
are numbered and its problems placed as one reader of the whole file would place them.

A cut goes after the first line feed past its target that has an even number of quote
characters since the part began (outside any quoted field, if every quote belongs to one),
and is kept only where it is known to fall between records:

- a part with no quote character and no lone carriage return ends a record at every line
  feed, so it holds as many records as line feeds (counted, not parsed);
- any other part is read through by csv (strict) to count its records: if it does not
  parse, or ends inside a quoted field (a stray quote misled the count), the file is not cut.

A file that is not cut is read whole by one reader, which reports whatever is wrong with it.
So is a file with a NUL byte, one whose header line has a quote or a lone carriage return,
and one too small to give each part `min_part_bytes`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from typing import BinaryIO

from adapters.decoding import Settled

_BLOCK = 1 << 20
_HEADER_BYTES = 1 << 16  # a header line longer than this: the file is not cut
_SEEK_BYTES = 1 << 20  # how far past a cut's target a record's end is looked for


@dataclasses.dataclass(frozen=True, slots=True)
class CsvPart:
    """One part of a cut CSV file (`cut_csv`)."""

    header: bytes  # the file's header line as it is in the file (its BOM, if any, included)
    start: int  # the byte offset of the part's first record
    end: int  # the offset after its last record (the file's size, for the last part)
    first_row: int  # its first record's row number (rows count from 1 after the header)
    lines_before: int  # the file's lines between the header and the part
    settled: Settled  # the whole file's encoding

    def open(self, file: BinaryIO) -> BinaryIO:
        """The header's bytes, then the part's, read from `file` (the whole file, seekable;
        read from here on by this part alone)."""
        return io.BufferedReader(_HeaderAndRange(self.header, file, self.start, self.end))


def cut_csv(
    file: BinaryIO, settled: Settled, parts: int, min_part_bytes: int
) -> list[CsvPart] | None:
    """`file` (seekable, all of it) cut into at most `parts` parts of about equal size, in
    order; None where it is not cut (the module's docstring says when)."""
    if parts < 2 or settled.has_nul:
        return None
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    head = file.read(_HEADER_BYTES)
    header = head[: head.find(b"\n") + 1]
    if not header or b'"' in header or b"\r" in header.removesuffix(b"\n").removesuffix(b"\r"):
        return None
    parts = min(parts, (size - len(header)) // max(min_part_bytes, 1))
    if parts < 2:
        return None
    found: list[CsvPart] = []
    start, row, lines = len(header), 1, 0
    for k in range(1, parts):
        target = max(len(header) + (size - len(header)) * k // parts, start)
        tally = _Tally()
        for block in _blocks(file, start, target):
            tally.add(block)
        cut = _record_end_after(file, target, tally)
        if cut is None or cut >= size:
            return None
        counted = _records_and_lines(file, start, cut, settled, tally)
        if counted is None:
            return None
        found.append(CsvPart(header, start, cut, row, lines, settled))
        start, row, lines = cut, row + counted[0], lines + counted[1]
    found.append(CsvPart(header, start, size, row, lines, settled))
    return found


@dataclasses.dataclass
class _Tally:
    """What bytes read so far hold: quotes, line feeds, carriage returns, CR LF pairs."""

    quotes: int = 0
    feeds: int = 0
    returns: int = 0
    pairs: int = 0
    last: bytes = b""

    def add(self, block: bytes) -> None:
        if not block:
            return
        self.quotes += block.count(b'"')
        self.feeds += block.count(b"\n")
        self.returns += block.count(b"\r")
        self.pairs += block.count(b"\r\n") + (self.last == b"\r" and block[:1] == b"\n")
        self.last = block[-1:]


def _record_end_after(file: BinaryIO, target: int, tally: _Tally) -> int | None:
    """The offset just after the first line feed at or after `target` with an even number
    of quote characters since the part began (`tally`, of the bytes up to `target`, which
    then takes those up to the cut): where a record would end if every quote belongs to a
    quoted field, as in an export that follows RFC 4180 (csv checks it)."""
    file.seek(target)
    tail = file.read(_SEEK_BYTES)
    odd = tally.quotes % 2
    at = 0
    while (feed := tail.find(b"\n", at)) >= 0:
        odd ^= tail.count(b'"', at, feed + 1) % 2
        at = feed + 1
        if not odd:
            tally.add(tail[:at])
            return target + at
    return None


def _records_and_lines(
    file: BinaryIO, start: int, end: int, settled: Settled, tally: _Tally
) -> tuple[int, int] | None:
    """The records and lines in [start, end) (`tally`: what its bytes hold), which begins a
    record; None where `end` is not known to end one (or the bytes are not CSV)."""
    if not tally.quotes and tally.returns == tally.pairs:
        return tally.feeds, tally.feeds  # every line feed ends a record, and only they end lines
    encoding = "utf-8" if settled.encoding == "utf-8-sig" else settled.encoding
    text = io.TextIOWrapper(
        io.BufferedReader(_HeaderAndRange(b"", file, start, end)), encoding=encoding, newline=""
    )
    reader = csv.reader(text, strict=True)
    try:
        records = sum(1 for _ in reader)
    except csv.Error:  # a quoted field runs over the cut, or this is not CSV
        return None
    return records, reader.line_num


def _blocks(file: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """[start, end) of `file`, a block at a time."""
    file.seek(start)
    while start < end:
        block = file.read(min(_BLOCK, end - start))
        if not block:
            return
        start += len(block)
        yield block


class _HeaderAndRange(io.RawIOBase):
    """`header`, then [start, end) of `file`."""

    def __init__(self, header: bytes, file: BinaryIO, start: int, end: int) -> None:
        self._header = header
        self._file = file
        self._at = start
        self._end = end
        self._placed = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._header:
            size = min(len(buffer), len(self._header))
            buffer[:size] = self._header[:size]
            self._header = self._header[size:]
            return size
        if not self._placed:
            self._file.seek(self._at)
            self._placed = True
        data = self._file.read(min(len(buffer), self._end - self._at))
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


__all__ = ["CsvPart", "cut_csv"]
