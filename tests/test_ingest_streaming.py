"""The streamed import (issue 11 §1) on real stores: Python memory stays bounded by the chunk
whatever the file's size, the file's rows are staged without holding the store's write lock,
and the import keeps its semantics (all or nothing, re-import, supersession, the journal)."""

from __future__ import annotations

import gc
import pathlib
import sqlite3
import threading
import tracemalloc
from collections.abc import Iterator

import pytest

from adapters.huzhou import HUZHOU_CSV
from adapters.streaming import Chunk
from node.errors import ImportRejected
from node.identifiers import make_uscc, normalise_subject_id
from node.model import CreditResult, ResultStatus
from node.store import ImportSummary, Store

CITY = "cn-330500"
HEADER = "TYSHXYDM,QYMC,ZTLX,PJTX,PJDJ,PJFS,PJRQ,YXQZ,SXBZ,ZB_GREEN_RATING\n"
LEVELS = (("A", 900), ("B", 720), ("C", 600), ("D", 300))


def _write_export(path: pathlib.Path, rows: int, *, level_shift: int = 0) -> pathlib.Path:
    """A valid huzhou-csv export of `rows` distinct enterprises, written a line at a time."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for n in range(rows):
            uscc = make_uscc(f"91330502{n:09d}")
            level, score = LEVELS[(n + level_shift) % 4]
            f.write(
                f"{uscc},湖州第{n}号材料有限公司,企业,zj-public-credit@2023,{level},{score},"
                f"2024-0{1 + level_shift}-15,,,{'深绿' if n % 3 == 0 else ''}\n"
            )
    return path


def _ingest(store: Store, path: pathlib.Path, chunk_rows: int = 2000) -> ImportSummary:
    """What `creditnode ingest` does: the adapter's chunks into a staged import."""
    with (
        path.open("rb") as stream,
        store.results.staged_import(source=path.name, fmt=HUZHOU_CSV.name) as staged,
    ):
        for chunk in HUZHOU_CSV.read(
            stream, issuer_node=CITY, subject_key=b"k" * 32, seen=staged, chunk_rows=chunk_rows
        ):
            staged.add(chunk.records, chunk.problems)
        return staged.commit("0" * 64)


def _fill_identifier_cache() -> None:
    """Fill node.identifiers' cache of checked ids to its bound (an LRU of 65,536), as on a
    node that has run a while: its size is then the same for every file measured."""
    for n in range(70_000):
        normalise_subject_id("USCC", make_uscc(f"91330100{n:09d}"))


def _peak_bytes(store: Store, path: pathlib.Path) -> int:
    """Peak Python memory (tracemalloc) importing `path`, above what was held before."""
    gc.collect()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    _ingest(store, path)
    return tracemalloc.get_traced_memory()[1] - before


@pytest.mark.volume
def test_memory_does_not_grow_with_the_file(tmp_path: pathlib.Path, db_url: str) -> None:
    """Eight times the rows, about the same peak: memory is bounded by the chunk, not the
    file (a parsed row costs over 1 KB of Python objects: held whole, 48,000 rows would take
    50 MB and more)."""
    small = _write_export(tmp_path / "small.csv", 6_000)
    large = _write_export(tmp_path / "large.csv", 48_000)
    tracemalloc.start()
    try:
        _fill_identifier_cache()
        with Store.open(db_url) as store:
            peak_small = _peak_bytes(store, small)
            assert store.results.count() == 6_000
            # the large file holds the small one's subjects and more: they stay unchanged
            peak_large = _peak_bytes(store, large)
            assert store.results.count() == 48_000
    finally:
        tracemalloc.stop()
    print(f"peak Python memory: 6,000 rows {peak_small / 1e6:.1f} MB, "
          f"48,000 rows {peak_large / 1e6:.1f} MB")  # fmt: skip
    assert peak_large < 1.5 * peak_small, (peak_small, peak_large)
    assert peak_large < 30e6


def test_streamed_import_keeps_import_semantics(tmp_path: pathlib.Path, store: Store) -> None:
    """Across chunks: new rows, then a re-import that changes nothing, then re-evaluations
    that supersede (REVOKE before UPSERT in the journal, in the same transaction)."""
    first = _write_export(tmp_path / "first.csv", 5_000)
    assert _ingest(store, first, chunk_rows=777) == ImportSummary(5_000, 0, 0)
    assert _ingest(store, first, chunk_rows=1000) == ImportSummary(0, 0, 5_000)
    later = _write_export(tmp_path / "later.csv", 5_000, level_shift=1)
    assert _ingest(store, later, chunk_rows=333) == ImportSummary(0, 5_000, 0)
    assert store.results.count(ResultStatus.ACTIVE) == 5_000
    assert store.results.count(ResultStatus.SUPERSEDED) == 5_000
    assert store.changes.head() == 5_000 + 2 * 5_000


def test_a_repeat_across_chunks_rejects_the_file_and_writes_nothing(
    tmp_path: pathlib.Path, store: Store
) -> None:
    """The once-per-file rule looks back through the staging table, beyond the chunk."""
    path = _write_export(tmp_path / "export.csv", 4_500)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join([*lines, lines[2]]), encoding="utf-8")  # row 2 again, as row 4,501
    with pytest.raises(ImportRejected) as caught:
        _ingest(store, path, chunk_rows=1000)
    [problem] = caught.value.problems
    assert (problem.row, problem.field) == (4_501, "TYSHXYDM")
    assert problem.reason.endswith("already appears in row 2")
    assert store.results.count() == 0 and store.changes.head() == 0


def _blocking_chunks(path: pathlib.Path, reading: threading.Event, go_on: threading.Event,
                     staged: object) -> Iterator[Chunk[CreditResult]]:  # fmt: skip
    with path.open("rb") as stream:
        for n, chunk in enumerate(
            HUZHOU_CSV.read(stream, issuer_node=CITY, seen=staged, chunk_rows=100)  # type: ignore[arg-type]
        ):
            yield chunk
            if n == 2:
                reading.set()
                assert go_on.wait(30)


def test_reading_a_file_holds_no_write_lock(tmp_path: pathlib.Path, sqlite_url: str) -> None:
    """While the file is read and staged, another writer (the serving node's log, say) can
    still commit to the SQLite store: only applying the staged rows takes the write lock."""
    path = _write_export(tmp_path / "export.csv", 1_000)
    reading, go_on = threading.Event(), threading.Event()
    summary: list[ImportSummary] = []
    with Store.open(sqlite_url) as store:

        def run() -> None:
            with store.results.staged_import(source="export.csv", fmt="huzhou-csv") as staged:
                for chunk in _blocking_chunks(path, reading, go_on, staged):
                    staged.add(chunk.records, chunk.problems)
                summary.append(staged.commit("0" * 64))

        importer = threading.Thread(target=run)
        importer.start()
        try:
            assert reading.wait(30)
            other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.5)
            other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if the import held it
            other.execute("CREATE TABLE written_meanwhile (x)")
            other.commit()
            other.close()
        finally:
            go_on.set()
            importer.join(60)
        assert summary == [ImportSummary(1_000, 0, 0)]
