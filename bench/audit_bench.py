"""Auditor API bench (issue 13): p50 and p95 of a filtered search through the HTTP API on a
1,000,000-entry log (SQLite), beside the plain indexed SQL query on the same data as the
baseline measured in the same run; and how fast the index is built on a first start.

The log's entries are written straight into the store's table (no tree: a search reads no
proof); the index is built by the service's own indexer, as a first start on an existing log
would. `--entries N` for a smaller log.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence

import aiohttp

from node import identifiers, model, wire
from node.audit import web as audit_web
from node.audit.access import AuditorFile
from node.audit.index import LogIndexer
from node.home import NodeHome
from node.log.store import LogStore
from node.store import Store
from node.store.audit import AuditRepository

NODE = "cn-330500"
PEERS = ("cn-330100", "cn-330200", "cn-330300", "cn-330400", "cn-320500", "cn-310000")
ZONES = ("yrd", "hz-metro", "hjjw", "hyzt")
PURPOSES = ("xinyi-dai", "xinyi-you", "xinyi-gou", "joint-sanction")
SUBJECTS = [identifiers.make_uscc(f"91330500MA{n:07d}") for n in range(20_000)]
SEARCHES = 300
TARGET_P50_MS = 50.0


def _entry(rng: random.Random, i: int, start: dt.datetime) -> bytes:
    decision = rng.choices(list(model.Decision), weights=(80, 12, 6, 2))[0]
    answered = rng.random() < 0.7
    peer = rng.choice(PEERS)
    return wire.exchange_record_bytes(
        time=start + dt.timedelta(seconds=3 * i),
        direction=model.Direction.ANSWERED if answered else model.Direction.ASKED,
        requester_node=peer if answered else NODE,
        responder_node=NODE if answered else peer,
        zone=rng.choice(ZONES),
        purpose=rng.choice(PURPOSES),
        subject=model.SubjectRef(model.SubjectIdType.USCC, rng.choice(SUBJECTS)),
        request_id=f"req-{i}",
        request_digest=hashlib.sha256(b"%d" % i).digest(),
        decision=decision,
        reason="" if decision is model.Decision.GRANTED else "NOT_IN_ZONE: not in the zone",
        result_id=f"r-{i}" if decision is model.Decision.GRANTED else "",
        result_digest=bytes(32) if decision is model.Decision.GRANTED else b"",
    )


def _fill(path: str, entries: int) -> None:
    rng = random.Random(13)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    distinct = [_entry(rng, i, start) for i in range(5_000)]
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO log_entries (idx, data, leaf_hash, created_at) VALUES (?, ?, ?, ?)",
            (
                (i, distinct[i % len(distinct)], bytes(32), "2026-01-01 00:00:00")
                for i in range(entries)
            ),
        )
    conn.close()


def _searches(rng: random.Random) -> list[dict[str, str]]:
    kinds = [
        lambda: {"peer": rng.choice(PEERS)},
        lambda: {"subject": rng.choice(SUBJECTS)},
        lambda: {"purpose": rng.choice(PURPOSES), "decision": "REFUSED"},
        lambda: {"zone": rng.choice(ZONES), "direction": "ASKED"},
    ]
    return [rng.choice(kinds)() for _ in range(SEARCHES)]


def _baseline(path: str, searches: Sequence[dict[str, str]]) -> list[float]:
    """The plain indexed SQL a search needs: matching indices, then their entries."""
    conn = sqlite3.connect(path)
    times = []
    for params in searches:
        where = " AND ".join(f"{k} = ?" for k in params)
        values = [
            int(model.Decision[v])
            if k == "decision"
            else int(model.Direction[v])
            if k == "direction"
            else v
            for k, v in params.items()
        ]
        started = time.perf_counter()
        indices = [
            r[0]
            for r in conn.execute(
                f"SELECT idx FROM audit_entries WHERE {where} ORDER BY idx DESC LIMIT 51", values
            )
        ]
        marks = ",".join("?" * len(indices))
        conn.execute(
            f"SELECT idx, data FROM log_entries WHERE idx IN ({marks})", indices
        ).fetchall()
        times.append(time.perf_counter() - started)
    conn.close()
    return times


class _NoProofs:
    """The bench searches only: no sequencer, no checkpoint."""

    latest_checkpoint = ""
    behind = False
    tree = None

    async def refresh(self) -> None:
        return None


async def _api(store: Store, home: str, searches: Sequence[dict[str, str]]) -> list[float]:
    auditors = AuditorFile(NodeHome(home))
    _, token = auditors.add("bench", "auditor", ["*"], personal=False, now=dt.datetime.now(dt.UTC))
    service = audit_web.AuditService(
        store,
        _NoProofs(),  # type: ignore[arg-type]
        auditors,
        lambda ref: ref,
        audit_web.NodeFacts(NODE, "湖州", "", dict),
    )
    runner, port = await audit_web.start(audit_web.application(service), "127.0.0.1", 0)
    times = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            url = f"http://127.0.0.1:{port}/api/entries"
            for params in searches:
                started = time.perf_counter()
                async with session.get(url, params=params) as response:
                    body = await response.json()
                    assert response.status == 200, body
                times.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
    return times


def _ms(samples: Sequence[float], q: float) -> float:
    """The q-quantile of `samples` in milliseconds."""
    return statistics.quantiles(samples, n=100)[round(q * 100) - 1] * 1000


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_bench")
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        path = f"{root}/node.db"
        store = Store.open(f"sqlite:///{path}")
        try:
            started = time.perf_counter()
            _fill(path, args.entries)
            filled = time.perf_counter() - started
            indexer = LogIndexer(LogStore(store), AuditRepository(store))
            started = time.perf_counter()
            assert indexer.catch_up() == args.entries
            indexing = time.perf_counter() - started
            searches = _searches(random.Random(5))
            baseline = _baseline(path, searches)
            api = asyncio.run(_api(store, root, searches))
        finally:
            store.close()
    b50, a50 = _ms(baseline, 0.5), _ms(api, 0.5)
    print(
        f"log of {args.entries:,} entries written in {filled:.1f} s; "
        f"indexed in {indexing:.1f} s ({args.entries / indexing:,.0f} entries/s)"
    )
    print(f"{'filtered search, 51 rows':<34}{'p50 ms':>9}{'p95 ms':>9}")
    print(f"{'plain indexed SQL (baseline)':<34}{b50:>9.2f}{_ms(baseline, 0.95):>9.2f}")
    print(f"{'auditor API over HTTP':<34}{a50:>9.2f}{_ms(api, 0.95):>9.2f}")
    verdict = "meets" if a50 < TARGET_P50_MS else "MISSES"
    print(f"API / baseline at p50: {a50 / b50:.1f}x; {verdict} the {TARGET_P50_MS:.0f} ms target")


if __name__ == "__main__":
    main()
