"""`python -m node.reader_process`: a reader process of node.split_reading. It receives its
job on stdin, reads its part of a CSV export with the format's own reader, and sends chunks of
staged rows (node.staged_rows) on stdout, then DONE, or FAILED with the name of what went
wrong. It imports the adapters and the record rules, not the store, its driver or gRPC.

Messages are multiprocessing.connection's (a length, then a pickle) both ways; stdout is kept
for them alone (anything printed goes to stderr).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from multiprocessing.connection import Connection
from typing import Any

from adapters.shuanggongshi import record_format
from adapters.splitting import CsvPart
from node.process import settle_gc
from node.staged_rows import StagedRows

CHUNK, DONE, FAILED = "chunk", "done", "failed"  # what a message is: (kind, payload)


@dataclasses.dataclass(frozen=True)
class Job:
    """What a reader process is given (pickled)."""

    index: int
    path: pathlib.Path
    format_name: str
    variants: pathlib.Path | None  # a node's own field maps
    part: CsvPart
    maker: StagedRows
    legacy_codes: AbstractSet[str]
    subject_key: bytes | None


class _Deferred:
    """A record named twice is found by the import, set-based, across all parts."""

    deferred = True

    def first_rows(self, keys: Sequence[tuple[int, str]]) -> Mapping[int, int]:
        return {}


def read_part(job: Job, send: Callable[[tuple[str, Any]], None]) -> None:
    """Read `job`'s part, sending its chunks and then DONE, or FAILED."""
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
                send((CHUNK, (rows, list(chunk.problems), chunk.rows_read, chunk.bytes_read)))
    except Exception as exc:  # named, not quoted: its text could hold a cell of the file
        send((FAILED, type(exc).__name__))
        return
    send((DONE, None))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's: it ends readers
    settle_gc()
    out = Connection(os.dup(sys.stdout.fileno()), readable=False)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot break a message
    with Connection(os.dup(sys.stdin.fileno()), writable=False) as jobs:
        job = jobs.recv()
    if not isinstance(job, Job):
        raise SystemExit("node.reader_process: not a job")
    with contextlib.suppress(BrokenPipeError):  # the import was given up: nobody listens
        read_part(job, out.send)
    out.close()


__all__ = ["CHUNK", "DONE", "FAILED", "Job", "read_part"]

if __name__ == "__main__":  # as node.reader_process, the module its job was pickled from
    from node.reader_process import main as run

    run()
