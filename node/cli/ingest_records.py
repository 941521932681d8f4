"""`creditnode ingest --format shuanggongshi-cf-csv FILE` and the other government formats
(adapters.shuanggongshi): penalties and serious-dishonesty list changes into the store, all
or nothing, streamed; licences checked and counted.

Column names come from the shipped field maps plus the node home's `fieldmaps/*.toml`, so a
new variant of a national format is a file an operator drops there (adapters/shuanggongshi.md).
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import click
from tqdm import tqdm

from adapters.fieldmaps import load_field_maps
from adapters.shuanggongshi import RECORD_FORMATS, RecordFormat
from adapters.streaming import Chunk
from node.clock import SYSTEM, Clock
from node.errors import ImportRejected
from node.home import NodeHome
from node.keys import NodeKeys
from node.legacy_uscc import load_legacy_codes
from node.process import settle_gc
from node.public_records import RecordKind
from node.store import Store
from node.store.record_import import RecordImportSummary, staged_records
from node.store.results import ProblemList

FIELD_MAP_DIR = "fieldmaps"  # in the node home: the operator's own variants
_KINDS = {"penalty": RecordKind.PENALTY, "serious-dishonesty": RecordKind.SERIOUS_DISHONESTY_LIST}


def record_format(name: str, home: NodeHome) -> RecordFormat[Any]:
    """The format `name`, reading the shipped column names and the home's variants."""
    adapter = RECORD_FORMATS[name]
    own = home.path / FIELD_MAP_DIR
    if own.is_dir():
        adapter = adapter.with_field_maps(load_field_maps(own))
    return adapter


def ingest_records(fmt: str, file: pathlib.Path, home: pathlib.Path, clock: Clock = SYSTEM) -> str:
    """Import (or, for licences, check) `file`; the line that says what was done.
    Raises ImportRejected listing the problems, with nothing written."""
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
        with (
            Store.open(node_home.db_url(config)) as store,
            staged_records(
                store,
                source=str(file),
                fmt=fmt,
                kind=_KINDS[adapter.kind],
                now=clock.now(),
                repeat=adapter.repeat,
            ) as staged,
        ):
            chunks = adapter.read(
                stream, legacy_codes=legacy_codes, subject_key=subject_key, seen=staged
            )
            for chunk in _progress(chunks, file, size):
                staged.add(chunk.records, chunk.problems)
            if sys.stderr.isatty() and not staged.problem_count:
                click.echo("applying in one transaction...", err=True)
            summary = staged.commit(file_sha256)
    return _said(file, fmt, summary)


def _progress(chunks: Iterator[Chunk[Any]], file: pathlib.Path, size: int) -> Iterator[Chunk[Any]]:
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
