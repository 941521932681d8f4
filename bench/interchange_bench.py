"""CreditInterchange bench (issue #3): QueryCredit QPS with p50/p99 under 32 concurrent callers,
and BatchQueryCredit signed results/s, against a real node (`creditnode serve` in its own process:
mutual TLS, DSSE signing, group-committed SQLite log with WAL and synchronous=FULL, answers only
after commit), as ratios to a bare grpc.aio server with the same TLS credentials answering a fixed
pre-serialized response, measured in the same run by the same client code in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import grpc
import sqlalchemy as sa

from devtools.federation import Federation, build
from node import signing, tls, wire
from node.home import NodeHome
from node.keys import NodeKeys
from node.process import run_serving_loop, serving_loop_name
from node.store import Store
from node.store import log_tables as t
from node.trust_files import load_home_trust

HUZHOU, JIAXING = "cn-330500", "cn-330400"  # the node under test and the asking peer
ZONE, PURPOSE = "hjjw", "xinyi-dai"
SERVICE = "creditx.v1.CreditInterchange"
UNARY_METHOD = f"/{SERVICE}/QueryCredit"
BATCH_METHOD = f"/{SERVICE}/BatchQueryCredit"
SUBJECTS = 2_000  # synthetic subjects in Huzhou's store; queries ask about its enterprises
CALLERS = 32
CHANNELS = 4  # callers share these mutual-TLS connections round-robin (8 callers each)
WARMUP_S = 1.0
UNARY_S = 8.0
STREAMS = 4  # one BatchQueryCredit stream per channel, concurrently
STREAM_QUERIES = 5_000
TARGET_RATIO = 0.5
TARGET_BATCH_PER_S = 5_000.0
REPO = pathlib.Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- load generation (the same code drives the node and the baseline) -----------------------------


@dataclasses.dataclass(frozen=True)
class ClientTls:
    key_pem: bytes
    cert_pem: bytes
    server_cert_pem: bytes


@dataclasses.dataclass(frozen=True)
class UnaryRun:
    calls: int
    errors: int
    seconds: float
    latencies: Sequence[float]
    server_cpu_s: float
    client_cpu_s: float

    @property
    def qps(self) -> float:
        return self.calls / self.seconds

    def percentile_ms(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000.0


@dataclasses.dataclass(frozen=True)
class BatchRun:
    results: int  # responses that carry a result envelope
    errors: int
    seconds: float
    server_cpu_s: float
    client_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.results / self.seconds


def _passthrough(data: bytes) -> bytes:
    return data


def _query(request_id: str, subject: str) -> bytes:
    return wire.serialize(
        wire.pb.CreditQuery(
            request_id=request_id,
            zone=ZONE,
            purpose=PURPOSE,
            subject=wire.pb.SubjectRef(id_type=wire.pb.USCC, id=subject),
        )
    )


def _open_channels(client: ClientTls, target: str) -> list[grpc.aio.Channel]:
    credentials = tls.channel_credentials(client.key_pem, client.cert_pem, client.server_cert_pem)
    # A local subchannel pool per channel: each is its own TLS connection, not one shared one.
    return [
        grpc.aio.secure_channel(
            target, credentials, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(CHANNELS)
    ]


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: field 4 (ppid) is [1], 14 and 15 [11], [12]."""
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a server process and its children (the node's
    answering worker), so the node's figure is all the CPU it used."""
    total = 0.0
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except OSError:  # gone meanwhile
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


async def _measured(
    pid: int, work: Callable[[], Awaitable[Any]]
) -> tuple[Any, float, float, float]:
    """(work's value, wall seconds, server CPU seconds, client CPU seconds)."""
    server0, client0, start = _cpu_seconds(pid), time.process_time(), time.perf_counter()
    value = await work()
    seconds = time.perf_counter() - start
    return value, seconds, _cpu_seconds(pid) - server0, time.process_time() - client0


async def run_unary(
    channels: Sequence[grpc.aio.Channel],
    subjects: Sequence[str],
    phase: str,
    seconds: float,
    pid: int,
) -> UnaryRun:
    """CALLERS tasks, each calling QueryCredit back to back with fresh request ids."""
    stubs = [
        ch.unary_unary(
            UNARY_METHOD,
            request_serializer=_passthrough,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )
        for ch in channels
    ]
    latencies: list[float] = []
    errors = 0

    async def caller(number: int) -> None:
        nonlocal errors
        stub = stubs[number % len(stubs)]
        n = 0
        while time.perf_counter() < deadline:
            request = _query(f"{phase}-{number}-{n}", subjects[(number * 7919 + n) % len(subjects)])
            n += 1
            start = time.perf_counter()
            try:
                response = await stub(request, timeout=30)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            if not response.HasField("result"):
                errors += 1

    async def all_callers() -> None:
        await asyncio.gather(*(caller(i) for i in range(CALLERS)))

    deadline = time.perf_counter() + seconds
    _, wall, server_cpu, client_cpu = await _measured(pid, all_callers)
    return UnaryRun(len(latencies), errors, wall, latencies, server_cpu, client_cpu)


async def run_batch(
    channels: Sequence[grpc.aio.Channel], subjects: Sequence[str], phase: str, pid: int
) -> BatchRun:
    """STREAMS concurrent BatchQueryCredit streams of STREAM_QUERIES queries each."""
    requests = [
        [
            _query(f"{phase}-{s}-{n}", subjects[(s * 7919 + n) % len(subjects)])
            for n in range(STREAM_QUERIES)
        ]
        for s in range(STREAMS)
    ]
    counts = {"results": 0, "errors": 0}

    async def stream(number: int) -> None:
        method = channels[number % len(channels)].stream_stream(
            BATCH_METHOD,
            request_serializer=_passthrough,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )

        async def queries() -> AsyncIterator[bytes]:
            for request in requests[number]:
                yield request

        async for response in method(queries(), timeout=120):
            counts["results" if response.HasField("result") else "errors"] += 1

    async def all_streams() -> None:
        await asyncio.gather(*(stream(i) for i in range(STREAMS)))

    _, wall, server_cpu, client_cpu = await _measured(pid, all_streams)
    # Refused items and items the stream never answered both count as errors.
    errors = STREAMS * STREAM_QUERIES - counts["results"]
    return BatchRun(counts["results"], errors, wall, server_cpu, client_cpu)


async def run_all(
    client: ClientTls, target: str, subjects: Sequence[str], pid: int, name: str
) -> tuple[UnaryRun, BatchRun, bytes]:
    """Warm up, then unary and batch load; also returns one warm-up response as received."""
    channels = _open_channels(client, target)
    try:
        sample = await channels[0].unary_unary(UNARY_METHOD, request_serializer=_passthrough)(
            _query(f"{name}-sample", subjects[0]), timeout=30
        )
        await run_unary(channels, subjects, f"{name}-warm", WARMUP_S, pid)
        unary = await run_unary(channels, subjects, f"{name}-unary", UNARY_S, pid)
        batch = await run_batch(channels, subjects, f"{name}-batch", pid)
    finally:
        for ch in channels:
            await ch.close()
    return unary, batch, bytes(sample)


# --- the baseline server: same TLS, fixed bytes ---------------------------------------------------


async def serve_baseline(
    home: pathlib.Path, response_file: pathlib.Path, ready_file: pathlib.Path
) -> None:
    """A bare grpc.aio server with the node's TLS key, certificate and client-certificate anchors,
    answering every QueryCredit, and every BatchQueryCredit item, with the same fixed bytes."""
    credentials = node_server_credentials(home)
    response = response_file.read_bytes()  # serialized once

    async def query_credit(request: bytes, context: Any) -> bytes:
        return response

    async def batch_query_credit(
        requests: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield response

    await serve_bare(credentials, query_credit, batch_query_credit, ready_file)


def node_server_credentials(home: pathlib.Path) -> grpc.ServerCredentials:
    """The node's own TLS key and certificate, with its trust lists' client anchors."""
    node_home = NodeHome(home)
    keys = NodeKeys.open(node_home)
    return tls.server_credentials(
        keys.tls_private_key_pem(),
        keys.tls_certificate_pem(),
        load_home_trust(node_home).store.anchors_pem,
    )


async def serve_bare(
    credentials: grpc.ServerCredentials,
    query_credit: Callable[[bytes, Any], Awaitable[bytes]],
    batch_query_credit: Callable[[AsyncIterator[bytes], Any], AsyncIterator[bytes]],
    ready_file: pathlib.Path,
) -> None:
    """A bare grpc.aio server with the two query methods as given, on 127.0.0.1, until
    SIGINT or SIGTERM; its address goes to `ready_file` once it serves."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "QueryCredit": grpc.unary_unary_rpc_method_handler(
                        query_credit,
                        request_deserializer=_passthrough,
                        response_serializer=_passthrough,
                    ),
                    "BatchQueryCredit": grpc.stream_stream_rpc_method_handler(
                        batch_query_credit,
                        request_deserializer=_passthrough,
                        response_serializer=_passthrough,
                    ),
                },
            ),
        )
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ready_file.write_text(f"127.0.0.1:{port}")
    await stop.wait()
    await server.stop(1)


# --- processes and setup --------------------------------------------------------------------------


@contextlib.contextmanager
def server_process(
    args: Sequence[str], ready: pathlib.Path, log: pathlib.Path
) -> Iterator[tuple[str, int]]:
    """Start a server process, wait for its ready file; yield (target, pid); stop it after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args, "--ready-file", str(ready)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not (ready.exists() and ready.read_text()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{' '.join(args)} did not start; see {log}")
                time.sleep(0.05)
            yield ready.read_text(), proc.pid
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def setup_federation(root: pathlib.Path) -> Federation:
    """Huzhou and Jiaxing in zone hjjw, set up through the creditnode CLI like the demo."""
    fed = build(
        root, {HUZHOU: "湖州", JIAXING: "嘉兴"}, {ZONE: (HUZHOU, JIAXING)}, subjects=SUBJECTS
    )
    # The per-caller rate limit (600/min in the example policy) would cap the load, not measure
    # the node: lift it for the asking peer in Huzhou's configuration.
    with NodeHome(fed.home(HUZHOU)).config_file.open("a", encoding="utf-8") as f:
        f.write(f'\n[zones.{ZONE}.caller_rates]\n"{JIAXING}" = 1000000000\n')
    return fed


def enterprises(fed: Federation) -> list[str]:
    with (fed.root / f"{HUZHOU}-export.csv").open(encoding="utf-8") as f:
        return [r["TYSHXYDM"] for r in csv.DictReader(f) if r["ZTLX"] == "企业"]


def client_tls(fed: Federation) -> ClientTls:
    asker = NodeKeys.open(NodeHome(fed.home(JIAXING)))
    server = NodeKeys.open(NodeHome(fed.home(HUZHOU)))
    return ClientTls(
        asker.tls_private_key_pem(), asker.tls_certificate_pem(), server.tls_certificate_pem()
    )


def check_sample(fed: Federation, sample: bytes) -> None:
    """The node's answer is a real one: signed by Huzhou's key, bound to the asker, with receipt."""
    response = wire.parse_response(sample)
    keys = NodeKeys.open(NodeHome(fed.home(HUZHOU))).verification_keys()
    verified = signing.verify_envelope(
        wire.envelope_from_pb(response.result),
        payload_type=signing.PAYLOAD_CREDIT_RESULT,
        keys=keys,
    )
    result = wire.result_from_bytes(verified.payload)
    if (result.audience_node, result.zone) != (JIAXING, ZONE) or not response.receipt.checkpoint:
        raise SystemExit("the node's sample answer is not bound to the asker or has no receipt")


def logged_entries(fed: Federation) -> int:
    home = NodeHome(fed.home(HUZHOU))
    with Store.open(home.db_url()) as store, store.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.log_entries)).scalar_one())


# --- the report -----------------------------------------------------------------------------------


def report(
    node: tuple[UnaryRun, BatchRun],
    base: tuple[UnaryRun, BatchRun],
    logged: int,
    sample_bytes: int,
    load: tuple[float, float],
    loop_name: str,
) -> str:
    (nu, nb), (bu, bb) = node, base
    ratio = nu.qps / bu.qps
    rows = [
        (
            "QueryCredit calls/s",
            f"{nu.qps:,.0f}",
            f"{bu.qps:,.0f}",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO} ratio: {'met' if ratio >= TARGET_RATIO else 'MISSED'}",
        ),
        (
            "QueryCredit p50 ms",
            f"{nu.percentile_ms(50):.1f}",
            f"{bu.percentile_ms(50):.1f}",
            f"{nu.percentile_ms(50) / bu.percentile_ms(50):.1f}x",
            "",
        ),
        (
            "QueryCredit p99 ms",
            f"{nu.percentile_ms(99):.1f}",
            f"{bu.percentile_ms(99):.1f}",
            f"{nu.percentile_ms(99) / bu.percentile_ms(99):.1f}x",
            "",
        ),
        (
            "QueryCredit calls (errors)",
            f"{nu.calls:,} ({nu.errors})",
            f"{bu.calls:,} ({bu.errors})",
            "",
            "",
        ),
        (
            "  server / client CPU per s",
            f"{nu.server_cpu_s / nu.seconds:.2f} / {nu.client_cpu_s / nu.seconds:.2f}",
            f"{bu.server_cpu_s / bu.seconds:.2f} / {bu.client_cpu_s / bu.seconds:.2f}",
            "",
            "",
        ),
        (
            "BatchQueryCredit results/s",
            f"{nb.per_s:,.0f}",
            f"{bb.per_s:,.0f}",
            f"{nb.per_s / bb.per_s:.2f}",
            f">= {TARGET_BATCH_PER_S:,.0f}/s: "
            f"{'met' if nb.per_s >= TARGET_BATCH_PER_S else 'MISSED'}",
        ),
        (
            "BatchQueryCredit results (errors)",
            f"{nb.results:,} ({nb.errors})",
            f"{bb.results:,} ({bb.errors})",
            "",
            "",
        ),
        (
            "  server / client CPU per s",
            f"{nb.server_cpu_s / nb.seconds:.2f} / {nb.client_cpu_s / nb.seconds:.2f}",
            f"{bb.server_cpu_s / bb.seconds:.2f} / {bb.client_cpu_s / bb.seconds:.2f}",
            "",
            "",
        ),
    ]
    head = ("measure", "node", "baseline", "node/base", "target")
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = [
        f"setup: {os.cpu_count()} CPUs; node = `creditnode serve` ({HUZHOU}) in its own process"
        " with its answering worker, SQLite WAL synchronous=FULL, group commit (server CPU is"
        " both processes');",
        "  baseline = bare grpc.aio server in its own process, same TLS key/cert/client anchors,"
        f" fixed {sample_bytes}-byte response (a real node answer, serialized once);",
        f"  both servers on the event loop `creditnode serve` uses ({loop_name});",
        f"  client = this process, {JIAXING}'s certificate (mutual TLS), {CALLERS} callers over"
        f" {CHANNELS} shared channels (separate TLS connections), unique request ids,",
        f"  existing enterprise subjects; unary {UNARY_S:g} s after {WARMUP_S:g} s warm-up;"
        f" batch {STREAMS} streams x {STREAM_QUERIES:,} queries, one per channel.",
        # The machine may be shared: other load skews both sides, so it is shown.
        f"  1-minute load average {load[0]:.2f} before, {load[1]:.2f} after.",
        "",
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
        *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows),
        "",
        f"node log entries after the run: {logged:,} (every answer above was logged first)",
    ]
    return "\n".join(lines)


async def _bench(fed: Federation, root: pathlib.Path) -> str:
    client, subjects = client_tls(fed), enterprises(fed)
    load_before = os.getloadavg()[0]
    with server_process(
        ["-m", "node.cli", "serve", "--home", str(fed.home(HUZHOU))],
        root / "node.ready",
        root / "node.log",
    ) as (target, pid):
        node_unary, node_batch, sample = await run_all(client, target, subjects, pid, "node")
    check_sample(fed, sample)
    response_file = root / "response.bin"
    response_file.write_bytes(sample)
    with server_process(
        [
            "-m",
            "bench.interchange_bench",
            "serve-baseline",
            str(fed.home(HUZHOU)),
            str(response_file),
        ],
        root / "baseline.ready",
        root / "baseline.log",
    ) as (target, pid):
        base_unary, base_batch, _ = await run_all(client, target, subjects, pid, "base")
    return report(
        (node_unary, node_batch),
        (base_unary, base_batch),
        logged_entries(fed),
        len(sample),
        (load_before, os.getloadavg()[0]),
        serving_loop_name(),
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="interchange-bench-") as tmp:
        root = pathlib.Path(tmp)
        started = time.perf_counter()
        fed = setup_federation(root / "federation")
        print(f"federation set up in {time.perf_counter() - started:.1f} s", flush=True)
        print(asyncio.run(_bench(fed, root)), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-baseline"]:
        # python -m bench.interchange_bench serve-baseline HOME RESPONSE --ready-file FILE
        _, _, home, response, _, ready = sys.argv
        # The same event loop as `creditnode serve`'s: the ratio measures our work, not the loop.
        run_serving_loop(
            serve_baseline(pathlib.Path(home), pathlib.Path(response), pathlib.Path(ready))
        )
    else:
        main()
