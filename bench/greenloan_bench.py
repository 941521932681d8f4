"""Green Loan Link changefeed bench (issue 12): the reference sync job pulling a feed of
1,000,000 changes from a serving node into a SQLite sink, beside a baseline in the same run (the
same rows copied store-to-sink by a plain query loop: no signing, no network, no checks); and the
latency from a committed change to its arrival at a following job.

Runs alternate baseline and feed, each into a fresh sink. The job runs as its own process
(`creditnode greenloan-sync`), as it would in production; the node serves in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sqlite3
import statistics
import sys
import tempfile
import time

from adapters import greenloan
from devtools.federation import build
from node import model
from node.gendata import generate_results
from node.greenloan_sink import RECORDS, GreenLoanSink
from node.greenloan_sync import SyncJob
from node.home import NodeHome
from node.runtime import NodeRuntime

HUZHOU, PROVINCE = "cn-330500", "cn-330000"
TARGET_RATIO = 0.5
TARGET_P99_S = 1.0
BASELINE_BATCH = 1000  # the job asks for the node's largest batch too


def populate(runtime: NodeRuntime, changes: int) -> None:
    """Grow the source's journal to `changes` entries with generated results."""
    missing = changes - runtime.store.changes.head()
    results = generate_results(HUZHOU, missing, seed=1000, as_of=runtime.clock.now().date())
    for start in range(0, len(results), 50_000):
        runtime.store.results.import_results(
            results[start : start + 50_000],
            source=f"bench-{start}.csv",
            file_sha256="0" * 64,
            fmt="bench",
            now=runtime.clock.now(),
        )


def baseline_copy(store_file: pathlib.Path, sink_url: str) -> int:
    """The same enterprise rows, in seq order, copied by a plain loop: read a page of the
    journal joined with the results, insert the records, commit; no verification at all."""
    sink = GreenLoanSink.open(sink_url)  # the same tables the job fills
    sink.close()
    source = sqlite3.connect(store_file)
    target = sqlite3.connect(sink_url.removeprefix("sqlite:///"))
    target.execute("PRAGMA journal_mode=WAL")
    target.execute("PRAGMA synchronous=FULL")
    columns = [*greenloan.COLUMNS, "source_node", "change_seq"]
    insert = (
        f"INSERT INTO {RECORDS.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    after, copied = 0, 0
    while True:
        rows = source.execute(
            "SELECT c.seq, r.result_id, r.id_type, r.subject_id, r.subject_name, "
            "r.subject_type, r.level, r.native_level, r.native_score, r.scheme, r.flags, "
            "r.indicators, r.evaluated_at, r.valid_until, r.issuer_node "
            "FROM changes c JOIN credit_results r ON r.result_id = c.result_id "
            "WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
            (after, BASELINE_BATCH),
        ).fetchall()
        if not rows:
            break
        after = rows[-1][0]
        records = [
            (
                row[1],
                model.SubjectIdType(row[2]).name,
                row[3],
                row[4],
                model.SubjectType(row[5]).name,
                model.CreditLevel(row[6]).name.removeprefix("LEVEL_"),
                row[7],
                row[8],
                row[9],
                ",".join(sorted(json.loads(row[10]))),
                row[11],
                row[12],
                row[13],
                row[14],
                model.ResultStatus.ACTIVE.name,  # jgzt: the feed upserts current results
                HUZHOU,
                row[0],
            )
            for row in rows
            if row[5] == int(model.SubjectType.ENTERPRISE)
        ]
        target.executemany(insert, records)
        target.commit()
        copied += len(records)
    source.close()
    target.close()
    return copied


async def feed_copy(home: pathlib.Path, endpoint: str, sink_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        "greenloan-sync",
        *("--target", endpoint, "--sink", sink_url, "--home", str(home), "--max-batch", "1000"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"greenloan-sync failed: {err.decode()}")


def sink_count(sink_url: str) -> int:
    with sqlite3.connect(sink_url.removeprefix("sqlite:///")) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {RECORDS.name}").fetchone()[0])


async def latency(
    huzhou: NodeRuntime, province: NodeRuntime, root: pathlib.Path, n: int
) -> list[float]:
    """Seconds from an import's commit to the following job's having applied it, n times."""
    sink = GreenLoanSink.open(f"sqlite:///{root / 'latency-sink.db'}")
    client = province.peer_client(HUZHOU, "yrd")
    arrived: dict[int, float] = {}

    def seen(state: object) -> None:
        arrived.setdefault(state.cursor, time.monotonic())

    job = SyncJob(
        channel=client.channel,
        source=HUZHOU,
        audience=PROVINCE,
        key_for=lambda node, keyid: province.trust.peer_key(node, keyid),
        sink=sink,
        clock=province.clock,
        progress=seen,
    )
    task = asyncio.create_task(job.run(follow=True))
    try:
        while job.state.cursor < huzhou.store.changes.head():  # catch up first
            await asyncio.sleep(0.05)
        fresh = [
            r
            for r in generate_results(HUZHOU, 4 * n, seed=4242, as_of=huzhou.clock.now().date())
            if r.subject_type is model.SubjectType.ENTERPRISE
        ][:n]
        delays: list[float] = []
        for i, result in enumerate(fresh):
            await asyncio.to_thread(
                huzhou.store.results.import_results,
                [result],
                source=f"live-{i}.csv",
                file_sha256="0" * 64,
                fmt="bench",
                now=huzhou.clock.now(),
            )
            committed = time.monotonic()
            seq = huzhou.store.changes.head()
            while seq not in arrived:
                await asyncio.sleep(0.001)
            delays.append(arrived[seq] - committed)
            await asyncio.sleep(0.01 * (i % 7))  # commits at varied moments of the poll cycle
        return delays
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        sink.close()


async def run(changes: int, repeats: int, live: int) -> None:
    with tempfile.TemporaryDirectory(prefix="greenloan-bench-") as tmp:
        root = pathlib.Path(tmp)
        build(
            root,
            {HUZHOU: "湖州", PROVINCE: "浙江省"},
            {"yrd": (HUZHOU, PROVINCE)},
            subjects=10,
            roles={PROVINCE: "green-loan-sync"},
        )
        huzhou = NodeRuntime(NodeHome(root / HUZHOU))
        province = NodeRuntime(NodeHome(root / PROVINCE))
        started = time.perf_counter()
        populate(huzhou, changes)
        print(f"source: {changes:,} changes imported in {time.perf_counter() - started:.0f} s")
        store_file = pathlib.Path(str(huzhou.store.engine.url.database))
        await huzhou.start()
        try:
            rows: list[tuple[str, float, float, int]] = []
            for attempt in range(repeats):
                base_url = f"sqlite:///{root / f'baseline-{attempt}.db'}"
                t0 = time.perf_counter()
                copied = await asyncio.to_thread(baseline_copy, store_file, base_url)
                baseline_s = time.perf_counter() - t0
                feed_url = f"sqlite:///{root / f'feed-{attempt}.db'}"
                t0 = time.perf_counter()
                await feed_copy(province.home.path, huzhou.config.listen, feed_url)
                feed_s = time.perf_counter() - t0
                assert sink_count(feed_url) == copied == sink_count(base_url)
                rows.append((f"run {attempt + 1}", baseline_s, feed_s, copied))
            print(f"{'':8} {'baseline s':>11} {'feed s':>8} {'changes/s':>10} {'ratio':>6}")
            for name, base, feed, _ in rows:
                print(
                    f"{name:8} {base:11.1f} {feed:8.1f} {changes / feed:10,.0f} {base / feed:6.2f}"
                )
            ratios = [base / feed for _, base, feed, _ in rows]
            print(
                f"records per run: {rows[0][3]:,}; feed/baseline speed ratio "
                f"{min(ratios):.2f}-{max(ratios):.2f} (target >= {TARGET_RATIO})"
            )
            delays = await latency(huzhou, province, root, live)
            q = statistics.quantiles(delays, n=100)
            print(
                f"commit -> following job, {len(delays)} changes: p50 {q[49] * 1000:.0f} ms, "
                f"p99 {q[98] * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
                f"(target p99 < {TARGET_P99_S * 1000:.0f} ms)"
            )
        finally:
            await huzhou.stop()
            await province.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live", type=int, default=200, help="changes timed for latency")
    args = parser.parse_args(argv)
    asyncio.run(run(args.changes, args.repeats, args.live))


if __name__ == "__main__":
    main()
