"""Five real nodes on loopback, set up the way operators and zone coordinators do it, asking
each other under the zones of DESIGN.md §1: grants, every kind of refusal, ASKED entries,
witnessing, a removed member, a refused expired list and a rotated key."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import pathlib
import sys
from collections.abc import AsyncIterator

import grpc
import prometheus_client
import pytest

from devtools.federation import build, run_cli
from node import model, signing, wire
from node.cli.zone import _load_coordinator
from node.errors import PeerUnavailable, RolledBackTrustList
from node.home import NodeHome
from node.log import notes
from node.runtime import NodeRuntime
from node.services.greenloan import SERVICE as GREEN_LOAN_SYNC
from node.store import log_tables as t
from node.trust import sign_trust_list
from tests.federation_helpers import (
    HANGZHOU,
    HUZHOU,
    JIAXING,
    NINGBO,
    SHANGHAI,
    Running,
    company,
    person,
    started,
)


@pytest.fixture
async def federation(tmp_path: pathlib.Path) -> AsyncIterator[Running]:
    fed = build(tmp_path, subjects=60, witnesses={HUZHOU: [JIAXING]})
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in fed.ports}
    async with started(nodes):
        yield fed, nodes


async def test_authorisation_matrix_across_real_nodes(
    federation: Running,
) -> None:
    fed, nodes = federation
    unknown = model.SubjectRef(model.SubjectIdType.USCC, "91350100M000100Y43")
    cases = [
        (JIAXING, "hjjw", "xinyi-dai", company(fed), model.Decision.GRANTED, ""),
        (HANGZHOU, "yrd", "green-loan", company(fed), model.Decision.GRANTED, ""),
        (NINGBO, "hyzt", "xinyi-dai", company(fed), model.Decision.GRANTED, ""),
        (HANGZHOU, "hz-metro", "xinyi-xing", person(fed), model.Decision.GRANTED, ""),
        # Shanghai is not in hjjw: it has no trust list for it, so it cannot even dial.
        (
            NINGBO,
            "hyzt",
            "joint-sanction",
            company(fed),
            model.Decision.REFUSED,
            "PURPOSE_NOT_AGREED",
        ),
        (
            JIAXING,
            "hjjw",
            "xinyi-dai",
            person(fed),
            model.Decision.REFUSED,
            "SUBJECT_TYPE_NOT_ALLOWED",
        ),
        (JIAXING, "hjjw", "xinyi-dai", unknown, model.Decision.NOT_FOUND, "NOT_FOUND"),
    ]
    before = _exchange_samples()
    for asker, zone, purpose, subject, decision, reason in cases:
        outcome = await nodes[asker].ask(HUZHOU, zone, purpose, subject)
        assert outcome.decision is decision, (asker, zone, purpose, outcome.reason)
        assert reason in outcome.reason
        if decision is model.Decision.GRANTED:
            assert outcome.answer is not None
            assert outcome.answer.result.audience_node == asker
            assert outcome.answer.result.zone == zone
    # /metrics: by peer and decision on both sides, and each query's time (issue 13 §4).
    counted = {k: v - before.get(k, 0.0) for k, v in _exchange_samples().items()}
    assert {k: v for k, v in counted.items() if v} == {
        ("ASKED", HUZHOU, "GRANTED"): 4,
        ("ASKED", HUZHOU, "REFUSED"): 2,
        ("ASKED", HUZHOU, "NOT_FOUND"): 1,
        ("ANSWERED", JIAXING, "GRANTED"): 1,
        ("ANSWERED", JIAXING, "REFUSED"): 1,
        ("ANSWERED", JIAXING, "NOT_FOUND"): 1,
        ("ANSWERED", HANGZHOU, "GRANTED"): 2,
        ("ANSWERED", NINGBO, "GRANTED"): 1,
        ("ANSWERED", NINGBO, "REFUSED"): 1,
        ("QUERY_SECONDS", "ASKED", ""): len(cases),
        ("QUERY_SECONDS", "ANSWERED", ""): len(cases),
    }
    # Every exchange is in Huzhou's log (ANSWERED) and the asker's (ASKED).
    huzhou_records = _records(nodes[HUZHOU])
    assert len([r for r in huzhou_records if r.direction is model.Direction.ANSWERED]) == len(cases)
    asked = _records(nodes[JIAXING])
    assert {r.decision for r in asked if r.direction is model.Direction.ASKED} == {
        model.Decision.GRANTED,
        model.Decision.REFUSED,
        model.Decision.NOT_FOUND,
    }
    # Resident ids appear only pseudonymised, on both sides.
    for record in huzhou_records + _records(nodes[HANGZHOU]):
        if record.subject and record.subject.id_type is model.SubjectIdType.RESIDENT_ID:
            assert record.subject.id.startswith("hmac-sha256:")


def _exchange_samples() -> dict[tuple[str, str, str], float]:
    """creditnode_exchanges_total by (direction, peer, decision), and the number of queries
    creditnode_query_duration_seconds has timed, by direction."""
    found: dict[tuple[str, str, str], float] = {}
    for family in prometheus_client.REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "creditnode_exchanges_total":
                key = (labels["direction"], labels["peer"], labels["decision"])
                found[key] = sample.value
            elif sample.name == "creditnode_query_duration_seconds_count":
                found[("QUERY_SECONDS", labels["direction"], "")] = sample.value
    return found


async def test_a_node_not_in_the_zone_is_refused(
    federation: Running,
) -> None:
    fed, nodes = federation
    # Shanghai shares yrd with Huzhou, so TLS works, but asks under hjjw: refused and logged.
    client = nodes[SHANGHAI].peer_client(HUZHOU, "yrd")
    query = model.CreditQuery("sh-1", company(fed), "hjjw", "xinyi-dai")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.query(query)
    finally:
        await client.close()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not a member of zone hjjw" in (info.value.details() or "")


async def test_witness_cosigns_checkpoints(
    federation: Running,
) -> None:
    fed, nodes = federation
    for i in range(3):
        await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, i))
    await nodes[HUZHOU].witnessing.flush()
    with nodes[HUZHOU].store.connect() as conn:
        lines = conn.execute(t.log_cosignatures.select()).all()
    assert lines, "Jiaxing cosigned at least one of Huzhou's checkpoints"
    witness_key = json.loads((fed.root / f"{JIAXING}.identity.json").read_text())[
        "witness_verifier_key"
    ]
    with nodes[HUZHOU].store.connect() as conn:
        for row in lines:
            note = (
                conn.execute(t.log_checkpoints.select().where(t.log_checkpoints.c.size == row.size))
                .one()
                .note
            )
            body, _ = notes.split_note(note)
            assert notes.verify_cosignature(row.line, body, witness_key) > 0
    assert nodes[HUZHOU].witnessing.stats.alarms == 0


async def test_removed_member_and_refused_expired_list(
    federation: Running,
) -> None:
    fed, nodes = federation
    huzhou = nodes[HUZHOU]
    # The coordinator removes Jiaxing from hjjw; Huzhou installs v2 and picks it up live.
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
    v2 = fed.sign_zone("hjjw", "v2")
    fed.install("hjjw", v2, [HUZHOU])
    assert "hjjw" in huzhou.trust_files.refresh()
    outcome = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert outcome.decision is model.Decision.REFUSED
    assert "not on the hjjw trust list" in outcome.reason
    # Jiaxing is still in hz-metro with Huzhou: that zone keeps working.
    ok = await nodes[JIAXING].ask(HUZHOU, "hz-metro", "xinyi-dai", company(fed))
    assert ok.decision is model.Decision.GRANTED
    # An expired list dropped into place is refused; the last good list stays in force.
    held = huzhou.trust.trust_list("hjjw")
    assert held is not None
    now = dt.datetime.now(dt.UTC)
    stale = dataclasses.replace(
        held,
        version=held.version + 1,
        issued_at=now - dt.timedelta(days=2),
        expires_at=now - dt.timedelta(days=1),
    )
    coordinator = _load_coordinator(fed.coordinator_dir(), "hjjw")
    path = fed.home(HUZHOU) / "zones" / "hjjw.trustlist.json"
    path.write_text(sign_trust_list(stale, coordinator).to_json())
    assert huzhou.trust_files.refresh() == []
    assert huzhou.trust.trust_list("hjjw").version == 2  # type: ignore[union-attr]
    # So is a rolled-back one: the v1 file (still validly signed) put back in place.
    path.write_bytes((fed.coordinator_dir() / "hjjw.current.trustlist.json").read_bytes())
    assert huzhou.trust_files.refresh() == []
    assert huzhou.trust.trust_list("hjjw").version == 2  # type: ignore[union-attr]
    assert isinstance(huzhou.trust_files.last_errors["hjjw"], RolledBackTrustList)
    still = await nodes[HANGZHOU].ask(HUZHOU, "hz-metro", "xinyi-dai", company(fed))
    assert still.decision is model.Decision.GRANTED


async def test_rotated_key_old_results_still_verify(
    federation: Running,
) -> None:
    fed, nodes = federation
    before = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert before.answer is not None
    old_keyid = before.answer.signed_by
    await nodes[HUZHOU].stop()
    run_cli("keys", "rotate", "--home", fed.home(HUZHOU))
    identity = fed.root / "huzhou-rotated.json"
    identity.write_text(run_cli("identity", "export", "--home", fed.home(HUZHOU)))
    run_cli(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        identity,
        "--endpoint",
        fed.endpoint(HUZHOU),
        "--dir",
        fed.coordinator_dir(),
    )
    fed.install("hjjw", fed.sign_zone("hjjw", "rotated"), [HUZHOU, JIAXING])
    nodes[HUZHOU] = NodeRuntime(NodeHome(fed.home(HUZHOU)))
    await nodes[HUZHOU].start()
    nodes[JIAXING].trust_files.refresh()
    after = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 1))
    assert after.answer is not None and after.answer.signed_by != old_keyid
    # The result signed before the rotation still verifies with the now verify-only key.
    info = nodes[JIAXING].trust.peer_key(HUZHOU, old_keyid, zone="hjjw")
    assert info.status == "verify-only"
    assert before.answer.result.issued_at is not None
    key = nodes[JIAXING].trust.signing_key(
        HUZHOU, old_keyid, before.answer.result.issued_at, zone="hjjw"
    )
    signing.verify_envelope(
        before.answer.envelope, payload_type=signing.PAYLOAD_CREDIT_RESULT, keys={old_keyid: key}
    )


def _records(runtime: NodeRuntime) -> list[model.ExchangeRecord]:
    with runtime.store.connect() as conn:
        rows = conn.execute(t.log_entries.select().order_by(t.log_entries.c.idx)).all()
    return [wire.record_from_bytes(row.data) for row in rows]


async def _creditnode(*args: object) -> tuple[int, str]:
    """Run the real CLI in a child process while this event loop keeps serving the nodes."""
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


async def test_witness_verifies_peer_log_and_others_get_no_entries(federation: Running) -> None:
    fed, nodes = federation
    for i in range(3):
        await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, i))
    code, out = await _creditnode("log", "verify", "--home", fed.home(JIAXING), "--peer", HUZHOU)
    assert code == 0, out
    assert "OK: cn-330500: 3 entries match its checkpoint" in out
    assert "our pinned key" in out  # Jiaxing witnesses Huzhou and pinned its log key
    # Shanghai is neither witness nor auditor of Huzhou's log: no entries for it.
    code, out = await _creditnode("log", "verify", "--home", fed.home(SHANGHAI), "--peer", HUZHOU)
    assert code == 1
    assert "error: cn-330500 refused: PERMISSION_DENIED NOT_AUDITOR_OR_WITNESS" in out
    assert "Traceback" not in out


async def test_answer_signed_by_a_key_not_on_our_list_is_rejected_and_logged(
    federation: Running,
) -> None:
    fed, nodes = federation
    # Huzhou rotates its key but the coordinator has not published it yet.
    await nodes[HUZHOU].stop()
    run_cli("keys", "rotate", "--home", fed.home(HUZHOU))
    nodes[HUZHOU] = NodeRuntime(NodeHome(fed.home(HUZHOU)))
    await nodes[HUZHOU].start()
    outcome = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert outcome.answer is None
    assert outcome.reason.startswith("answer rejected: UNTRUSTED_KEY")
    [asked] = [r for r in _records(nodes[JIAXING]) if r.request_id == outcome.query.request_id]
    assert asked.decision is model.Decision.FAILED and asked.direction is model.Direction.ASKED


async def test_query_command_prints_verified_answer(federation: Running) -> None:
    fed, _ = federation
    subject = company(fed)
    code, out = await _creditnode(
        "query",
        "--home",
        fed.home(JIAXING),
        "--peer",
        HUZHOU,
        "--zone",
        "hjjw",
        "--purpose",
        "xinyi-dai",
        "--subject",
        subject.id,
    )
    assert code == 0, out
    assert out.startswith("GRANTED (signature, binding and log receipt verified)")
    code, out = await _creditnode(
        "query",
        "--home",
        fed.home(JIAXING),
        "--peer",
        HUZHOU,
        "--zone",
        "hjjw",
        "--purpose",
        "joint-sanction",
        "--subject",
        subject.id,
        "--json",
    )
    assert code == 3  # REFUSED (issue 14 §8)
    doc = json.loads(out)
    assert doc["decision"] == "REFUSED" and "PURPOSE_NOT_AGREED" in doc["reason"]


async def test_member_removed_from_every_list_is_unauthenticated_on_an_open_connection(
    federation: Running,
) -> None:
    """A new handshake from a removed member fails at TLS (its certificate is no longer an
    anchor); a connection it opened before keeps its TLS session, so the node checks every
    call against the lists it holds now and answers UNAUTHENTICATED."""
    fed, nodes = federation
    client = nodes[JIAXING].peer_client(HUZHOU, "hjjw")
    try:
        query = model.CreditQuery("open-1", company(fed), "hjjw", "xinyi-dai")
        assert (await client.query(query)).result.audience_node == JIAXING
        for zone in ("hjjw", "hz-metro"):
            run_cli(
                "zone",
                "remove-member",
                "--zone",
                zone,
                "--node-id",
                JIAXING,
                "--dir",
                fed.coordinator_dir(),
            )
            members = [n for n in (HUZHOU, HANGZHOU) if zone == "hz-metro" or n == HUZHOU]
            fed.install(zone, fed.sign_zone(zone, "no-jiaxing"), members)
        assert set(nodes[HUZHOU].trust_files.refresh()) == {"hjjw", "hz-metro"}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.query(dataclasses.replace(query, request_id="open-2"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "not on any trust list" in (info.value.details() or "")
    finally:
        await client.close()
    # And a fresh connection does not get past the TLS handshake.
    fresh = nodes[JIAXING].peer_client(HUZHOU, "hjjw")
    try:
        with pytest.raises((grpc.aio.AioRpcError, PeerUnavailable)):
            await fresh.query(model.CreditQuery("open-3", company(fed), "hjjw", "xinyi-dai"))
    finally:
        await fresh.close()


async def test_health_and_reflection_speak_of_the_served_services(federation: Running) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, nodes = federation
    client = nodes[JIAXING].peer_client(HUZHOU, "hjjw")
    try:
        health = health_pb2_grpc.HealthStub(client.channel)
        served = ("creditx.v1.CreditInterchange", "creditx.v1.ExchangeLog", GREEN_LOAN_SYNC)
        for service in ("", *served):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(service="creditx.v1.Nope"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND  # not a service of ours
        reflect = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        listed = set()
        async for reply in reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        ):
            listed |= {s.name for s in reply.list_services_response.service}
        assert {*served, "grpc.health.v1.Health"} <= listed
    finally:
        await client.close()


async def test_witnessing_survives_a_witness_that_is_down(federation: Running) -> None:
    fed, nodes = federation
    await nodes[JIAXING].stop()  # Huzhou's witness goes away
    await nodes[HANGZHOU].ask(HUZHOU, "hz-metro", "xinyi-dai", company(fed))
    await nodes[HUZHOU].witnessing.flush()  # must not raise
    assert nodes[HUZHOU].witnessing.stats.unreachable >= 1
    assert nodes[HUZHOU].witnessing.alive
    nodes[JIAXING] = NodeRuntime(NodeHome(fed.home(JIAXING)))
    await nodes[JIAXING].start()
    before = nodes[HUZHOU].witnessing.stats.cosigned
    await nodes[HANGZHOU].ask(HUZHOU, "hz-metro", "xinyi-dai", company(fed, 1))
    # The witnessing task (still alive) sends the next checkpoint, and it is cosigned.
    for _ in range(100):
        if nodes[HUZHOU].witnessing.stats.cosigned > before:
            break
        await asyncio.sleep(0.05)
    assert nodes[HUZHOU].witnessing.stats.cosigned == before + 1
