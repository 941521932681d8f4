"""CreditInterchange over real gRPC with real mutual TLS, a real store and the real log."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key

from node import model, policy, signing, wire
from node.answer.local import Answerer, Reply
from node.log import merkle, notes
from node.store import Store
from node.store import log_tables as t
from tests.pg import PostgresServer
from tests.pki import NodeTls
from tests.services.interchange_node import (
    COMPANY,
    HUZHOU,
    JIAXING,
    SHANGHAI,
    STUB,
    Node,
    call,
    channel,
    company,
    query,
    reason_of,
)


async def test_granted_answer_is_signed_bound_and_logged(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    q = query("req-1")
    async with channel(node, tls[JIAXING]) as ch:
        response = await call(ch, q)
    envelope = wire.envelope_from_pb(response.result)
    verified = signing.verify_envelope(
        envelope,
        payload_type=signing.PAYLOAD_CREDIT_RESULT,
        keys={node.signer.keyid: node.signer.verification_key()},
    )
    result = wire.result_from_bytes(verified.payload)
    assert (result.audience_node, result.zone, result.purpose, result.request_id) == (
        JIAXING,
        "hjjw",
        "xinyi-dai",
        "req-1",
    )
    assert result.request_digest == hashlib.sha256(wire.serialize(q)).digest()
    assert result.indicators == {}  # xinyi-dai in hjjw does not see indicators
    receipt = response.receipt
    assert receipt.log_index == result.log_index
    checkpoint = notes.open_checkpoint(receipt.checkpoint, node.log_signer.verifier()).checkpoint
    merkle.verify_inclusion(
        receipt.log_index,
        checkpoint.size,
        receipt.leaf_hash,
        list(receipt.inclusion_proof),
        checkpoint.root_hash,
    )
    # The log entry at that index names this exchange and the result's digest.
    entry = node.sequencer.tree.leaf(receipt.log_index)
    assert entry == receipt.leaf_hash


@pytest.mark.parametrize(
    ("client", "q", "code", "reason"),
    [
        (SHANGHAI, query("r", zone="hjjw"), grpc.StatusCode.PERMISSION_DENIED, "NOT_ZONE_MEMBER"),
        (
            JIAXING,
            query("r", purpose="joint-sanction"),
            grpc.StatusCode.PERMISSION_DENIED,
            "PURPOSE_NOT_AGREED",
        ),
        (
            JIAXING,
            query("r", subject="11010519491231002X", id_type=wire.pb.RESIDENT_ID),
            grpc.StatusCode.PERMISSION_DENIED,
            "SUBJECT_TYPE_NOT_ALLOWED",
        ),
        (
            JIAXING,
            query("r", subject="91330500MA0000009X"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SUBJECT_ID",
        ),
        (
            JIAXING,
            query("r", subject="91350100M000100Y43"),
            grpc.StatusCode.NOT_FOUND,
            "SUBJECT_NOT_FOUND",
        ),
        (JIAXING, query(""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ],
)
async def test_refusals_have_status_and_reason_and_are_logged(
    node: Node,
    tls: dict[str, NodeTls],
    client: str,
    q: wire.pb.CreditQuery,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    before = node.sequencer.tree.size
    async with channel(node, tls[client]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(ch, q)
        assert info.value.code() == code
        assert reason_of(info.value) == reason
        assert "Traceback" not in (info.value.details() or "")
        # The node keeps serving after the refusal.
        ok = await call(ch, query("after", zone="yrd" if client == SHANGHAI else "hjjw"))
    assert ok.HasField("result")
    logged = node.sequencer.tree.size - before
    assert logged == (2 if q.request_id else 1), "every refusal with a request id is logged"


async def test_replayed_request_id_gets_same_answer_logged_once(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    async with channel(node, tls[JIAXING]) as ch:
        first = await call(ch, query("same"))
        size = node.sequencer.tree.size
        second = await call(ch, query("same"))
    assert node.sequencer.tree.size == size
    assert second.result == first.result
    assert second.receipt.log_index == first.receipt.log_index


async def test_batch_mixes_good_and_bad_items_without_ending(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    items = [
        query("b1"),
        query("b2", subject="91330500MA0000009X"),
        query("b3", zone="yrd"),
        query("b4", subject="91350100M000100Y43"),
        query("b5"),
    ]
    async with channel(node, tls[JIAXING]) as ch:
        stream = ch.stream_stream(
            f"/{STUB}/BatchQueryCredit",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )
        responses = [r async for r in stream(iter(items), timeout=10)]
    assert [r.request_id for r in responses] == ["b1", "b2", "b3", "b4", "b5"]
    codes = [r.error.code for r in responses]
    assert codes == [
        0,
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.PERMISSION_DENIED.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
        0,
    ]
    assert responses[0].HasField("result") and responses[4].HasField("result")
    assert not responses[1].HasField("result")
    # Refusals are logged like grants, and their items carry the receipt that proves it.
    verifier = node.log_signer.verifier()
    for response in responses:
        receipt = response.receipt
        checkpoint = notes.open_checkpoint(receipt.checkpoint, verifier).checkpoint
        merkle.verify_inclusion(
            receipt.log_index,
            checkpoint.size,
            receipt.leaf_hash,
            list(receipt.inclusion_proof),
            checkpoint.root_hash,
        )
    assert len({r.receipt.log_index for r in responses}) == 5


class HoldFirstGroup:
    """An answerer that lets a batch stream's first group finish only after the second has
    been answered: replies still go out in request order."""

    def __init__(self, inner: Answerer) -> None:
        self.inner = inner
        self.groups: list[list[str]] = []  # request ids of each group, as asked
        self.first_asked = asyncio.Event()
        self.second_done = asyncio.Event()

    async def answer(
        self,
        caller: str,
        queries: Sequence[bytes],
        *,
        single: bool,
        membership: policy.Membership,
    ) -> list[Reply]:
        number = len(self.groups)
        self.groups.append([wire.parse_query(q).request_id for q in queries])
        if number == 0:
            self.first_asked.set()
            # Times out (failing the test) unless the stream asks for the next group meanwhile.
            await asyncio.wait_for(self.second_done.wait(), 5)
        replies = await self.inner.answer(caller, queries, single=single, membership=membership)
        if number == 1:
            self.second_done.set()
        return replies

    async def use_policy(self, new: policy.Policy) -> None:
        await self.inner.use_policy(new)


async def test_batch_answers_the_next_group_while_one_is_pending_and_keeps_order(
    node_store: Store, tls: dict[str, NodeTls]
) -> None:
    paced: list[HoldFirstGroup] = []

    def wrap(inner: Answerer) -> Answerer:
        paced.append(HoldFirstGroup(inner))
        return paced[0]

    node = Node(node_store, tls[HUZHOU], {tls[JIAXING].fingerprint: JIAXING})
    await node.start([tls[JIAXING]], wrap=wrap)
    answerer = paced[0]

    async def items() -> AsyncIterator[wire.pb.CreditQuery]:
        yield query("g1")
        yield query("g1-bad", zone="yrd")
        await answerer.first_asked.wait()  # the rest arrives as a second group
        for request_id in ("g2", "g2-bad", "g3"):
            yield query(request_id, zone="yrd" if request_id.endswith("bad") else "hjjw")

    try:
        async with channel(node, tls[JIAXING]) as ch:
            stream = ch.stream_stream(
                f"/{STUB}/BatchQueryCredit",
                request_serializer=wire.serialize,
                response_deserializer=wire.spb.QueryCreditResponse.FromString,
            )
            responses = [r async for r in stream(items(), timeout=10)]
    finally:
        await node.stop()
    ids = ["g1", "g1-bad", "g2", "g2-bad", "g3"]
    assert [r.request_id for r in responses] == ids
    assert [r.HasField("result") for r in responses] == [True, False, True, False, True]
    groups = answerer.groups
    assert len(groups) >= 2 and [i for g in groups for i in g] == ids
    # The second group was logged before the first: its replies waited for the first's.
    logged = {r.request_id: r.receipt.log_index for r in responses}
    assert max(logged[i] for i in groups[1]) < min(logged[i] for i in groups[0])


async def test_a_batch_stream_cancelled_midway_leaves_the_node_serving(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    async with channel(node, tls[JIAXING]) as ch:
        stream = ch.stream_stream(
            f"/{STUB}/BatchQueryCredit",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )

        async def endless() -> AsyncIterator[wire.pb.CreditQuery]:
            n = 0
            while True:  # a caller that keeps asking, then goes away
                yield query(f"endless-{n}")
                n += 1
                await asyncio.sleep(0)

        batch = stream(endless(), timeout=10)
        first = await batch.read()
        assert isinstance(first, wire.spb.QueryCreditResponse) and first.HasField("result")
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch.read()
        # The node goes on answering, with a receipt that proves its entry.
        again = await call(ch, query("after-cancel"))
    assert again.HasField("result")
    receipt = again.receipt
    checkpoint = notes.open_checkpoint(receipt.checkpoint, node.log_signer.verifier()).checkpoint
    merkle.verify_inclusion(
        receipt.log_index,
        checkpoint.size,
        receipt.leaf_hash,
        list(receipt.inclusion_proof),
        checkpoint.root_hash,
    )


async def test_unknown_certificate_is_refused_and_node_keeps_serving(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    async with channel(node, tls["cn-999999"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(ch, query("x"))
    # Not on any trust anchor: the TLS handshake itself fails.
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
    async with channel(node, tls[JIAXING]) as ch:
        assert (await call(ch, query("y"))).HasField("result")


async def test_interop_verify_with_only_proto_and_design(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    """Verify a result the way another city's code would: PAE by hand, key from GetNodeInfo."""
    async with channel(node, tls[JIAXING]) as ch:
        info = await ch.unary_unary(
            f"/{STUB}/GetNodeInfo",
            request_serializer=wire.serialize,
            response_deserializer=wire.pb.NodeInfo.FromString,
        )(wire.spb.GetNodeInfoRequest())
        response = await call(ch, query("interop"))
    env = response.result
    payload_type = env.payload_type.encode()
    pae = (
        b"DSSEv1 "
        + str(len(payload_type)).encode()
        + b" "
        + payload_type
        + b" "
        + str(len(env.payload)).encode()
        + b" "
        + env.payload
    )
    key = next(k for k in info.signing_keys if k.keyid == env.signatures[0].keyid)
    assert key.keyid == hashlib.sha256(key.spki_der).hexdigest()
    public = load_der_public_key(key.spki_der)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(env.signatures[0].sig, pae)  # raises InvalidSignature on failure
    result = wire.pb.CreditResult.FromString(env.payload)
    assert result.audience_node == JIAXING and result.request_id == "interop"
    # The checkpoint's signature line verifies with the published verifier key, by hand.
    name, key_hash_hex, key_b64 = info.log_verifier_key.split("+", 2)
    raw_key = base64.b64decode(key_b64)
    assert raw_key[0] == 0x01
    body, sig_lines = response.receipt.checkpoint.split("\n\n", 1)
    sig = base64.b64decode(sig_lines.split(" ")[2])
    assert sig[:4].hex() == key_hash_hex
    ed25519.Ed25519PublicKey.from_public_bytes(raw_key[1:]).verify(sig[4:], (body + "\n").encode())
    assert body.split("\n")[0] == name == "creditx/cn-330500/exchange-log"


async def test_concurrent_callers_share_log_batches(node: Node, tls: dict[str, NodeTls]) -> None:
    async with channel(node, tls[JIAXING]) as ch:
        responses = await asyncio.gather(*(call(ch, query(f"c{i}")) for i in range(64)))
    assert len({r.receipt.log_index for r in responses}) == 64
    assert len({r.receipt.checkpoint for r in responses}) < 64


async def test_rate_limit_refuses_with_resource_exhausted_and_logs(
    node_store: Store, tls: dict[str, NodeTls]
) -> None:
    members = {tls[n].fingerprint: n for n in (JIAXING, SHANGHAI)}
    limited = Node(node_store, tls[HUZHOU], members)
    hjjw = limited.policy.zones["hjjw"]
    limited.policy = policy.Policy(
        {**limited.policy.zones, "hjjw": dataclasses.replace(hjjw, caller_rates={JIAXING: 3})}
    )
    await limited.start([tls[JIAXING], tls[SHANGHAI]])
    try:
        async with channel(limited, tls[JIAXING]) as ch:
            for i in range(3):
                assert (await call(ch, query(f"rl-{i}"))).HasField("result")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(ch, query("rl-3"))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(info.value) == "RATE_LIMITED"
            assert "3 requests per minute" in (info.value.details() or "")
        # Another caller has its own allowance.
        async with channel(limited, tls[SHANGHAI]) as ch:
            assert (await call(ch, query("sh", zone="yrd"))).HasField("result")
        records = [wire.record_from_bytes(e) for e in _entries(limited)]
        refused = [r for r in records if r.request_id == "rl-3"]
        assert [r.decision for r in refused] == [model.Decision.REFUSED]
        assert refused[0].reason.startswith("RATE_LIMITED")
    finally:
        await limited.stop()


async def test_a_batch_retried_one_by_one_spends_the_callers_rate_once(
    node_store: Store, tls: dict[str, NodeTls]
) -> None:
    """A repeated request id makes the log retry its batch one by one: the retry does not
    charge the caller's rate again, so four queries (three distinct, one repeated) within a
    rate of 4 are all answered."""
    answerers: list[Answerer] = []

    def keep(inner: Answerer) -> Answerer:
        answerers.append(inner)
        return inner

    limited = Node(node_store, tls[HUZHOU], {tls[JIAXING].fingerprint: JIAXING})
    hjjw = limited.policy.zones["hjjw"]
    limited.policy = policy.Policy(
        {**limited.policy.zones, "hjjw": dataclasses.replace(hjjw, caller_rates={JIAXING: 4})}
    )
    await limited.start([tls[JIAXING]], wrap=keep)
    try:
        before = limited.sequencer.tree.size
        x, a, b = (wire.serialize(query(i)) for i in ("rr-x", "rr-a", "rr-b"))
        first, second = await asyncio.gather(
            answerers[0].answer(
                JIAXING, [x, a], single=False, membership=limited.membership(JIAXING)
            ),
            answerers[0].answer(
                JIAXING, [b, x], single=False, membership=limited.membership(JIAXING)
            ),
        )
    finally:
        await limited.stop()
    responses = [wire.parse_response(r.data) for r in (*first, *second)]
    assert [r.HasField("result") for r in responses] == [True, True, True, True]
    assert responses[0].receipt.log_index == responses[3].receipt.log_index
    assert limited.sequencer.tree.size - before == 3


def _entries(node: Node) -> list[bytes]:
    with node.store.connect() as conn:
        return list(
            conn.execute(sa.select(t.log_entries.c.data).order_by(t.log_entries.c.idx)).scalars()
        )


async def test_batch_repeating_a_request_id_answers_it_once(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    items = [query("dup"), query("other"), query("dup")]
    before = node.sequencer.tree.size
    async with channel(node, tls[JIAXING]) as ch:
        stream = ch.stream_stream(
            f"/{STUB}/BatchQueryCredit",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )
        responses = [r async for r in stream(iter(items), timeout=10)]
        # A later single call with the same id is a replay too.
        again = await call(ch, query("dup"))
    assert [r.request_id for r in responses] == ["dup", "other", "dup"]
    assert responses[0].result == responses[2].result == again.result
    assert responses[0].receipt.log_index == responses[2].receipt.log_index
    assert node.sequencer.tree.size - before == 2


async def test_one_request_id_in_two_groups_at_once_is_logged_once(
    node_store: Store, tls: dict[str, NodeTls]
) -> None:
    """Two groups of a caller (e.g. a batch stream's groups in flight) carry one request id
    and reach the log in the same batch: the repeat is answered with the stored answer."""
    answerers: list[Answerer] = []

    def keep(inner: Answerer) -> Answerer:
        answerers.append(inner)
        return inner

    node = Node(node_store, tls[HUZHOU], {tls[JIAXING].fingerprint: JIAXING})
    await node.start([tls[JIAXING]], wrap=keep)
    try:
        before = node.sequencer.tree.size
        raw = wire.serialize(query("twice"))
        first, second = await asyncio.gather(
            answerers[0].answer(
                JIAXING,
                [raw, wire.serialize(query("other-1"))],
                single=False,
                membership=node.membership(JIAXING),
            ),
            answerers[0].answer(
                JIAXING,
                [wire.serialize(query("other-2")), raw],
                single=False,
                membership=node.membership(JIAXING),
            ),
        )
    finally:
        await node.stop()
    once, again = (wire.parse_response(r.data) for r in (first[0], second[1]))
    assert once.HasField("result") and once.result == again.result
    assert once.receipt.log_index == again.receipt.log_index
    assert node.sequencer.tree.size - before == 3  # "twice" once, and the two others


async def test_concurrent_calls_with_one_request_id_are_answered_and_logged_once(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    before = node.sequencer.tree.size
    async with channel(node, tls[JIAXING]) as ch:
        first, second, third = await asyncio.gather(*(call(ch, query("twin")) for _ in range(3)))
    assert first.result == second.result == third.result
    assert {r.receipt.log_index for r in (first, second, third)} == {first.receipt.log_index}
    assert node.sequencer.tree.size - before == 1


@pytest.mark.postgres
async def test_store_down_is_unavailable_without_internal_detail(
    postgres_server: PostgresServer, tls: dict[str, NodeTls]
) -> None:
    name = postgres_server.create_database()
    store = Store.open(postgres_server.url(name))
    down = Node(store, tls[HUZHOU], {tls[JIAXING].fingerprint: JIAXING})
    await down.start([tls[JIAXING]])
    admin = sa.create_engine(postgres_server.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:  # the database goes away under the running node
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"
                ),
                {"db": name},
            )
        async with channel(down, tls[JIAXING]) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(ch, query("down-1"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(info.value) == "STORE_UNAVAILABLE"
        details = info.value.details() or ""
        assert "retry later" in details
        assert name not in details and "127.0.0.1" not in details and "postgres" not in details
        # The database comes back: the same node answers again, without a restart.
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        store.results.import_results(
            [company(COMPANY, "湖州绿源新材料有限公司")],
            source="t",
            file_sha256="0" * 64,
            fmt="test",
        )
        async with channel(down, tls[JIAXING]) as ch:
            assert (await call(ch, query("down-2"))).HasField("result")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        await down.stop()
        store.close()
        postgres_server.drop_database(name)


async def test_unary_answer_bytes_are_the_canonical_encoding(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    """A granted answer is sent as its stored bytes with the receipt field appended: those
    bytes must be exactly what serializing the whole response would give."""
    async with channel(node, tls[JIAXING]) as ch:
        raw = await ch.unary_unary(f"/{STUB}/QueryCredit", request_serializer=wire.serialize)(
            query("canonical"), timeout=10
        )
    response = wire.parse_response(raw)
    assert response.HasField("result") and response.HasField("receipt")
    assert response.SerializeToString(deterministic=True) == raw
    with node.store.connect() as conn:
        stored = conn.execute(
            sa.select(t.log_answers.c.response).where(
                t.log_answers.c.requester == JIAXING, t.log_answers.c.request_id == "canonical"
            )
        ).scalar_one()
    assert raw.startswith(stored) and stored == wire.serialize(
        wire.spb.QueryCreditResponse(request_id="canonical", result=response.result)
    )
