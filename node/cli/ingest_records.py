"""`creditnode ingest --format shuanggongshi-cf-csv FILE` and the other government formats
(adapters.shuanggongshi): penalties and serious-dishonesty list changes into the store, all
or nothing, streamed; licences checked and counted.

Column names come from the shipped field maps plus the node home's `fieldmaps/*.toml`, so a
new variant of a national format is a file an operator drops there (adapters/shuanggongshi.md).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol, TypeVar

import click
from tqdm import tqdm

from adapters import shuanggongshi
from adapters.decoding import settle
from adapters.shuanggongshi import RecordFormat
from adapters.splitting import CsvPart, cut_csv
from node.clock import SYSTEM, Clock
from node.errors import ImportRejected, RowProblem
from node.home import NodeHome
from node.keys import NodeKeys
from node.legacy_uscc import load_legacy_codes
from node.process import settle_gc
from node.public_records import RecordKind
from node.split_reading import ReadWhole, read_in_parts
from node.store import Store
from node.store.record_import import RecordImportSummary, StagedRecords, staged_records
from node.store.results import ProblemList

FIELD_MAP_DIR = "fieldmaps"  # in the node home: the operator's own variants
MAX_JOBS = 4  # reader processes at most, by default
MIN_PART_BYTES = 16 << 20  # smaller, a reader costs about as much to start as it saves
_KINDS = {"penalty": RecordKind.PENALTY, "serious-dishonesty": RecordKind.SERIOUS_DISHONESTY_LIST}


def record_format(name: str, home: NodeHome) -> RecordFormat[Any]:
    """The format `name`, reading the shipped column names and the home's variants."""
    return shuanggongshi.record_format(name, home.path / FIELD_MAP_DIR)


def default_jobs() -> int:
    """Reader processes for a large CSV export: the CPUs this process may run on, at most
    MAX_JOBS."""
    allowed = getattr(os, "sched_getaffinity", None)  # Linux; not on a developer's Mac
    cpus = len(allowed(0)) if allowed is not None else os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def ingest_records(
    fmt: str,
    file: pathlib.Path,
    home: pathlib.Path,
    clock: Clock = SYSTEM,
    *,
    jobs: int = 1,
    min_part_bytes: int = MIN_PART_BYTES,
) -> str:
    """Import (or, for licences, check) `file`; the line that says what was done.
    Raises ImportRejected listing the problems, with nothing written. `jobs`: reader
    processes for a CSV export of records big enough to give each `min_part_bytes`
    (docs/adr/0015); 1 reads it here, in this process."""
    node_home = NodeHome(home)
    config = node_home.load_config()
    subject_key = NodeKeys.open(node_home, config).subject_hmac_key()
    legacy_codes = load_legacy_codes(node_home)
    adapter = record_format(fmt, node_home)
    size = file.stat().st_size
    settle_gc()
    with file.open("rb") as stream:
        file_sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
        stream.seek(0)
        if adapter.kind == "licence":
            problems = ProblemList()
            rows = 0
            for chunk in _progress(adapter.read(stream, legacy_codes=legacy_codes), file, size):
                problems.add(chunk.problems)
                rows = chunk.rows_read
            if problems.count:
                raise problems.rejected(str(file))
            return (
                f"checked {file.name} ({fmt}): {rows:,} licences, all valid; licences are "
                "public information this node neither stores nor exchanges"
            )
        parts = _parts(adapter, stream, size, jobs, min_part_bytes)
        with Store.open(node_home.db_url(config)) as store:
            staging = functools.partial(
                staged_records,
                store,
                source=str(file),
                fmt=fmt,
                kind=_KINDS[adapter.kind],
                now=clock.now(),
                repeat=adapter.repeat,
            )
            if parts is not None:
                try:
                    with staging() as staged:
                        progress = read_in_parts(
                            staged,
                            file,
                            parts,
                            format_name=fmt,
                            variants=node_home.path / FIELD_MAP_DIR,
                            legacy_codes=legacy_codes,
                            subject_key=subject_key,
                        )
                        for _ in _progress(progress, file, size):
                            pass
                        return _said(file, fmt, _commit(staged, file_sha256))
                except ReadWhole:  # a problem of the whole file: reported as one reader finds it
                    stream.seek(0)
            with staging() as staged:
                chunks = adapter.read(
                    stream, legacy_codes=legacy_codes, subject_key=subject_key, seen=staged
                )
                for chunk in _progress(chunks, file, size):
                    staged.add(chunk.records, chunk.problems)
                return _said(file, fmt, _commit(staged, file_sha256))


def _parts(
    adapter: RecordFormat[Any], stream: BinaryIO, size: int, jobs: int, min_part_bytes: int
) -> list[CsvPart] | None:
    """The parts a CSV export is read in side by side, or None: read it whole, here."""
    if jobs < 2 or adapter.container != "csv" or size < 2 * min_part_bytes:
        return None
    settled = settle(stream, adapter.name)
    if isinstance(settled, RowProblem):
        return None  # reported by the reading
    try:
        return cut_csv(stream, settled, jobs, min_part_bytes)
    finally:
        stream.seek(0)


def _commit(staged: StagedRecords, file_sha256: str) -> RecordImportSummary:
    if sys.stderr.isatty() and not staged.problem_count:
        click.echo("applying in one transaction...", err=True)
    return staged.commit(file_sha256)


class _Read(Protocol):
    @property
    def rows_read(self) -> int: ...

    @property
    def bytes_read(self) -> int: ...


_R = TypeVar("_R", bound=_Read)


def _progress(chunks: Iterator[_R], file: pathlib.Path, size: int) -> Iterator[_R]:
    """The chunks, with a bar (rows/s, and an ETA from the bytes read) on a terminal."""
    shown = sys.stderr.isatty()
    with tqdm(desc=f"reading {file.name}", unit=" rows", file=sys.stderr, disable=not shown) as bar:
        rows = 0
        for chunk in chunks:
            yield chunk
            rows = chunk.rows_read
            if chunk.bytes_read:
                bar.total = max(rows, round(rows * size / chunk.bytes_read))
            bar.update(rows - bar.n)
        bar.total = rows
        bar.refresh()


def _said(file: pathlib.Path, fmt: str, s: RecordImportSummary) -> str:
    return (
        f"imported {file.name} ({fmt}): {s.added:,} in force, {s.expired:,} already past "
        f"their publicity, {s.removed:,} removed from the list, {s.unchanged:,} unchanged; "
        f"{s.reissued:,} current results re-issued with new flags"
    )


__all__ = ["FIELD_MAP_DIR", "ImportRejected", "ingest_records", "record_format"]
