"""Issue 14 §5: a peer that does not accept our certificate (its trust list is older than ours,
or we were removed) is named as such, at once, with a reason of its own; the refusing node's
log names the certificate when it stops accepting it. Real nodes, real mutual TLS."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from devtools.federation import Federation, build, run_cli
from node import model, tls, wire
from node.errors import PeerRefusesCertificate
from node.home import NodeHome
from node.runtime import NodeRuntime
from node.server import GrpcServer
from node.store import log_tables as t
from node.tls_probe import Verdict, probe_client_certificate
from tests.federation_helpers import HANGZHOU, HUZHOU, JIAXING, Running, company, started
from tests.pki import NodeTls, make_node_tls

REFUSAL = "CERTIFICATE_NOT_ACCEPTED"


@pytest.fixture
async def fed3(tmp_path: pathlib.Path) -> AsyncIterator[Running]:
    """Huzhou and Jiaxing in hjjw; Hangzhou set up, but on no list yet."""
    fed = build(
        tmp_path,
        {HUZHOU: "湖州", JIAXING: "嘉兴", HANGZHOU: "杭州"},
        {"hjjw": (HUZHOU, JIAXING)},
        subjects=10,
    )
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in fed.ports}
    async with started(nodes):
        yield fed, nodes


async def _timed_ask(asker: NodeRuntime, fed: Federation, index: int) -> tuple[float, str, str]:
    start = time.monotonic()
    outcome = await asker.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, index))
    return time.monotonic() - start, outcome.decision.name, outcome.reason


async def test_a_peer_with_an_older_list_is_named_and_not_retried(fed3: Running) -> None:
    """Hangzhou joins hjjw at version 2 and installs it; Huzhou still holds version 1."""
    fed, nodes = fed3
    huzhou, hangzhou = nodes[HUZHOU], nodes[HANGZHOU]
    coord = fed.coordinator_dir()
    run_cli(
        "zone",
        "add-member",
        *("--zone", "hjjw", "--identity", fed.root / f"{HANGZHOU}.identity.json"),
        *("--endpoint", fed.endpoint(HANGZHOU), "--dir", coord),
    )
    v2 = fed.sign_zone("hjjw", "v2")
    pin = coord / "hjjw.coordinator.pub.pem"
    run_cli("zone", "pin", "--zone", "hjjw", "--coordinator-key", pin, "--home", fed.home(HANGZHOU))
    fed.install("hjjw", v2, [HANGZHOU])
    await hangzhou.stop()  # a new pin is read at start
    nodes[HANGZHOU] = hangzhou = NodeRuntime(NodeHome(fed.home(HANGZHOU)))
    await hangzhou.start()

    elapsed, decision, reason = await _timed_ask(hangzhou, fed, 0)
    assert decision == "FAILED"
    assert reason.startswith(
        f"{REFUSAL}: {HUZHOU} does not accept this node's certificate "
        "(is its trust list for hjjw current?)"
    ), reason
    ours = tls.cert_sha256(hangzhou.tls_cert_pem)
    assert f"CN={HANGZHOU} SHA-256 {ours}" in reason  # for Huzhou's operator to look up
    assert "Socket closed" not in reason and "after 4 attempts" not in reason
    # No retries: a retry waits at least 0.1 s, and the four attempts of before 0.7 s or more.
    assert elapsed < 1.0, elapsed
    # The ASKED entry records the refusal under its own reason.
    [record] = [r for r in _asked(hangzhou) if r.responder_node == HUZHOU]
    assert record.decision is model.Decision.FAILED and record.reason.startswith(REFUSAL)

    # Once Huzhou holds version 2, the same node is served: nothing else changed.
    fed.install("hjjw", v2, [HUZHOU])
    await huzhou.refresh_trust()
    _, decision, reason = await _timed_ask(hangzhou, fed, 1)
    assert decision == "GRANTED", reason


async def test_a_removed_member_is_told_and_the_refuser_logs_its_certificate(
    fed3: Running, caplog: pytest.LogCaptureFixture
) -> None:
    fed, nodes = fed3
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    granted = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 0))
    assert granted.decision is model.Decision.GRANTED, granted.reason

    coord = fed.coordinator_dir()
    run_cli("zone", "remove-member", "--zone", "hjjw", "--node-id", JIAXING, "--dir", coord)
    fed.install("hjjw", fed.sign_zone("hjjw", "v2"), [HUZHOU])
    with caplog.at_level(logging.WARNING, logger="node.trust_files"):
        await huzhou.refresh_trust()
    fingerprint = tls.cert_sha256(jiaxing.tls_cert_pem)
    assert (
        f"TLS: the certificate of {JIAXING} (CN={JIAXING}, SHA-256 {fingerprint}) is on no "
        "trust list held here any more (it was on hjjw's); its handshakes are refused"
    ) in caplog.text

    _, decision, reason = await _timed_ask(jiaxing, fed, 1)
    assert decision == "FAILED"
    assert f"{REFUSAL}: {HUZHOU} does not accept this node's certificate" in reason
    assert fingerprint in reason
    # Reading Huzhou's log (`log verify --peer`) says the same, not "Socket closed".
    with pytest.raises(PeerRefusesCertificate, match="is its trust list for hjjw current"):
        await jiaxing.fetch_peer_log(HUZHOU)


async def test_a_peer_that_is_down_is_still_retried_as_unavailable(fed3: Running) -> None:
    """The probe finds nobody to ask: the failure stays PEER_UNAVAILABLE, after the retries."""
    fed, nodes = fed3
    server = nodes[HUZHOU].server
    assert server is not None
    await server.stop(0)  # Huzhou's process goes on; nobody listens at its endpoint
    _, decision, reason = await _timed_ask(nodes[JIAXING], fed, 0)
    assert decision == "FAILED"
    assert reason.startswith("PEER_UNAVAILABLE") and "after 4 attempts" in reason


# --- the probe on its own, against a real gRPC server with mutual TLS ----------------------


async def test_probe_tells_accepted_refused_and_undecided_apart() -> None:
    server_tls, known, unknown, impostor = (
        make_node_tls(n) for n in (HUZHOU, JIAXING, HANGZHOU, HUZHOU)
    )
    server = GrpcServer(
        {},
        tls.server_credentials(server_tls.key_pem, server_tls.cert_pem, lambda: known.cert_pem),
    )
    await server.start()
    endpoint = server.target
    try:

        async def probe(client: NodeTls, peer_cert: bytes) -> Verdict:
            return await probe_client_certificate(
                endpoint, client.key_pem, client.cert_pem, peer_cert
            )

        assert await probe(known, server_tls.cert_pem) is Verdict.ACCEPTED
        assert await probe(unknown, server_tls.cert_pem) is Verdict.REFUSED
        # A server that is not the one pinned: nothing is concluded about our certificate.
        assert await probe(unknown, impostor.cert_pem) is Verdict.UNDECIDED
        # And grpc itself reports the refusal as the bare transport failure the probe explains.
        creds = tls.channel_credentials(unknown.key_pem, unknown.cert_pem, server_tls.cert_pem)
        async with grpc.aio.secure_channel(endpoint, creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)
    assert (
        await asyncio.wait_for(
            probe_client_certificate(endpoint, known.key_pem, known.cert_pem, server_tls.cert_pem),
            10,
        )
        is Verdict.UNDECIDED
    )  # nobody listens any more


def _asked(runtime: NodeRuntime) -> list[model.ExchangeRecord]:
    with runtime.store.connect() as conn:
        rows = conn.execute(t.log_entries.select().order_by(t.log_entries.c.idx)).all()
    records = [wire.record_from_bytes(row.data) for row in rows]
    return [r for r in records if r.direction is model.Direction.ASKED]
