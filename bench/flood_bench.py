"""Flood bench (issue 9 §3): one peer (A) floods the node far beyond its rate while another (B)
asks at a steady, modest pace. Reports B's QueryCredit p50/p99 alone and under the flood, A's
calls/s and how they were answered, and the log entries A's flood added per second beside the
bound the policy gives (rate_per_minute / 60, plus one logged refusal and one summary entry per
summary window).

The node is `creditnode serve` in its own process (with its answering worker); B asks from this
process, A floods from a process of its own, so that A's client work does not delay B's calls
here. Baseline, measured in the same run: B's latency while A floods a bare grpc.aio server
(same TLS key, certificate and client anchors) that refuses every call RESOURCE_EXHAUSTED at
once — what the flood costs B on this machine's shared CPUs without the node doing A's work.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
import math
import os
import pathlib
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import sqlalchemy as sa
from grpc_status import rpc_status

from bench.interchange_bench import (
    BATCH_METHOD,
    HUZHOU,
    PURPOSE,
    SUBJECTS,
    UNARY_METHOD,
    ZONE,
    ClientTls,
    _cpu_seconds,
    _open_channels,
    _passthrough,
    _query,
    enterprises,
    node_server_credentials,
    serve_bare,
    server_process,
)
from devtools.federation import Federation, build
from node import error_status as status
from node import policy, tls, wire
from node.errors import RateLimited
from node.home import NodeHome
from node.keys import NodeKeys
from node.process import run_serving_loop, serving_loop_name
from node.store import Store
from node.store import log_tables as t

FLOODER, ASKER = "cn-330400", "cn-330300"  # A (Jiaxing) floods; B (Wenzhou) asks normally
UNAGREED_PURPOSE = "xinyi-you"  # agreed in hz-metro, not in hjjw: refused PERMISSION_DENIED
B_CALLERS = 8
B_INTERVAL_S = 0.05  # each of B's callers asks every 50 ms: 160 calls/s in all
PHASE_S = 8.0  # B's measured interval in each phase
SETTLE_S = 1.5  # A floods this long before B measures: A's bucket (a minute's calls) is spent
A_CALLERS = 64  # concurrent unary calls, over A_CHANNELS TLS connections
A_CHANNELS = 4
A_STREAMS = 2  # BatchQueryCredit streams, each sending as fast as flow control lets it
INVALID_EVERY = 4  # one query in four asks for a purpose not agreed in the zone
STOP_GRACE_S = 5.0  # A's calls in flight when it is told to stop get this long to finish
TARGET_P50_RATIO = 2.0
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
SUMMARY_COUNT = re.compile(r"RATE_LIMITED: (\d+) more calls")


# --- B: steady, modest load, in this process ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AskerRun:
    latencies: Sequence[float]  # of calls answered with a result
    failures: collections.Counter[str]  # status code name -> calls not answered with a result
    seconds: float
    started: dt.datetime
    ended: dt.datetime
    server_cpu_s: Sequence[float]  # of each server process given, while B measured

    def percentile_ms(self, p: int) -> float:
        if len(self.latencies) < 2:  # reported as nan, not a crash: a bench reports
            return math.nan
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000.0


async def run_asker(
    client: ClientTls, target: str, subjects: Sequence[str], phase: str, server_pids: Sequence[int]
) -> AskerRun:
    """B_CALLERS tasks, each calling QueryCredit every B_INTERVAL_S (never catching up on a
    late call, so B's offered load is the same in every phase), fresh request ids."""
    channels = _open_channels(client, target)
    stubs = [
        ch.unary_unary(
            UNARY_METHOD,
            request_serializer=_passthrough,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )
        for ch in channels
    ]
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()

    async def caller(number: int) -> None:
        stub = stubs[number % len(stubs)]
        next_at = start + number * B_INTERVAL_S / B_CALLERS  # staggered
        n = 0
        while next_at < deadline:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            subject = subjects[(number * 7919 + n) % len(subjects)]
            request = _query(f"b-{phase}-{number}-{n}", subject)
            n += 1
            sent = time.perf_counter()
            try:
                response = await stub(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                failures[exc.code().name] += 1
            else:
                if response.HasField("result"):
                    latencies.append(time.perf_counter() - sent)
                else:
                    failures[CODE_NAMES.get(response.error.code, "?")] += 1
            next_at = max(next_at + B_INTERVAL_S, time.perf_counter())

    try:
        # One call first, so that every channel's TLS handshake is outside the measurement.
        await asyncio.gather(
            *(
                stub(_query(f"b-{phase}-hello-{i}", subjects[i]), timeout=30)
                for i, stub in enumerate(stubs)
            )
        )
        cpu0, started = [_cpu_seconds(pid) for pid in server_pids], dt.datetime.now(dt.UTC)
        start = time.perf_counter()
        deadline = start + PHASE_S
        await asyncio.gather(*(caller(i) for i in range(B_CALLERS)))
        seconds = time.perf_counter() - start
        ended = dt.datetime.now(dt.UTC)
        server_cpu = [_cpu_seconds(pid) - c for pid, c in zip(server_pids, cpu0, strict=True)]
    finally:
        for ch in channels:
            await ch.close()
    return AskerRun(latencies, failures, seconds, started, ended, server_cpu)


# --- A: the flood, in a process of its own --------------------------------------------------------


def _flood_query(request_id: str, subject: str, n: int) -> bytes:
    purpose = UNAGREED_PURPOSE if n % INVALID_EVERY == 0 else PURPOSE
    return wire.serialize(
        wire.pb.CreditQuery(
            request_id=request_id,
            zone=ZONE,
            purpose=purpose,
            subject=wire.pb.SubjectRef(id_type=wire.pb.USCC, id=subject),
        )
    )


async def flood(root: pathlib.Path, target: str, out: pathlib.Path, ready: pathlib.Path) -> None:
    """Flood `target` as A until SIGTERM: A_CALLERS unary callers and A_STREAMS batch streams,
    fresh request ids; write calls and answers by status code to `out`."""
    fed = Federation(root, {})
    client, subjects = peer_tls(fed, FLOODER), enterprises(fed)
    channels = [
        grpc.aio.secure_channel(
            target,
            tls.channel_credentials(client.key_pem, client.cert_pem, client.server_cert_pem),
            options=[("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(A_CHANNELS)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    answers: collections.Counter[str] = collections.Counter()  # "unary OK", "batch ..."
    tag = f"a{os.getpid()}"

    def answered(key: str) -> None:
        answers[key] += 1
        if not ready.exists():  # the first answer: tell the bench the flood is on
            ready.write_text("flooding")

    def request(kind: str, number: int, n: int) -> bytes:
        return _flood_query(
            f"{tag}-{kind}{number}-{n}", subjects[(number * 7919 + n) % len(subjects)], n
        )

    async def unary(number: int) -> None:
        stub = channels[number % A_CHANNELS].unary_unary(
            UNARY_METHOD,
            request_serializer=_passthrough,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await stub(request("u", number, n), timeout=30)
            except grpc.aio.AioRpcError as exc:
                answered(f"unary {exc.code().name}")
            else:
                answered("unary OK")

    async def stream(number: int) -> None:
        method = channels[number % A_CHANNELS].stream_stream(
            BATCH_METHOD,
            request_serializer=_passthrough,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )

        async def queries() -> AsyncIterator[bytes]:
            n = 0
            while not stop.is_set():
                n += 1
                yield request("b", number, n)

        try:
            async for response in method(queries(), timeout=300):
                answered(
                    "batch "
                    + (
                        "OK"
                        if response.HasField("result")
                        else CODE_NAMES.get(response.error.code, "?")
                    )
                )
        except grpc.aio.AioRpcError as exc:
            answers[f"batch stream ended {exc.code().name}"] += 1

    cpu0, start = time.process_time(), time.perf_counter()
    tasks = [asyncio.ensure_future(unary(i)) for i in range(A_CALLERS)]
    tasks += [asyncio.ensure_future(stream(i)) for i in range(A_STREAMS)]
    await stop.wait()
    seconds = time.perf_counter() - start
    _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
    for task in late:
        task.cancel()
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": time.process_time() - cpu0,
                "answers": answers,
                "unfinished_tasks": len(late),
            }
        )
    )
    for ch in channels:
        await ch.close(grace=0)


@dataclasses.dataclass(frozen=True)
class FloodRun:
    seconds: float
    cpu_s: float
    answers: collections.Counter[str]
    started: dt.datetime
    ended: dt.datetime

    @property
    def calls(self) -> int:
        return sum(n for key, n in self.answers.items() if not key.startswith("batch stream"))

    def calls_of(self, kind: str) -> int:
        return sum(
            n
            for key, n in self.answers.items()
            if key.startswith(kind + " ") and not key.startswith("batch stream")
        )


# --- the baseline: a bare server that refuses every call ------------------------------------------


async def serve_refuser(home: pathlib.Path, ready_file: pathlib.Path) -> None:
    """A bare grpc.aio server with the node's TLS key, certificate and client anchors, refusing
    every QueryCredit with the node's own RESOURCE_EXHAUSTED status (ErrorInfo included), and
    every BatchQueryCredit item with a fixed response carrying it."""
    credentials = node_server_credentials(home)
    refusal = status.to_rpc_status(RateLimited("over its rate"))
    grpc_status = rpc_status.to_status(refusal)
    refused_item = wire.serialize(wire.spb.QueryCreditResponse(error=refusal))

    async def query_credit(request: bytes, context: Any) -> bytes:
        await context.abort_with_status(grpc_status)
        raise AssertionError("abort_with_status returns only by raising")

    async def batch_query_credit(
        requests: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield refused_item

    await serve_bare(credentials, query_credit, batch_query_credit, ready_file)


# --- setup ----------------------------------------------------------------------------------------


def setup_federation(root: pathlib.Path) -> Federation:
    """Huzhou with two peers in zone hjjw. A keeps the zone's rate (the example policy's); B's
    is lifted in Huzhou's configuration so that B measures latency, never its own limit."""
    fed = build(
        root,
        {HUZHOU: "湖州", FLOODER: "嘉兴", ASKER: "温州"},
        {ZONE: (HUZHOU, FLOODER, ASKER)},
        subjects=SUBJECTS,
    )
    with NodeHome(fed.home(HUZHOU)).config_file.open("a", encoding="utf-8") as f:
        f.write(f'\n[zones.{ZONE}.caller_rates]\n"{ASKER}" = 1000000000\n')
    return fed


def peer_tls(fed: Federation, peer: str) -> ClientTls:
    asker = NodeKeys.open(NodeHome(fed.home(peer)))
    server = NodeKeys.open(NodeHome(fed.home(HUZHOU)))
    return ClientTls(
        asker.tls_private_key_pem(), asker.tls_certificate_pem(), server.tls_certificate_pem()
    )


def node_policy(fed: Federation) -> policy.Policy:
    """Huzhou's policy as the node reads it from its node.toml."""
    home = NodeHome(fed.home(HUZHOU))
    return policy.policy_from_mapping(home.load_document(), str(home.config_file))


# --- the flood phases -----------------------------------------------------------------------------


async def asker_under_flood(
    fed: Federation, root: pathlib.Path, node: tuple[str, int], flooded: tuple[str, int], phase: str
) -> tuple[AskerRun, FloodRun]:
    """B's run against the node while A floods `flooded` (the node, or the refuser)."""
    out = root / f"flood-{phase}.json"
    ready = root / f"flood-{phase}.ready"
    started = dt.datetime.now(dt.UTC)
    with server_process(
        ["-m", "bench.flood_bench", "flood", str(fed.root), flooded[0], str(out)],
        ready,
        root / f"flood-{phase}.log",
    ):
        await asyncio.sleep(SETTLE_S)
        asker = await run_asker(
            peer_tls(fed, ASKER),
            node[0],
            enterprises(fed),
            phase,
            list(dict.fromkeys((node[1], flooded[1]))),
        )  # node first
    ended = dt.datetime.now(dt.UTC)
    if not out.exists():
        raise SystemExit(f"the flooder wrote no results; see {root / f'flood-{phase}.log'}")
    result = json.loads(out.read_text())
    return asker, FloodRun(
        result["seconds"], result["cpu_s"], collections.Counter(result["answers"]), started, ended
    )


@dataclasses.dataclass(frozen=True)
class FloodLog:
    """A's entries in the node's log."""

    in_measured: int  # recorded while B measured under the flood (A's bucket spent)
    in_flood: collections.Counter[str]  # over the whole flood and its summary: reason -> count
    summarised_calls: int  # calls the summary entries say were refused and not logged


def read_flood_log(
    fed: Federation, measured: AskerRun, flood_run: FloodRun, summary_by: dt.datetime
) -> FloodLog:
    home = NodeHome(fed.home(HUZHOU))
    in_measured, summarised = 0, 0
    in_flood: collections.Counter[str] = collections.Counter()
    with Store.open(home.db_url()) as store, store.connect() as conn:
        for data in conn.execute(sa.select(t.log_entries.c.data)).scalars():
            record = wire.record_from_bytes(data)
            if record.requester_node != FLOODER:
                continue
            if measured.started <= record.time <= measured.ended:
                in_measured += 1
            if flood_run.started <= record.time <= summary_by:
                found = SUMMARY_COUNT.match(record.reason)
                if found:
                    summarised += int(found.group(1))
                    in_flood["RATE_LIMITED summary"] += 1
                else:
                    in_flood[record.reason.partition(":")[0] or record.decision.name] += 1
    return FloodLog(in_measured, in_flood, summarised)


# --- the report -----------------------------------------------------------------------------------


def report(
    alone: AskerRun,
    flooded: tuple[AskerRun, FloodRun],
    baseline: tuple[AskerRun, FloodRun],
    flood_log: FloodLog,
    rules: policy.Policy,
    load: tuple[float, float],
) -> str:
    (b_flood, a_node), (b_base, a_base) = flooded, baseline
    rate = rules.rate_for(FLOODER, ZONE)
    window = rules.refusal_window_s
    # Per second, in the long run: the rate, and per window one logged refusal and one summary.
    bound_per_s = rate / 60 + 2 / window
    flood_s = (a_node.ended - a_node.started).total_seconds()
    # Over the whole flood: also the bucket's burst (a minute's calls) it started with.
    bound_flood = rate + flood_s * rate / 60 + 2 * math.ceil(flood_s / window)
    ratio = b_flood.percentile_ms(50) / alone.percentile_ms(50)
    base_ratio = b_base.percentile_ms(50) / alone.percentile_ms(50)

    def failures(run: AskerRun) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(run.failures.items())) or "0"

    def per_s(flood_run: FloodRun, kind: str) -> str:
        return f"{flood_run.calls_of(kind) / flood_run.seconds:,.0f}"

    def answered(flood_run: FloodRun) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(flood_run.answers.items()))

    rows = [
        (
            "B calls answered (failed)",
            f"{len(alone.latencies):,} ({failures(alone)})",
            f"{len(b_flood.latencies):,} ({failures(b_flood)})",
            f"{len(b_base.latencies):,} ({failures(b_base)})",
        ),
        (
            "B p50 ms",
            f"{alone.percentile_ms(50):.1f}",
            f"{b_flood.percentile_ms(50):.1f}",
            f"{b_base.percentile_ms(50):.1f}",
        ),
        (
            "B p99 ms",
            f"{alone.percentile_ms(99):.1f}",
            f"{b_flood.percentile_ms(99):.1f}",
            f"{b_base.percentile_ms(99):.1f}",
        ),
        (
            "B p50 / B p50 alone",
            "1.00",
            f"{ratio:.2f} (<= {TARGET_P50_RATIO:g}: "
            f"{'met' if ratio <= TARGET_P50_RATIO else 'MISSED'})",
            f"{base_ratio:.2f}",
        ),
        (
            "A calls/s (unary + batch items)",
            "",
            f"{a_node.calls / a_node.seconds:,.0f} ({per_s(a_node, 'unary')} + "
            f"{per_s(a_node, 'batch')})",
            f"{a_base.calls / a_base.seconds:,.0f} ({per_s(a_base, 'unary')} + "
            f"{per_s(a_base, 'batch')})",
        ),
        (
            "node CPU per s (while B measured)",
            f"{alone.server_cpu_s[0] / alone.seconds:.2f}",
            f"{b_flood.server_cpu_s[0] / b_flood.seconds:.2f}",
            f"{b_base.server_cpu_s[0] / b_base.seconds:.2f}",
        ),
        ("refuser CPU per s", "", "", f"{b_base.server_cpu_s[-1] / b_base.seconds:.2f}"),
        (
            "flooder CPU per s",
            "",
            f"{a_node.cpu_s / a_node.seconds:.2f}",
            f"{a_base.cpu_s / a_base.seconds:.2f}",
        ),
        (
            "A log entries/s (B measuring)",
            "",
            f"{flood_log.in_measured / b_flood.seconds:.1f} (bound {bound_per_s:.1f})",
            "",
        ),
    ]
    head = ("measure", "B alone", "B, A floods the node", "B, A floods a bare refuser")
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    logged = ", ".join(f"{k} {v:,}" for k, v in sorted(flood_log.in_flood.items()))
    refused_over_rate = sum(
        n for k, n in a_node.answers.items() if k.endswith("RESOURCE_EXHAUSTED")
    )
    first_refusals = flood_log.in_flood["RATE_LIMITED"]
    unaccounted = refused_over_rate - first_refusals - flood_log.summarised_calls
    lines = [
        f"setup: {os.cpu_count()} CPUs; node = `creditnode serve` ({HUZHOU}) with its answering"
        f" worker, on {serving_loop_name()} (server CPU is both processes');",
        f"  B ({ASKER}) = this process, {B_CALLERS} callers each asking every"
        f" {B_INTERVAL_S * 1000:g} ms, fresh request ids, rate lifted; {PHASE_S:g} s per phase;",
        f"  A ({FLOODER}) = its own process, {A_CALLERS} unary callers and {A_STREAMS} batch"
        f" streams over {A_CHANNELS} TLS connections, fresh request ids, 1 in {INVALID_EVERY}"
        f" for an unagreed purpose;",
        f"  A's rate {rate}/min, summary window {window:g} s; B measures from {SETTLE_S:g} s"
        f" into the flood (A's bucket spent);",
        "  bare refuser = grpc.aio server in its own process, same TLS, refusing every call"
        " RESOURCE_EXHAUSTED at once (A floods it while B asks the node).",
        f"  1-minute load average {load[0]:.2f} before, {load[1]:.2f} after.",
        "",
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
        *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows),
        "",
        f"A's answers from the node: {answered(a_node)}",
        f"A's answers from the refuser: {answered(a_base)}",
        f"A's log entries over its {flood_s:.1f} s flood and the summary after: "
        f"{sum(flood_log.in_flood.values()):,} ({logged}); bound {bound_flood:,.0f}"
        f" = {rate} (bucket) + {flood_s:.1f} s x {rate / 60:g}/s + 2 per started window",
        f"A's calls refused over its rate: {refused_over_rate:,} answered;"
        f" {first_refusals + flood_log.summarised_calls:,} accounted in the log"
        f" ({first_refusals} logged one by one + {flood_log.summarised_calls:,} in summaries)"
        + (f"; {unaccounted:,} in no entry" if unaccounted else ""),
    ]
    return "\n".join(lines)


async def _bench(fed: Federation, root: pathlib.Path) -> str:
    rules = node_policy(fed)
    subjects = enterprises(fed)
    load_before = os.getloadavg()[0]
    with server_process(
        ["-m", "node.cli", "serve", "--home", str(fed.home(HUZHOU))],
        root / "node.ready",
        root / "node.log",
    ) as node:
        alone = await run_asker(peer_tls(fed, ASKER), node[0], subjects, "alone", [node[1]])
        flooded = await asker_under_flood(fed, root, node, node, "node")
        with server_process(
            ["-m", "bench.flood_bench", "serve-refuser", str(fed.home(HUZHOU))],
            root / "refuser.ready",
            root / "refuser.log",
        ) as refuser:
            baseline = await asker_under_flood(fed, root, node, refuser, "refuser")
        # The window open when A stopped is summarised when it ends: wait for that entry.
        summary_by = flooded[1].ended + dt.timedelta(seconds=rules.refusal_window_s + 1.0)
        await asyncio.sleep(max(0.0, (summary_by - dt.datetime.now(dt.UTC)).total_seconds()))
    flood_log = read_flood_log(fed, flooded[0], flooded[1], summary_by)
    return report(alone, flooded, baseline, flood_log, rules, (load_before, os.getloadavg()[0]))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="flood-bench-") as tmp:
        root = pathlib.Path(tmp)
        started = time.perf_counter()
        fed = setup_federation(root / "federation")
        print(f"federation set up in {time.perf_counter() - started:.1f} s", flush=True)
        print(asyncio.run(_bench(fed, root)), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-refuser"]:
        # python -m bench.flood_bench serve-refuser HOME --ready-file FILE
        _, _, home, _, ready = sys.argv
        run_serving_loop(serve_refuser(pathlib.Path(home), pathlib.Path(ready)))
    elif sys.argv[1:2] == ["flood"]:
        # python -m bench.flood_bench flood FEDERATION TARGET OUT --ready-file FILE
        _, _, fed_root, target, out, _, ready = sys.argv
        run_serving_loop(
            flood(pathlib.Path(fed_root), target, pathlib.Path(out), pathlib.Path(ready))
        )
    else:
        main()
