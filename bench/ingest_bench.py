"""Ingest throughput on a 100,000-row Huzhou export: `creditnode ingest` end to end on a fresh
SQLite home, and its parse and import phases, as ratios to a baseline measured in the same run
(the same rows inserted by plain sqlite3 executemany, one transaction, into an equivalent table).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import pathlib
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from adapters.registry import get_adapter
from node.cli import main as cli
from node.gendata import generate_export
from node.home import NodeHome
from node.model import CreditResult
from node.store import Store, content_digest

ROWS = 100_000
CITY = "cn-330500"
AS_OF = dt.date(2030, 6, 1)  # generated data are current on this date
FORMAT = "huzhou-csv"

# The credit_results table of node/store/schema.py with its indexes, on the store's pragmas
# (WAL, synchronous=FULL), so the baseline pays for the same table and durability.
_BASELINE_SCHEMA = """
CREATE TABLE credit_results (
    result_id VARCHAR PRIMARY KEY, id_type SMALLINT, subject_id VARCHAR, subject_name TEXT,
    subject_type SMALLINT, issuer_node VARCHAR, scheme VARCHAR, native_level VARCHAR,
    native_score FLOAT, level SMALLINT, flags TEXT, indicators TEXT, evaluated_at VARCHAR,
    valid_until VARCHAR, status SMALLINT, supersedes VARCHAR REFERENCES credit_results,
    content_digest VARCHAR(64), created_at VARCHAR, updated_at VARCHAR);
CREATE UNIQUE INDEX uq_credit_results_current ON credit_results (id_type, subject_id, scheme)
    WHERE status = 1;
CREATE INDEX ix_credit_results_subject ON credit_results (subject_id, id_type);
"""


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def _quiet_cli(*args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli.main(list(args), prog_name="creditnode", standalone_mode=False)


def _new_home(root: pathlib.Path, name: str) -> pathlib.Path:
    home = root / name
    _quiet_cli("init", "--node-id", CITY, "--name", "湖州", "--home", str(home))
    return home


def _baseline_rows(results: Sequence[CreditResult]) -> list[tuple[Any, ...]]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return [
        (
            r.result_id, int(r.subject.id_type), r.subject.id, r.subject_name,
            int(r.subject_type), r.issuer_node, r.scheme, r.native_level, r.native_score,
            int(r.level), json.dumps(list(r.flags)),
            json.dumps(dict(r.indicators), ensure_ascii=False, sort_keys=True),
            r.evaluated_at.isoformat(), r.valid_until.isoformat(), 1, None,
            content_digest(r), now, now,
        )
        for r in results
    ]  # fmt: skip


def _baseline_insert(path: pathlib.Path, rows: list[tuple[Any, ...]]) -> float:
    """Seconds to insert `rows` in one transaction (table creation not counted)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_BASELINE_SCHEMA)
    placeholders = ", ".join("?" * len(rows[0]))

    def insert() -> None:
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO credit_results VALUES ({placeholders})", rows)
        conn.execute("COMMIT")

    seconds, _ = _timed(insert)
    conn.close()
    return seconds


def run(rows: int = ROWS, seed: int = 2026) -> list[str]:
    """Generate the export, time each path on fresh stores, return the table's lines."""
    adapter = get_adapter(FORMAT)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        root = pathlib.Path(tmp)
        gen_s, data = _timed(lambda: generate_export(CITY, rows, seed, AS_OF, FORMAT))
        export = root / "export.csv"
        export.write_bytes(data)

        parse_s, results = _timed(lambda: adapter.parse(data, issuer_node=CITY))
        assert len(results) == rows

        home = _new_home(root, "import-only")
        with Store.open(NodeHome(home).db_url()) as store:
            import_s, _ = _timed(
                lambda: store.results.import_results(
                    results,
                    source=str(export),
                    file_sha256=hashlib.sha256(data).hexdigest(),
                    fmt=FORMAT,
                )
            )
            reimport_s, _ = _timed(
                lambda: store.results.import_results(
                    results, source=str(export), file_sha256="", fmt=FORMAT
                )
            )

        home = _new_home(root, "cli")
        ingest_s, _ = _timed(
            lambda: _quiet_cli("ingest", "--format", FORMAT, str(export), "--home", str(home))
        )

        base_s = _baseline_insert(root / "baseline.db", _baseline_rows(results))

    def line(name: str, seconds: float) -> str:
        return f"{name:<52} {seconds:>8.2f} {rows / seconds:>12,.0f} {seconds / base_s:>9.1f}x"

    return [
        f"ingest of a {rows:,}-row {FORMAT} export ({len(data) / 1e6:.1f} MB), SQLite WAL "
        "synchronous=FULL",
        f"{'path':<52} {'seconds':>8} {'rows/s':>12} {'vs base':>10}",
        line("baseline: sqlite3 executemany, one transaction", base_s),
        line("creditnode ingest (CLI: parse + migrate + import)", ingest_s),
        line("  parse + check (adapter)", parse_s),
        line("  import (store: plan, insert, journal, batch)", import_s),
        line("  re-import of the same results (all unchanged)", reimport_s),
        line("gen-data (not part of ingest)", gen_s),
    ]


def main() -> None:
    for text in run():
        print(text)


if __name__ == "__main__":
    main()
