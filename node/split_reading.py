"""A large CSV export of public records read by several processes, a part each
(adapters.splitting), while this process stages the rows they make (docs/adr/0015).

Each reader process is spawned (not forked: the parent holds a store connection and may run
threads), opens the file itself, reads its part with the format's own reader, and sends
chunks of staged rows (node.store.record_import.StagedRows) through one bounded queue: memory
holds a few chunks per reader, not the file. Chunks of different parts arrive interleaved;
their rows carry their row numbers in the file, and each part's problems are kept apart and
handed to the import in part order once all are read, so the import is given what one reader
of the whole file would have given it.

A part that meets a whole-file problem (a CSV error the cut could not foresee) stops the
reading with `ReadWhole`: the caller reads the file whole instead, so that its problems are
those one reader reports. A reader process that fails or dies stops the import, with nothing
written; its error is named, not quoted (its text could hold a cell of the file).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pathlib
import queue
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from adapters.shuanggongshi import record_format
from adapters.splitting import CsvPart
from node.errors import NodeFault
from node.process import settle_gc
from node.store.record_import import StagedRecords, StagedRows
from node.store.results import ProblemList

_QUEUED_PER_READER = 4  # chunks a reader may run ahead of the staging
_WAIT_SECONDS = 1.0  # between looks at whether a silent reader is still alive
_CHUNK, _DONE, _FAILED = "chunk", "done", "failed"


class ReadWhole(Exception):
    """A part met a whole-file problem: the file is to be read whole, by one reader."""


class ReaderFailed(NodeFault):
    """A reader process failed or died; nothing was imported."""

    reason = "READER_FAILED"


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    rows_read: int
    bytes_read: int


@dataclasses.dataclass(frozen=True)
class _Job:
    """What a reader process is given (pickled)."""

    index: int
    path: pathlib.Path
    format_name: str
    variants: pathlib.Path | None  # a node's own field maps
    part: CsvPart
    maker: StagedRows
    legacy_codes: AbstractSet[str]
    subject_key: bytes | None


def read_in_parts(
    staged: StagedRecords,
    file: pathlib.Path,
    parts: Sequence[CsvPart],
    *,
    format_name: str,
    variants: pathlib.Path | None,
    legacy_codes: AbstractSet[str],
    subject_key: bytes | None,
) -> Iterator[Progress]:
    """Stage every record of `file`'s `parts` (read side by side, a process each) into
    `staged`, and then the parts' problems in file order; the rows read and bytes consumed
    so far after each chunk. Raises ReadWhole, or ReaderFailed."""
    context = multiprocessing.get_context("spawn")
    chunks = context.Queue(maxsize=_QUEUED_PER_READER * len(parts))
    maker = staged.row_maker()
    readers = [
        context.Process(
            target=_read_part,
            args=(
                _Job(index, file, format_name, variants, part, maker, legacy_codes, subject_key),
                chunks,
            ),
            name=f"creditnode-reader-{index}",
            daemon=True,
        )
        for index, part in enumerate(parts)
    ]
    problems = [ProblemList() for _ in parts]
    rows_read = [0] * len(parts)
    bytes_read = [0] * len(parts)
    header = len(parts[0].header)
    finished: set[int] = set()
    try:
        for reader in readers:
            reader.start()
        while len(finished) < len(parts):
            index, kind, payload = _next_message(chunks, readers, finished)
            if kind == _DONE:
                finished.add(index)
                continue
            if kind == _FAILED:
                raise ReaderFailed(
                    f"the process reading part {index + 1} of {len(parts)} of {file.name} "
                    f"failed with {payload}; nothing was imported"
                )
            rows, found, rows_read[index], consumed = payload
            if any(problem.row == 0 for problem in found):
                raise ReadWhole
            staged.add_rows(rows)
            problems[index].add(found)
            bytes_read[index] = max(consumed - header, 0)
            yield Progress(sum(rows_read), header + sum(bytes_read))
        for part_problems in problems:
            staged.add_problems(part_problems)
    finally:
        for reader in readers:
            if reader.is_alive():
                reader.terminate()
            if reader.pid is not None:
                reader.join()
        chunks.cancel_join_thread()
        chunks.close()


def _next_message(
    chunks: Any, readers: Sequence[Any], finished: AbstractSet[int]
) -> tuple[int, str, Any]:
    """The next message of any reader; ReaderFailed when a reader has ended without saying
    it is done, and nothing came for a whole wait after."""
    ended_silent: set[int] = set()
    while True:
        try:
            message: tuple[int, str, Any] = chunks.get(timeout=_WAIT_SECONDS)
            return message
        except queue.Empty:
            pass
        dead = {
            index
            for index, reader in enumerate(readers)
            if index not in finished and reader.exitcode is not None
        }
        if dead & ended_silent:
            index = min(dead & ended_silent)
            raise ReaderFailed(
                f"the process reading part {index + 1} of {len(readers)} ended with exit code "
                f"{readers[index].exitcode} before it was done; nothing was imported"
            )
        ended_silent = dead


# --- in a reader process ----------------------------------------------------------------------


class _Deferred:
    """A record named twice is found by the import, set-based, across all parts."""

    deferred = True

    def first_rows(self, keys: Sequence[tuple[int, str]]) -> Mapping[int, int]:
        return {}


def _read_part(job: _Job, chunks: Any) -> None:
    settle_gc()
    try:
        adapter = record_format(job.format_name, job.variants)
        with job.path.open("rb") as file:
            for chunk in adapter.read(
                file,
                legacy_codes=job.legacy_codes,
                subject_key=job.subject_key,
                seen=_Deferred(),
                part=job.part,
            ):
                rows = [job.maker.row(row, record) for row, record in chunk.records]
                payload = (rows, list(chunk.problems), chunk.rows_read, chunk.bytes_read)
                chunks.put((job.index, _CHUNK, payload))
    except BaseException as exc:  # named, not quoted: its text could hold a cell of the file
        chunks.put((job.index, _FAILED, type(exc).__name__))
        return
    chunks.put((job.index, _DONE, None))


__all__ = ["Progress", "ReadWhole", "ReaderFailed", "read_in_parts"]
