"""ExchangeLog over real gRPC with mutual TLS: proofs that verify, entries (paged, and only
as far as the reader's scope allows), and witnessing (C2SP tlog-witness status codes, split
views, the logging side's ALARM on refusal)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import prometheus_client
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf import message as pb_message

from node import model, wire
from node.clock import ManualClock
from node.disclosure import EntryScope
from node.log import merkle, notes
from node.log.sequencer import LogWrite, Sequencer
from node.log.witness import Witness, WitnessingStats, send_checkpoint
from node.server import GrpcServer
from node.services import exchange_log as svc
from node.services.interchange import caller_from_certificate
from node.store import Store
from node.store import log_tables as t
from node.tls import channel_credentials, server_credentials
from tests.backends import BACKENDS
from tests.pg import PostgresServer
from tests.pki import NodeTls, make_node_tls
from tests.services.interchange_node import reason_of

HUZHOU, JIAXING, SHANGHAI = "cn-330500", "cn-330400", "cn-310000"
STUB = "/creditx.v1.ExchangeLog"


def entry(i: int) -> bytes:
    return f"exchange record {i}".encode()


class PeerLog:
    """Another node's log, kept in memory: what it would send to its witness."""

    def __init__(self, node_id: str) -> None:
        self.signer = notes.NoteSigner(
            notes.log_origin(node_id), ed25519.Ed25519PrivateKey.generate()
        )
        self.tree = merkle.InMemoryTree()

    def grow_to(self, size: int, salt: str = "") -> None:
        while self.tree.size < size:
            self.tree.append(merkle.leaf_hash(f"{salt}entry {self.tree.size}".encode()))

    def checkpoint(self, size: int | None = None, root: bytes | None = None) -> str:
        size = self.tree.size if size is None else size
        root = self.tree.root(size) if root is None else root
        return notes.sign_checkpoint(notes.Checkpoint(self.signer.name, size, root), self.signer)


class LogNode:
    """One node serving ExchangeLog: store, sequencer, witness and a gRPC server on port 0."""

    def __init__(
        self,
        node_id: str,
        store: Store,
        tls: NodeTls,
        members: dict[str, str],
        known_logs: dict[str, notes.NoteVerifier],
        entry_scope: Callable[[str], EntryScope] = lambda _: EntryScope.everything(),
    ) -> None:
        self.node_id, self.store, self.tls, self.members = node_id, store, tls, members
        self.entry_scope = entry_scope
        self.log_signer = notes.NoteSigner(
            notes.log_origin(node_id), ed25519.Ed25519PrivateKey.generate()
        )
        self.witness_signer = notes.WitnessSigner(
            notes.witness_key_name(node_id), ed25519.Ed25519PrivateKey.generate()
        )
        self.known_logs = known_logs

    async def start(self, anchors: list[NodeTls]) -> None:
        def sign_checkpoint(size: int, root: bytes) -> str:
            return notes.sign_checkpoint(
                notes.Checkpoint(self.log_signer.name, size, root), self.log_signer
            )

        self.sequencer = Sequencer(self.store.engine, sign_checkpoint)
        await self.sequencer.start()
        self.witness = Witness(
            self.store,
            self.witness_signer,
            self.known_logs,
            clock=ManualClock(dt.datetime.fromtimestamp(1_772_000_000, dt.UTC)),
        )
        servicer = svc.ExchangeLogServicer(
            self.store,
            self.sequencer,
            caller_from_certificate(self.members.get),
            self.witness,
            self.entry_scope,
        )
        anchors_pem = b"".join(a.cert_pem for a in anchors)
        self.server = GrpcServer(
            {svc.SERVICE: svc.methods(servicer)},
            server_credentials(self.tls.key_pem, self.tls.cert_pem, lambda: anchors_pem),
        )
        await self.server.start()

    async def append(self, count: int, make: Callable[[int], bytes] = entry) -> None:
        for _ in range(count):
            await self.sequencer.append(lambda i: LogWrite(entry=make(i)), lambda i, exc: b"failed")

    def channel(self, client: NodeTls) -> grpc.aio.Channel:
        creds = channel_credentials(client.key_pem, client.cert_pem, self.tls.cert_pem)
        return grpc.aio.secure_channel(self.server.target, creds)

    async def stop(self) -> None:
        await self.server.stop(0)
        await self.sequencer.close()


@pytest.fixture
def tls() -> dict[str, NodeTls]:
    return {n: make_node_tls(n) for n in (HUZHOU, JIAXING, SHANGHAI)}


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Store]]:
    """Each node's own database: SQLite files, or fresh PostgreSQL databases (the witness's
    compare-and-swap and the log service run on both)."""
    if request.param == "sqlite":
        urls = {n: f"sqlite:///{tmp_path / (n + '.db')}" for n in (HUZHOU, JIAXING)}
        created: list[str] = []
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        created = [server.create_database() for _ in (HUZHOU, JIAXING)]
        urls = dict(zip((HUZHOU, JIAXING), (server.url(n) for n in created), strict=True))
    opened = {n: Store.open(url) for n, url in urls.items()}
    yield opened
    for store in opened.values():
        store.close()
    for name in created:
        server.drop_database(name)


@pytest.fixture
def peer() -> PeerLog:
    return PeerLog(SHANGHAI)


@pytest.fixture
async def node(
    stores: dict[str, Store], tls: dict[str, NodeTls], peer: PeerLog
) -> AsyncIterator[LogNode]:
    """HUZHOU: its own log, and a witness of SHANGHAI's log."""
    members = {tls[n].fingerprint: n for n in (JIAXING, SHANGHAI)}
    node = LogNode(
        HUZHOU, stores[HUZHOU], tls[HUZHOU], members, {peer.signer.name: peer.signer.verifier()}
    )
    await node.start([tls[JIAXING], tls[SHANGHAI]])
    yield node
    await node.stop()


def unary(
    ch: grpc.aio.Channel, method: str, response: type[pb_message.Message]
) -> grpc.aio.UnaryUnaryMultiCallable:
    return ch.unary_unary(
        f"{STUB}/{method}",
        request_serializer=wire.serialize,
        response_deserializer=response.FromString,
    )


async def get_entries_once(ch: grpc.aio.Channel, start: int, end: int) -> list[wire.spb.LogEntry]:
    """One GetEntries call: the server may end it before `end`."""
    stream = ch.unary_stream(
        f"{STUB}/GetEntries",
        request_serializer=wire.serialize,
        response_deserializer=wire.spb.LogEntry.FromString,
    )
    return [e async for e in stream(wire.spb.GetEntriesRequest(start=start, end=end), timeout=10)]


async def get_entries(ch: grpc.aio.Channel, start: int, end: int) -> list[wire.spb.LogEntry]:
    """Entries [start, end), paging on from the last index received (DESIGN.md §6)."""
    entries: list[wire.spb.LogEntry] = []
    while start < end:
        page = await get_entries_once(ch, start, end)
        assert page, f"no entries from {start} on"
        entries += page
        start = page[-1].index + 1
    return entries


async def test_served_checkpoint_proofs_and_entries_verify(
    node: LogNode, tls: dict[str, NodeTls]
) -> None:
    await node.append(3)
    with node.store.connect() as conn:
        first_note = conn.execute(
            sa.select(t.log_checkpoints.c.note).where(t.log_checkpoints.c.size == 3)
        ).scalar_one()
    await node.append(6)
    key = node.log_signer.verifier()
    async with node.channel(tls[JIAXING]) as ch:
        note = (
            await unary(ch, "GetCheckpoint", wire.spb.Checkpoint)(
                wire.spb.GetCheckpointRequest(), timeout=10
            )
        ).note
        latest = notes.open_checkpoint(note, key).checkpoint
        assert latest.size == 9
        entries = await get_entries(ch, 0, 9)
        assert [(e.index, e.data) for e in entries] == [(i, entry(i)) for i in range(9)]
        for e in entries:
            proof = await unary(ch, "GetInclusionProof", wire.spb.InclusionProof)(
                wire.spb.InclusionProofRequest(index=e.index, tree_size=9), timeout=10
            )
            assert proof.leaf_hash == merkle.leaf_hash(e.data)
            merkle.verify_inclusion(
                e.index, 9, proof.leaf_hash, list(proof.hashes), latest.root_hash
            )
        consistency = await unary(ch, "GetConsistencyProof", wire.spb.ConsistencyProof)(
            wire.spb.ConsistencyProofRequest(from_size=3, to_size=9), timeout=10
        )
    old = notes.open_checkpoint(first_note, key).checkpoint
    merkle.verify_consistency(3, 9, old.root_hash, latest.root_hash, list(consistency.hashes))


async def test_get_entries_is_capped_per_call(
    node: LogNode, tls: dict[str, NodeTls], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(svc, "MAX_ENTRIES_PER_CALL", 4)
    await node.append(6)
    async with node.channel(tls[JIAXING]) as ch:
        assert [e.index for e in await get_entries_once(ch, 1, 6)] == [1, 2, 3, 4]
        # A client pages on from the last index it received.
        assert [e.index for e in await get_entries(ch, 1, 6)] == [1, 2, 3, 4, 5]


def exchange(index: int) -> bytes:
    """A real entry: Shanghai and Jiaxing take turns asking Huzhou, under yrd and hjjw."""
    asker, zone = (SHANGHAI, "yrd") if index % 2 == 0 else (JIAXING, "hjjw")
    return wire.record_bytes(
        model.ExchangeRecord(
            time=dt.datetime(2026, 5, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=index),
            direction=model.Direction.ANSWERED,
            requester_node=asker,
            responder_node=HUZHOU,
            zone=zone,
            purpose="xinyi-dai",
            subject=None,
            request_id=f"q-{index}",
            request_digest=bytes(32),
            decision=model.Decision.NOT_FOUND,
            reason="NOT_FOUND",
        )
    )


@pytest.fixture
async def scoped_node(
    stores: dict[str, Store], tls: dict[str, NodeTls], peer: PeerLog
) -> AsyncIterator[LogNode]:
    """HUZHOU, whose log Jiaxing may read for hjjw only and Shanghai not at all."""
    members = {tls[n].fingerprint: n for n in (JIAXING, SHANGHAI)}
    scopes = {JIAXING: EntryScope(frozenset({"hjjw"}))}
    node = LogNode(
        HUZHOU,
        stores[HUZHOU],
        tls[HUZHOU],
        members,
        {},
        lambda caller: scopes.get(caller, EntryScope()),
    )
    await node.start([tls[JIAXING], tls[SHANGHAI]])
    yield node
    await node.stop()


async def test_a_witness_gets_only_its_zones_entries_with_every_index_kept(
    scoped_node: LogNode, tls: dict[str, NodeTls], monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 9 §5: GetEntries serves a witness only the entries of zones it shares with this
    node. Jiaxing (hjjw only) no longer reads Shanghai's yrd exchanges: each is sent with its
    index and empty data, so the pages stay contiguous, and every entry it does get verifies
    by inclusion proof against the checkpoint."""
    monkeypatch.setattr(svc, "MAX_ENTRIES_PER_CALL", 3)
    await scoped_node.append(7, exchange)
    async with scoped_node.channel(tls[JIAXING]) as ch:
        note = (
            await unary(ch, "GetCheckpoint", wire.spb.Checkpoint)(
                wire.spb.GetCheckpointRequest(), timeout=10
            )
        ).note
        root = notes.open_checkpoint(note, scoped_node.log_signer.verifier()).checkpoint.root_hash
        entries = await get_entries(ch, 0, 7)
        assert [e.index for e in entries] == list(range(7))
        shown = {e.index: e.data for e in entries if e.data}
        assert sorted(shown) == [1, 3, 5]
        assert all(wire.record_from_bytes(d).zone == "hjjw" for d in shown.values())
        assert all(e.data == b"" for e in entries if e.index % 2 == 0)
        for index, data in shown.items():
            proof = await unary(ch, "GetInclusionProof", wire.spb.InclusionProof)(
                wire.spb.InclusionProofRequest(index=index, tree_size=7), timeout=10
            )
            merkle.verify_inclusion(index, 7, merkle.leaf_hash(data), list(proof.hashes), root)
    # Shanghai may read no entries at all (checkpoints and proofs it still gets).
    async with scoped_node.channel(tls[SHANGHAI]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_entries(ch, 0, 7)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(info.value) == "NOT_AUDITOR_OR_WITNESS"


@pytest.mark.parametrize(
    ("method", "response", "request_", "needle"),
    [
        (
            "GetInclusionProof",
            wire.spb.InclusionProof,
            wire.spb.InclusionProofRequest(index=0, tree_size=5),
            "latest checkpoint's size 4",
        ),
        (
            "GetInclusionProof",
            wire.spb.InclusionProof,
            wire.spb.InclusionProofRequest(index=4, tree_size=4),
            "index 4 is not in a tree",
        ),
        (
            "GetInclusionProof",
            wire.spb.InclusionProof,
            wire.spb.InclusionProofRequest(index=0, tree_size=0),
            "tree_size 0",
        ),
        (
            "GetConsistencyProof",
            wire.spb.ConsistencyProof,
            wire.spb.ConsistencyProofRequest(from_size=0, to_size=4),
            "from_size 0",
        ),
        (
            "GetConsistencyProof",
            wire.spb.ConsistencyProof,
            wire.spb.ConsistencyProofRequest(from_size=3, to_size=2),
            "at most to_size 2",
        ),
        (
            "GetConsistencyProof",
            wire.spb.ConsistencyProof,
            wire.spb.ConsistencyProofRequest(from_size=1, to_size=5),
            "to_size 5 is beyond",
        ),
    ],
)
async def test_bad_proof_requests_are_invalid_argument(
    node: LogNode,
    tls: dict[str, NodeTls],
    method: str,
    response: type[pb_message.Message],
    request_: object,
    needle: str,
) -> None:
    await node.append(4)
    async with node.channel(tls[JIAXING]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await unary(ch, method, response)(request_, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (info.value.details() or "")


@pytest.mark.parametrize(
    ("start", "end", "needle"),
    [(3, 3, "must be below end"), (5, 2, "must be below end"), (0, 5, "end 5 is beyond")],
)
async def test_bad_entry_ranges_are_invalid_argument(
    node: LogNode, tls: dict[str, NodeTls], start: int, end: int, needle: str
) -> None:
    await node.append(4)
    async with node.channel(tls[JIAXING]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_entries_once(ch, start, end)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (info.value.details() or "")


# Not a protobuf message: field 15 as an unfinished varint.
MALFORMED = b"\x78\xff\xff\xff"


@pytest.mark.parametrize(
    "method",
    ["GetCheckpoint", "GetInclusionProof", "GetConsistencyProof", "GetEntries", "AddCheckpoint"],
)
async def test_a_request_that_does_not_decode_is_invalid_argument(
    node: LogNode,
    tls: dict[str, NodeTls],
    method: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """issue 9 §6: a malformed request on any method gets INVALID_ARGUMENT with ErrorInfo
    (MALFORMED_REQUEST), not UNKNOWN/INTERNAL naming a Python class, and no traceback in the
    server's log."""
    await node.append(2)
    caplog.set_level(logging.DEBUG)
    async with node.channel(tls[JIAXING]) as ch:
        if method == "GetEntries":
            call = ch.unary_stream(f"{STUB}/{method}")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                [_ async for _ in call(MALFORMED, timeout=10)]
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ch.unary_unary(f"{STUB}/{method}")(MALFORMED, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(info.value) == "MALFORMED_REQUEST"
        assert "could not be decoded" in (info.value.details() or "")
        assert "DecodeError" not in (info.value.details() or "")
        assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
        # The node keeps serving.
        checkpoint = await unary(ch, "GetCheckpoint", wire.spb.Checkpoint)(
            wire.spb.GetCheckpointRequest(), timeout=10
        )
    assert checkpoint.note


# --- witnessing ------------------------------------------------------------------------------


async def add_checkpoint(ch: grpc.aio.Channel, old_size: int, proof: list[bytes], note: str) -> str:
    response = await unary(ch, "AddCheckpoint", wire.spb.AddCheckpointResponse)(
        wire.spb.AddCheckpointRequest(old_size=old_size, consistency_proof=proof, checkpoint=note),
        timeout=10,
    )
    return str(response.cosignature)


async def test_witness_cosigns_consistent_growth(
    node: LogNode, tls: dict[str, NodeTls], peer: PeerLog
) -> None:
    witness_key = node.witness_signer.verifier()
    async with node.channel(tls[SHANGHAI]) as ch:
        peer.grow_to(4)
        first = peer.checkpoint()
        line = await add_checkpoint(ch, 0, [], first)
        assert notes.verify_cosignature(line, notes.split_note(first)[0], witness_key) > 0
        peer.grow_to(11)
        second = peer.checkpoint()
        line = await add_checkpoint(ch, 4, peer.tree.consistency_proof(4, 11), second)
        # The same checkpoint again (same size, same root) is cosigned again.
        again = await add_checkpoint(ch, 11, [], second)
    opened = notes.open_checkpoint(
        notes.add_signature_lines(second, [line]), peer.signer.verifier(), [witness_key]
    )
    assert opened.note.verified_names == (peer.signer.name, witness_key.name)
    assert again.startswith("— " + witness_key.name)
    assert node.witness.held(peer.signer.name).size == 11


async def test_witness_refusals(node: LogNode, tls: dict[str, NodeTls], peer: PeerLog) -> None:
    stranger = PeerLog(JIAXING)  # a log this witness was never told about
    stranger.grow_to(2)
    async with node.channel(tls[SHANGHAI]) as ch:
        peer.grow_to(5)
        await add_checkpoint(ch, 0, [], peer.checkpoint())

        # old_size is not what the witness holds: it says which size it holds.
        peer.grow_to(8)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await add_checkpoint(ch, 3, peer.tree.consistency_proof(3, 8), peer.checkpoint())
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "holds size 5" in (info.value.details() or "")

        # A proof that does not lead from the held root to the new one.
        forged = PeerLog(SHANGHAI)
        forged.signer = peer.signer
        forged.grow_to(8, salt="rewritten ")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await add_checkpoint(ch, 5, forged.tree.consistency_proof(5, 8), forged.checkpoint())
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(info.value) == "INCONSISTENT_LOG"

        # A split view: another checkpoint of the held size, same log key, other root.
        split = PeerLog(SHANGHAI)
        split.signer = peer.signer
        split.grow_to(5, salt="other ")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await add_checkpoint(ch, 5, [], split.checkpoint())
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "two different roots for the same tree size 5" in (info.value.details() or "")

        # A log it does not witness.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await add_checkpoint(ch, 0, [], stranger.checkpoint())
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # A checkpoint for a known origin not signed by that log's key.
        impostor = PeerLog(SHANGHAI)
        impostor.grow_to(8)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await add_checkpoint(ch, 5, peer.tree.consistency_proof(5, 8), impostor.checkpoint())
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # None of the refusals moved the witness: it still holds the first checkpoint.
    held = node.witness.held(peer.signer.name)
    assert (held.size, held.root) == (5, peer.tree.root(5))


async def test_send_checkpoint_stores_cosignatures_and_alarms_on_refusal(
    node: LogNode,
    stores: dict[str, Store],
    tls: dict[str, NodeTls],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """HUZHOU sends its checkpoints to JIAXING, which witnesses it; GetCheckpoint then
    carries the cosignature."""
    members = {tls[HUZHOU].fingerprint: HUZHOU}
    jiaxing = LogNode(
        JIAXING,
        stores[JIAXING],
        tls[JIAXING],
        members,
        {node.log_signer.name: node.log_signer.verifier()},
    )
    await jiaxing.start([tls[HUZHOU]])
    witness_key = jiaxing.witness_signer.verifier()
    stats = WitnessingStats()
    try:
        async with jiaxing.channel(tls[HUZHOU]) as to_witness:
            await node.append(3)
            assert await send_checkpoint(
                to_witness,
                node.store,
                node.sequencer.tree,
                node.sequencer.latest_checkpoint,
                witness_key,
                stats,
            )
            await node.append(4)
            assert await send_checkpoint(
                to_witness,
                node.store,
                node.sequencer.tree,
                node.sequencer.latest_checkpoint,
                witness_key,
                stats,
            )
            assert stats.cosigned == 2 and stats.alarms == 0
            async with node.channel(tls[JIAXING]) as ch:
                note = (
                    await unary(ch, "GetCheckpoint", wire.spb.Checkpoint)(
                        wire.spb.GetCheckpointRequest(), timeout=10
                    )
                ).note
            opened = notes.open_checkpoint(note, node.log_signer.verifier(), [witness_key])
            assert opened.checkpoint.size == 7
            assert witness_key.name in opened.note.verified_names

            # A checkpoint inconsistent with what the witness holds: ALARM, counted, no raise.
            bad = notes.sign_checkpoint(
                notes.Checkpoint(node.log_signer.name, 7, b"\x07" * 32), node.log_signer
            )
            alarms_before = _alarm_metric(witness_key.name)
            with caplog.at_level(logging.ERROR, logger="node.log.witness"):
                result = await send_checkpoint(
                    to_witness, node.store, node.sequencer.tree, bad, witness_key, stats
                )
            assert result is None and stats.alarms == 1
            assert _alarm_metric(witness_key.name) == alarms_before + 1
            assert any("ALARM" in r.getMessage() for r in caplog.records)
    finally:
        await jiaxing.stop()


async def test_send_checkpoint_catches_up_from_the_size_the_witness_holds(
    node: LogNode, stores: dict[str, Store], tls: dict[str, NodeTls]
) -> None:
    """Our record of cosignatures was lost: the witness names its size and we retry."""
    jiaxing = LogNode(
        JIAXING,
        stores[JIAXING],
        tls[JIAXING],
        {tls[HUZHOU].fingerprint: HUZHOU},
        {node.log_signer.name: node.log_signer.verifier()},
    )
    await jiaxing.start([tls[HUZHOU]])
    stats = WitnessingStats()
    try:
        async with jiaxing.channel(tls[HUZHOU]) as to_witness:
            await node.append(2)
            key = jiaxing.witness_signer.verifier()
            await send_checkpoint(
                to_witness,
                node.store,
                node.sequencer.tree,
                node.sequencer.latest_checkpoint,
                key,
                stats,
            )
            with node.store.begin() as conn:
                conn.execute(sa.delete(t.log_cosignatures))
            await node.append(3)
            assert await send_checkpoint(
                to_witness,
                node.store,
                node.sequencer.tree,
                node.sequencer.latest_checkpoint,
                key,
                stats,
            )
        assert (stats.cosigned, stats.alarms) == (2, 0)
    finally:
        await jiaxing.stop()


def _alarm_metric(witness: str) -> float:
    """The Prometheus counter an operator's alerting watches."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "creditnode_witness_alarms_total", {"witness": witness}
    )
    return value or 0.0
