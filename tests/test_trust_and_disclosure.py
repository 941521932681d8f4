"""Issue 9 §5 "Trust and disclosure" across real nodes on loopback (mutual TLS, SQLite homes
set up through the `creditnode` commands): rollback protection that survives a restart, a
list that expires while in force, and log entries disclosed by the zones a reader shares.

Three cities: Shanghai and Huzhou share `yrd`; Huzhou and Jiaxing share `hjjw` (Jiaxing is in
no other zone here) and Jiaxing witnesses Huzhou's log.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import logging
import pathlib
import sys
from collections.abc import AsyncIterator

import prometheus_client
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.federation import Federation, build, run_cli
from node import model, signing, trust, wire
from node.clock import ManualClock
from node.errors import RolledBackTrustList
from node.home import NodeHome
from node.runtime import NodeRuntime
from node.services import exchange_log as log_svc
from node.trust_files import trust_list_path

HUZHOU, JIAXING, SHANGHAI = "cn-330500", "cn-330400", "cn-310000"
CITIES = {HUZHOU: "湖州", JIAXING: "嘉兴", SHANGHAI: "上海"}
ZONES = {"yrd": (SHANGHAI, HUZHOU), "hjjw": (HUZHOU, JIAXING)}


@pytest.fixture
def fed(tmp_path: pathlib.Path) -> Federation:
    return build(tmp_path, CITIES, ZONES, subjects=20, witnesses={HUZHOU: [JIAXING]})


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, NodeRuntime]]:
    """The runtimes a test starts, stopped at the end whatever happened."""
    started: dict[str, NodeRuntime] = {}
    yield started
    for runtime in started.values():
        await runtime.stop()


async def start(
    nodes: dict[str, NodeRuntime], fed: Federation, node_id: str, clock: ManualClock | None = None
) -> NodeRuntime:
    home = NodeHome(fed.home(node_id))
    runtime = NodeRuntime(home) if clock is None else NodeRuntime(home, clock=clock)
    await runtime.start()
    nodes[node_id] = runtime
    return runtime


def company(fed: Federation, index: int = 0) -> model.SubjectRef:
    with (fed.root / f"{HUZHOU}-export.csv").open(encoding="utf-8") as f:
        ids = [row["TYSHXYDM"] for row in csv.DictReader(f) if row["ZTLX"] == "企业"]
    return model.SubjectRef(model.SubjectIdType.USCC, ids[index])


def list_in(path: pathlib.Path) -> trust.TrustList:
    return wire.trust_list_from_bytes(signing.Envelope.from_json(path.read_bytes()).payload)


async def creditnode(*args: object) -> tuple[int, str]:
    """The real CLI in a child process, while this event loop keeps serving the nodes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


# --- rollback protection ---------------------------------------------------------------------


async def test_a_restart_does_not_take_back_a_list_that_a_newer_version_replaced(
    fed: Federation, nodes: dict[str, NodeRuntime]
) -> None:
    """issue 9 §5: rollback protection survives restarts. v2 of hjjw removes Jiaxing; the v1
    file dropped into zones/ is refused while Huzhou runs, and still refused after a restart
    (before: loaded, granting Jiaxing hjjw again), and by `zone install` too."""
    v1 = fed.coordinator_dir() / "hjjw.current.trustlist.json"
    run_cli(
        "zone",
        "remove-member",
        "--zone",
        "hjjw",
        "--node-id",
        JIAXING,
        "--dir",
        fed.coordinator_dir(),
    )
    fed.install("hjjw", fed.sign_zone("hjjw", "v2"), [HUZHOU])
    huzhou = await start(nodes, fed, HUZHOU)
    jiaxing = await start(nodes, fed, JIAXING)
    assert huzhou.trusted_zones(JIAXING) == frozenset()

    trust_list_path(fed.home(HUZHOU), "hjjw").write_bytes(v1.read_bytes())
    assert huzhou.trust_files.refresh() == []
    assert huzhou.trust.trust_list("hjjw").version == 2  # type: ignore[union-attr]

    await nodes.pop(HUZHOU).stop()
    huzhou = await start(nodes, fed, HUZHOU)
    outcome = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert outcome.decision is not model.Decision.GRANTED, outcome.reason
    assert huzhou.trusted_zones(JIAXING) == frozenset()
    assert huzhou.trust.trust_list("hjjw") is None
    assert isinstance(huzhou.trust_files.last_errors["hjjw"], RolledBackTrustList)

    with pytest.raises(RolledBackTrustList, match="version 1, but version 2 was already accepted"):
        run_cli("zone", "install", "--zone", "hjjw", v1, "--home", fed.home(HUZHOU))


# --- expiry ----------------------------------------------------------------------------------


def _gauge(name: str, zone: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, {"zone": zone})


async def test_a_list_that_expires_while_in_force_stops_granting_at_its_expiry(
    fed: Federation, nodes: dict[str, NodeRuntime], caplog: pytest.LogCaptureFixture
) -> None:
    """issue 9 §5: a list that expires while in force stops granting at its expiry (before:
    it still granted 20 s later), the node logs it as an error, its metric drops to 0, and
    the interchange's gRPC health turns NOT_SERVING once no zone is left. An expired list
    still authenticates: Jiaxing keeps reading checkpoints."""
    # yrd is re-signed for longer, so hjjw expires first.
    yrd = fed.coordinator_dir() / "yrd.v2.trustlist.json"
    run_cli(
        "zone",
        "sign",
        "--zone",
        "yrd",
        "--valid-days",
        "60",
        "--out",
        yrd,
        "--dir",
        fed.coordinator_dir(),
    )
    fed.install("yrd", yrd, [HUZHOU, SHANGHAI])
    hjjw_expiry = list_in(trust_list_path(fed.home(HUZHOU), "hjjw")).expires_at
    yrd_expiry = list_in(yrd).expires_at
    clock = ManualClock(hjjw_expiry - dt.timedelta(seconds=60))
    huzhou = await start(nodes, fed, HUZHOU, clock)
    jiaxing = await start(nodes, fed, JIAXING)

    clock.set(hjjw_expiry - dt.timedelta(seconds=1))
    before = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert before.decision is model.Decision.GRANTED, before.reason

    clock.set(hjjw_expiry)
    after = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 1))
    assert after.decision is model.Decision.REFUSED
    assert "NOT_ZONE_MEMBER" in after.reason

    with caplog.at_level(logging.ERROR, logger="node.trust_files"):
        await huzhou.refresh_trust()
    assert "zone hjjw: trust list version 1 expired at" in caplog.text
    assert _gauge("creditnode_trust_list_in_force", "hjjw") == 0
    assert _gauge("creditnode_trust_list_in_force", "yrd") == 1
    assert _gauge("creditnode_trust_list_expires_timestamp_seconds", "yrd") == (
        yrd_expiry.timestamp()
    )
    client = jiaxing.peer_client(HUZHOU, "hjjw")
    try:
        health = health_pb2_grpc.HealthStub(client.channel)

        async def status(service: str) -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            return int(reply.status)

        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert await status("creditx.v1.CreditInterchange") == serving  # yrd still grants
        clock.set(yrd_expiry)
        await huzhou.refresh_trust()
        assert huzhou.trust.zones_in_force(clock.now()) == []
        assert await status("creditx.v1.CreditInterchange") == not_serving
        assert await status("creditx.v1.ExchangeLog") == serving
        assert await status("") == serving
        # Authenticated by the expired list: checkpoints are still served to Jiaxing.
        checkpoint = await client.channel.unary_unary(
            f"/{log_svc.SERVICE}/GetCheckpoint",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.Checkpoint.FromString,
        )(wire.spb.GetCheckpointRequest(), timeout=10)
        assert checkpoint.note.startswith(f"creditx/{HUZHOU}/exchange-log\n")
    finally:
        await client.close()


# --- disclosure of log entries ---------------------------------------------------------------


async def test_a_witness_reads_only_the_entries_of_zones_it_shares_and_an_auditor_all(
    fed: Federation, nodes: dict[str, NodeRuntime]
) -> None:
    """issue 9 §5: GetEntries serves a witness only the entries of zones it shares with this
    node (before: Jiaxing, in hjjw only, read Shanghai↔Huzhou yrd entries). An auditor that
    node.toml's [audit] readers gives every entry verifies the whole log with `log verify
    --peer`; the witness is told clearly why it cannot."""
    with NodeHome(fed.home(HUZHOU)).config_file.open("a", encoding="utf-8") as f:
        f.write(f'\n[audit]\nreaders = {{ "{SHANGHAI}" = ["*"] }}\n')
    for node_id in (HUZHOU, JIAXING, SHANGHAI):
        await start(nodes, fed, node_id)
    asked = [
        await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 0)),
        await nodes[SHANGHAI].ask(HUZHOU, "yrd", "xinyi-dai", company(fed, 1)),
        await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 2)),
    ]
    assert [a.decision for a in asked] == [model.Decision.GRANTED] * 3

    client = nodes[JIAXING].peer_client(HUZHOU, "hjjw")
    try:
        stream = client.channel.unary_stream(
            f"/{log_svc.SERVICE}/GetEntries",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.LogEntry.FromString,
        )
        entries = [e async for e in stream(wire.spb.GetEntriesRequest(start=0, end=3), timeout=10)]
    finally:
        await client.close()
    assert [e.index for e in entries] == [0, 1, 2]
    assert [wire.record_from_bytes(e.data).zone for e in entries if e.data] == ["hjjw", "hjjw"]
    assert entries[1].data == b""  # Shanghai's yrd exchange, withheld

    code, out = await creditnode("log", "verify", "--home", fed.home(JIAXING), "--peer", HUZHOU)
    assert code == 1, out
    assert f"error: {HUZHOU} withheld 1 of its 3 entries from {JIAXING}" in out
    assert f'[audit] readers = {{ "{JIAXING}" = ["*"] }}' in out
    assert "Traceback" not in out
    code, out = await creditnode("log", "verify", "--home", fed.home(SHANGHAI), "--peer", HUZHOU)
    assert code == 0, out
    assert f"OK: {HUZHOU}: 3 entries match its checkpoint" in out
