"""How an adapter hands a file over: in chunks of checked rows, never the whole file at once.

An adapter's `read(stream, ...)` yields `Chunk`s in row order: the rows that became results and
the problems of the rows that did not. Whoever consumes them (the store's staged import, or
`collect` for a file small enough to hold) decides what to keep, so memory is bounded by the
chunk. The one rule that spans rows, a subject at most once per file, asks a `SeenSubjects`
for the rows seen before: in memory here, in a staging table in the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from adapters.problems import rejected
from node.errors import RowProblem
from node.model import SubjectRef

CHUNK_ROWS = 5000  # rows per chunk: big enough to amortise a round trip, small to hold

R_co = TypeVar("R_co", covariant=True)
R = TypeVar("R")


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk(Generic[R_co]):
    """The next rows of a file: results (or other records) by row number, and the problems
    of these rows (row 0 = the file as a whole). `rows_read` counts the file's rows read so far, and
    `bytes_read` the bytes of the stream consumed (both for progress)."""

    records: Sequence[tuple[int, R_co]]
    problems: Sequence[RowProblem]
    rows_read: int
    bytes_read: int


class SeenSubjects(Protocol):
    """Memory of the subjects a file has named so far, for the once-per-file rule."""

    def first_rows(self, subjects: Sequence[tuple[int, SubjectRef]]) -> Mapping[int, int]:
        """Remember `(row, subject)` pairs (rows ascending, after every row given before);
        return {row: the first row that named the same subject} for each repeat."""
        ...


class SubjectsInMemory:
    """SeenSubjects in a dict: for a file parsed whole (`collect`)."""

    def __init__(self) -> None:
        self._first: dict[SubjectRef, int] = {}

    def first_rows(self, subjects: Sequence[tuple[int, SubjectRef]]) -> Mapping[int, int]:
        repeats = {}
        for row, subject in subjects:
            first = self._first.setdefault(subject, row)
            if first != row:
                repeats[row] = first
        return repeats


def collect(chunks: Iterable[Chunk[R]], format_name: str) -> list[R]:
    """Every result of a file read whole, or ImportRejected listing every problem in row order
    (whole-file problems first)."""
    results: list[R] = []
    problems: list[RowProblem] = []
    for chunk in chunks:
        results += [result for _, result in chunk.records]
        problems += chunk.problems
    if problems:
        problems.sort(key=lambda p: p.row)  # stable: a row's problems keep their order
        raise rejected(format_name, problems)
    return results
