"""Exchange-log bench (issue #4): durable appends/s through the group-commit Sequencer on SQLite
(and PostgreSQL when a throwaway server starts), as ratios to a plain sqlite3 executemany baseline
measured in the same run, and inclusion-proof time on a 1,000,000-entry log after a cold start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import os
import pathlib
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519

from node import identifiers, model, wire
from node.log import merkle
from node.log.notes import Checkpoint, NoteSigner, log_origin, open_checkpoint, sign_checkpoint
from node.log.sequencer import LogWrite, Receipt, Sequencer
from node.store import Store
from node.store import log_tables as t

NODE = "cn-330500"
PEERS = ("cn-330100", "cn-330200", "cn-330300", "cn-330400", "cn-320500", "cn-310000")
PURPOSES = ("loan-approval", "public-procurement", "administrative-licensing", "tax-credit")
# (concurrent appending tasks, total entries): sized so the whole bench stays near a minute.
RUNS = ((1, 2_000), (64, 20_000), (256, 20_000))
PG_RUNS = ((1, 500), (64, 10_000), (256, 10_000))
FIXED_BATCH = 256
REPEATS = 3
PROOF_LOG_SIZE = 1_000_000
PROOF_SAMPLES = 1_000
TARGET_APPENDS_PER_S = 20_000
TARGET_PROOF_US = 1_000.0


# --- realistic entries ---------------------------------------------------------------------------


class Entries:
    """Serialized ExchangeRecords as the interchange logs them (~240 bytes): a peer asked about
    a company (USCC) or a pseudonymised resident, mostly granted, some refused or not found."""

    def __init__(self, seed: int = 2026, subjects: int = 1_000) -> None:
        rng = random.Random(seed)
        key = rng.randbytes(32)
        self._time = dt.datetime.now(dt.UTC)
        pool: list[model.SubjectRef] = []
        for n in range(subjects):
            if n % 4 == 3:  # DESIGN.md §5: a resident id enters the log only pseudonymised
                digest = hmac.new(key, f"resident-{n}".encode(), hashlib.sha256).hexdigest()
                pool.append(
                    model.SubjectRef(
                        model.SubjectIdType.RESIDENT_ID, model.HMAC_SUBJECT_PREFIX + digest
                    )
                )
            else:
                first17 = f"91330500MA{rng.randrange(16**7):07X}"
                pool.append(
                    model.SubjectRef(model.SubjectIdType.USCC, identifiers.make_uscc(first17))
                )
        self._subjects = pool

    def __call__(self, i: int) -> bytes:
        subject = self._subjects[i % len(self._subjects)]
        request_id = str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128), version=4))
        fields: dict[str, Any] = {}
        kind = i % 10
        if kind < 8:
            fields = {
                "decision": model.Decision.GRANTED,
                "result_id": f"{NODE}:r:{i % 99991:08d}",
                "result_digest": hashlib.sha256(b"result %d" % i).digest(),
            }
        elif kind == 8:
            fields = {
                "decision": model.Decision.NOT_FOUND,
                "reason": f"NOT_FOUND: no current credit result at {NODE}",
            }
        else:
            fields = {
                "decision": model.Decision.REFUSED,
                "reason": "PURPOSE_NOT_ALLOWED: zone does not admit this purpose",
            }
        return wire.record_bytes(
            model.ExchangeRecord(
                time=self._time + dt.timedelta(microseconds=i),
                direction=model.Direction.ANSWERED,
                requester_node=PEERS[i % len(PEERS)],
                responder_node=NODE,
                zone="yangtze-delta",
                purpose=PURPOSES[i % len(PURPOSES)],
                subject=subject,
                request_id=request_id,
                request_digest=hashlib.sha256(request_id.encode()).digest(),
                **fields,
            )
        )


def _log_signer() -> NoteSigner:
    # A fresh key per run, held in memory only: nothing secret touches the disk.
    return NoteSigner(log_origin(NODE), ed25519.Ed25519PrivateKey.generate())


def _checkpoint_signer(signer: NoteSigner) -> Callable[[int, bytes], str]:
    def sign(size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint(log_origin(NODE), size, root), signer)

    return sign


def _failed(index: int, exc: BaseException) -> bytes:
    raise AssertionError(f"bench entry {index} failed to build: {exc!r}")


# --- 1. appends through the sequencer --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AppendRun:
    backend: str
    concurrency: int
    entries: int
    seconds: float
    batches: int

    @property
    def rate(self) -> float:
        return self.entries / self.seconds

    @property
    def mean_batch(self) -> float:
        return self.entries / self.batches


async def _append_all(
    seq: Sequencer, concurrency: int, total: int, entry: Callable[[int], bytes]
) -> list[Receipt]:
    receipts: list[Receipt] = []
    issued = 0

    async def caller() -> None:
        nonlocal issued
        while issued < total:
            i = issued
            issued += 1
            # The entry is built inside the batch, for its index, as the interchange does.
            receipts.append(await seq.append(_builder(entry, i), _failed))

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return receipts


def _builder(entry: Callable[[int], bytes], i: int) -> Callable[[int], LogWrite]:
    def build(index: int) -> LogWrite:
        return LogWrite(entry(i))

    return build


def _check_receipts(receipts: Sequence[Receipt], signer: NoteSigner, total: int) -> None:
    """Every index once; sampled receipts verify against their Ed25519-signed checkpoint."""
    if sorted(r.log_index for r in receipts) != list(range(total)):
        raise AssertionError("the sequencer did not assign every index exactly once")
    for receipt in [*receipts[:: max(1, total // 50)], receipts[-1]]:
        checkpoint = open_checkpoint(receipt.checkpoint, signer.verifier()).checkpoint
        merkle.verify_inclusion(
            receipt.log_index,
            checkpoint.size,
            receipt.leaf_hash,
            receipt.inclusion_proof,
            checkpoint.root_hash,
        )


def run_appends(
    url: str, backend: str, concurrency: int, total: int, entry: Callable[[int], bytes]
) -> AppendRun:
    signer = _log_signer()
    with Store.open(url) as store:

        async def go() -> tuple[float, list[Receipt]]:
            seq = Sequencer(store.engine, _checkpoint_signer(signer))
            await seq.start()
            try:
                start = time.perf_counter()
                receipts = await _append_all(seq, concurrency, total, entry)
                return time.perf_counter() - start, receipts
            finally:
                await seq.close()

        seconds, receipts = asyncio.run(go())
        with store.connect() as conn:
            batches = conn.execute(
                sa.select(sa.func.count()).select_from(t.log_checkpoints)
            ).scalar_one()
    _check_receipts(receipts, signer, total)
    return AppendRun(backend, concurrency, total, seconds, batches)


# --- 2. the baseline: plain sqlite3 executemany ------------------------------------------------


def _entry_rows(entry: Callable[[int], bytes], total: int) -> list[tuple[int, bytes, bytes, str]]:
    # created_at as SQLAlchemy stores a UtcDateTime on SQLite: naive UTC text.
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = []
    for i in range(total):
        data = entry(i)
        rows.append((i, data, merkle.leaf_hash(data), now))
    return rows


def _log_entries_ddl(root: pathlib.Path) -> str:
    """The log_entries DDL exactly as the store's migration creates it on SQLite."""
    path = root / "ddl.db"
    with Store.open(f"sqlite:///{path}"):
        pass
    conn = sqlite3.connect(path)
    try:
        ddl: str = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'log_entries'"
        ).fetchone()[0]
    finally:
        conn.close()
    return ddl


def baseline_inserts(
    path: pathlib.Path, ddl: str, rows: Sequence[tuple[Any, ...]], batch: int
) -> float:
    """Seconds to insert `rows` in batches of `batch`, one commit (fsync) per batch, on the
    store's pragmas (WAL, synchronous=FULL). Table creation is not counted."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(ddl)
        start = time.perf_counter()
        for first in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO log_entries VALUES (?, ?, ?, ?)", rows[first : first + batch]
            )
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


# --- 3. proofs on a 1,000,000-entry log ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProofRun:
    size: int
    fill_s: float
    start_s: float
    load_only_s: float
    tree_build_s: float
    append_after_start_s: float
    prove_us: list[float]
    verify_us: list[float]
    both_us: list[float]


def _fill_log(
    path: pathlib.Path, entry: Callable[[int], bytes], size: int, signer: NoteSigner
) -> None:
    """Write a `size`-entry log straight into the store's tables (entries, every completed tree
    node above the leaves, tree state, one signed checkpoint), as the sequencer would have."""
    now = dt.datetime.now(dt.UTC)
    stamp = now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    data = [entry(i) for i in range(size)]
    leaves = [merkle.leaf_hash(d) for d in data]
    tree = merkle.InMemoryTree.from_leaf_hashes(leaves)
    root = tree.root()
    # The right edge's complete subtrees, largest first, as log_state.frontier holds them.
    frontier = b"".join(
        tree.levels[level][(size >> level) - 1]
        for level in reversed(range(size.bit_length()))
        if size >> level & 1
    )
    note = _checkpoint_signer(signer)(size, root)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO log_entries (idx, data, leaf_hash, created_at) VALUES (?, ?, ?, ?)",
            ((i, data[i], leaves[i], stamp) for i in range(size)),
        )
        conn.executemany(
            "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
            (
                (level, i, h)
                for level in range(1, len(tree.levels))
                for i, h in enumerate(tree.levels[level])
            ),
        )
        conn.execute("UPDATE log_state SET size = ?, frontier = ? WHERE id = 1", (size, frontier))
        conn.execute(
            "INSERT INTO log_checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
            (size, root, note, stamp),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def run_proofs(
    root_dir: pathlib.Path, entry: Callable[[int], bytes], size: int, samples: int, seed: int = 9162
) -> ProofRun:
    path = root_dir / "proofs.db"
    url = f"sqlite:///{path}"
    signer = _log_signer()
    with Store.open(url) as store:
        fill_start = time.perf_counter()
        _fill_log(path, entry, size, signer)
        fill_s = time.perf_counter() - fill_start

        # The two halves of Sequencer._load, timed apart: reading the leaf hashes, building.
        start = time.perf_counter()
        with store.connect() as conn:
            leaves = list(
                conn.execute(
                    sa.select(t.log_entries.c.leaf_hash).order_by(t.log_entries.c.idx)
                ).scalars()
            )
        load_only_s = time.perf_counter() - start
        start = time.perf_counter()
        merkle.InMemoryTree.from_leaf_hashes(leaves)
        tree_build_s = time.perf_counter() - start
        del leaves

        async def go() -> ProofRun:
            seq = Sequencer(store.engine, _checkpoint_signer(signer))
            began = time.perf_counter()
            await seq.start()
            start_s = time.perf_counter() - began
            try:
                checkpoint = open_checkpoint(seq.latest_checkpoint, signer.verifier()).checkpoint
                if checkpoint.size != size or seq.tree.root(size) != checkpoint.root_hash:
                    raise AssertionError("the restarted sequencer does not hold the filled log")
                rng = random.Random(seed)
                prove, verify, both = [], [], []
                tree = seq.tree
                for _ in range(samples):
                    index = rng.randrange(size)
                    t0 = time.perf_counter_ns()
                    proof = tree.inclusion_proof(index, size)
                    t1 = time.perf_counter_ns()
                    merkle.verify_inclusion(
                        index, size, tree.leaf(index), proof, checkpoint.root_hash
                    )
                    t2 = time.perf_counter_ns()
                    prove.append((t1 - t0) / 1e3)
                    verify.append((t2 - t1) / 1e3)
                    both.append((t2 - t0) / 1e3)
                # The filled log goes on: one more append extends it consistently.
                began = time.perf_counter()
                receipt = await seq.append(_builder(entry, size), _failed)
                append_s = time.perf_counter() - began
                after = open_checkpoint(receipt.checkpoint, signer.verifier()).checkpoint
                merkle.verify_inclusion(
                    size, size + 1, receipt.leaf_hash, receipt.inclusion_proof, after.root_hash
                )
                merkle.verify_consistency(
                    size,
                    size + 1,
                    checkpoint.root_hash,
                    after.root_hash,
                    seq.tree.consistency_proof(size, size + 1),
                )
            finally:
                await seq.close()
            return ProofRun(
                size, fill_s, start_s, load_only_s, tree_build_s, append_s, prove, verify, both
            )

        return asyncio.run(go())


# --- PostgreSQL (optional) -------------------------------------------------------------------


def run_postgres(
    entry: Callable[[int], bytes], runs: Sequence[tuple[int, int]]
) -> tuple[list[AppendRun], str]:
    """The same appends on a throwaway local PostgreSQL server; ([], reason) when none starts."""
    try:
        from tests.pg import PostgresServer, PostgresUnavailable
    except ImportError as exc:  # the bench runs from a source checkout; tests/ may be absent
        return [], f"tests/pg.py not importable ({exc})"
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        return [], str(exc).splitlines()[0]
    try:
        server.start()
        results = [
            run_appends(server.url(server.create_database()), "postgres", c, n, entry)
            for c, n in runs
        ]
        return results, ""
    except PostgresUnavailable as exc:
        return [], str(exc).splitlines()[0]
    finally:
        server.stop()


# --- the table ---------------------------------------------------------------------------------


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _median(runs: Sequence[AppendRun]) -> AppendRun:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def _spread(rates: Sequence[float]) -> str:
    return f"{min(rates) / 1000:.1f}-{max(rates) / 1000:.1f}k"


def _conditions() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"


def run(
    runs: Sequence[tuple[int, int]] = RUNS,
    proof_size: int = PROOF_LOG_SIZE,
    samples: int = PROOF_SAMPLES,
    postgres: bool = True,
    repeats: int = REPEATS,
    pg_runs: Sequence[tuple[int, int]] = PG_RUNS,
) -> list[str]:
    entry = Entries()
    sizes = [len(entry(i)) for i in range(1_000)]
    lines = [
        f"exchange log: {statistics.mean(sizes):.0f}-byte ExchangeRecord entries "
        f"({min(sizes)}-{max(sizes)}), Ed25519-signed checkpoint per batch; "
        "SQLite WAL synchronous=FULL",
        f"machine at start: {_conditions()}; each row: median of {repeats} runs on fresh files "
        "(spread = slowest-fastest entries/s)",
        f"{'appends (durable, receipt after commit)':<48} {'entries':>7} {'seconds':>8} "
        f"{'entries/s':>10} {'spread':>12} {'batch':>6} {'vs base':>8}",
    ]

    def row(name: str, total: int, rates: Sequence[float], batch: str, ratio: str = "") -> str:
        median = statistics.median(rates)
        return (
            f"{name:<48} {total:>7,} {total / median:>8.2f} {median:>10,.0f} "
            f"{_spread(rates):>12} {batch:>6} {ratio:>8}"
        ).rstrip()

    with tempfile.TemporaryDirectory(prefix="log-bench-") as tmp:
        root = pathlib.Path(tmp)
        ddl = _log_entries_ddl(root)
        files = (root / f"run-{n}.db" for n in range(1_000_000))

        def appends(
            concurrency: int, total: int, build: Callable[[int], bytes]
        ) -> tuple[list[float], float]:
            """entries/s of each run, and the mean batch of the median run."""
            measured = [
                run_appends(f"sqlite:///{next(files)}", "sqlite", concurrency, total, build)
                for _ in range(repeats)
            ]
            return [r.rate for r in measured], _median(measured).mean_batch

        def baseline(total: int, batch: int) -> list[float]:
            rows = _entry_rows(entry, total)
            return [total / baseline_inserts(next(files), ddl, rows, batch) for _ in range(repeats)]

        best = (0.0, 0)
        for concurrency, total in runs:
            rates, mean_batch = appends(concurrency, total, entry)
            batch = max(1, round(mean_batch))
            base = baseline(total, batch)
            ratio = statistics.median(rates) / statistics.median(base)
            lines.append(
                row(
                    f"sequencer, {concurrency} concurrent callers",
                    total,
                    rates,
                    f"{mean_batch:.1f}",
                    f"{ratio:.2f}x",
                )
            )
            lines.append(
                row(
                    f"  baseline: sqlite3 executemany, {batch}/commit",
                    total,
                    base,
                    str(batch),
                    "1.00x",
                )
            )
            best = max(best, (statistics.median(rates), concurrency))
        # The sequencer's own cost: the same records, serialized before the clock starts.
        concurrency, total = max(runs)
        ready = [entry(i) for i in range(total)]
        rates, mean_batch = appends(concurrency, total, ready.__getitem__)
        lines.append(
            row(
                f"sequencer, {concurrency} callers, records pre-serialized",
                total,
                rates,
                f"{mean_batch:.1f}",
            )
        )
        base = baseline(total, FIXED_BATCH)
        lines.append(
            row(
                f"baseline: sqlite3 executemany, {FIXED_BATCH}/commit",
                total,
                base,
                str(FIXED_BATCH),
            )
        )
        verdict = "meets" if best[0] >= TARGET_APPENDS_PER_S else "MISSES"
        lines.append(
            f"target >= {TARGET_APPENDS_PER_S:,} durable entries/s on SQLite (records built in "
            f"place): best median {best[0]:,.0f}/s at {best[1]} callers -> {verdict} the target"
        )

        if postgres:
            pg_results, why = run_postgres(entry, pg_runs)
            lines.append("")
            if pg_results:
                lines.append(
                    "PostgreSQL (throwaway local server from tests/pg.py, fsync on, "
                    "same machine; no baseline)"
                )
                for r in pg_results:
                    lines.append(
                        row(
                            f"sequencer on PostgreSQL, {r.concurrency} concurrent callers",
                            r.entries,
                            [r.rate],
                            f"{r.mean_batch:.1f}",
                        )
                    )
            else:
                lines.append(f"PostgreSQL: not measured ({why})")

        proofs = run_proofs(root, entry, proof_size, samples)
    lines += [
        "",
        f"inclusion proofs on a {proofs.size:,}-entry log (entries, tree nodes, state and "
        "checkpoint bulk-inserted straight into the store's tables, NOT through the sequencer)",
        f"{'step':<52} {'seconds':>8}",
        f"{'bulk fill (build records, hash, insert, one commit)':<52} {proofs.fill_s:>8.2f}",
        f"{'Sequencer.start() on the filled store (cache warm)':<52} {proofs.start_s:>8.2f}",
        f"{'  its SELECT leaf_hash ORDER BY idx (timed apart)':<52} {proofs.load_only_s:>8.2f}",
        f"{'  its InMemoryTree.from_leaf_hashes (timed apart)':<52} {proofs.tree_build_s:>8.2f}",
        f"{'first append after start (one batch, one fsync)':<52} "
        f"{proofs.append_after_start_s:>8.3f}",
        f"{f'{samples:,} random indices':<52} {'median us':>10} {'p99 us':>10}",
    ]
    for name, values in (
        ("tree.inclusion_proof(i, size)", proofs.prove_us),
        ("merkle.verify_inclusion", proofs.verify_us),
        ("proof + verification", proofs.both_us),
    ):
        lines.append(
            f"{name:<52} {statistics.median(values):>10.1f} {_percentile(values, 0.99):>10.1f}"
        )
    p99 = _percentile(proofs.both_us, 0.99)
    verdict = "meets" if p99 < TARGET_PROOF_US else "MISSES"
    lines.append(f"target: a proof in under 1 ms -> p99 {p99:.1f} us {verdict} the target")
    lines.append(f"machine at end: {_conditions()}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the work")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs per row (median)")
    args = parser.parse_args([] if argv is None else argv)
    scale = 10 if args.quick else 1
    runs = [(c, n // scale) for c, n in RUNS]
    proof_size = PROOF_LOG_SIZE // scale
    pg_runs = [(c, n // scale) for c, n in PG_RUNS]
    for text in run(runs, proof_size, PROOF_SAMPLES, not args.no_postgres, args.repeats, pg_runs):
        print(text, flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
