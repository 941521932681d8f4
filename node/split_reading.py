"""A large CSV export of public records read by several processes, a part each
(adapters.splitting), while this process stages the rows they make (docs/adr/0015).

Each reader is a fresh `python -m node.reader_process`: not forked (this process holds a store
connection and may run threads), and not multiprocessing's spawn, which would import this
process's main module (the whole command line, with the store and gRPC) into every reader.
It is given its job over its stdin, opens the file itself, reads its part with the format's
own reader, and sends chunks of staged rows (node.staged_rows) over its stdout pipe, which
holds it back while this process is busy: memory holds about a chunk per reader, not the
file. Chunks of different parts arrive interleaved; their rows carry their row numbers in the
file, and each part's problems are kept apart and handed to the import in part order once all
are read, so the import is given what one reader of the whole file would have given it.

A part that meets a whole-file problem (a CSV error the cut could not foresee) stops the
reading with `ReadWhole`: the caller reads the file whole instead, so that its problems are
those one reader reports. A reader that fails or dies stops the import, with nothing written;
its error is named, not quoted (its text could hold a cell of the file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from multiprocessing.connection import Connection, wait

from adapters.splitting import CsvPart
from node.errors import NodeFault
from node.reader_process import DONE, FAILED, Job
from node.store.record_import import StagedRecords
from node.store.results import ProblemList

_SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[1]  # where `node` and `adapters` are


class ReadWhole(Exception):
    """A part met a whole-file problem: the file is to be read whole, by one reader."""


class ReaderFailed(NodeFault):
    """A reader process failed or died; nothing was imported."""

    reason = "READER_FAILED"


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    rows_read: int
    bytes_read: int


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
    maker = staged.row_maker()
    problems = [ProblemList() for _ in parts]
    rows_read = [0] * len(parts)
    bytes_read = [0] * len(parts)
    header = len(parts[0].header)
    with contextlib.ExitStack() as stack:
        readers: dict[Connection, tuple[int, subprocess.Popen[bytes]]] = {}
        for index, part in enumerate(parts):
            job = Job(index, file, format_name, variants, part, maker, legacy_codes, subject_key)
            process, messages = _start(job)
            stack.callback(_stop, process, messages)
            readers[messages] = (index, process)
        while readers:
            ready = wait(list(readers))
            for messages in [m for m in readers if m in ready]:
                index, process = readers[messages]
                try:
                    kind, payload = messages.recv()
                except (EOFError, OSError):  # it ended, between messages or in one
                    raise ReaderFailed(_ended(index, len(parts), file, process)) from None
                if kind == DONE:
                    del readers[messages]
                    continue
                if kind == FAILED:
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


def _start(job: Job) -> tuple[subprocess.Popen[bytes], Connection]:
    """A reader process given `job`, and the connection its messages come on."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_SOURCE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "node.reader_process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    messages = Connection(os.dup(process.stdout.fileno()), writable=False)
    process.stdout.close()
    with Connection(os.dup(process.stdin.fileno()), readable=False) as jobs:
        process.stdin.close()
        jobs.send(job)
    return process, messages


def _stop(process: subprocess.Popen[bytes], messages: Connection) -> None:
    """Ends a reader (done, or no longer wanted) and reaps it."""
    messages.close()
    if process.poll() is None:
        process.terminate()
    process.wait()


def _ended(index: int, parts: int, file: pathlib.Path, process: subprocess.Popen[bytes]) -> str:
    code = process.wait()
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
    return (
        f"the process reading part {index + 1} of {parts} of {file.name} {how} before it was "
        "done; nothing was imported"
    )


__all__ = ["Progress", "ReadWhole", "ReaderFailed", "read_in_parts"]
