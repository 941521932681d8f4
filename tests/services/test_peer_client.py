"""PeerClient against a real node over mutual TLS: verified answers, rejections with why."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import grpc
import pytest

from devtools.ports import free_port
from node import model, signing, wire
from node.errors import BadAnswer, BadSignature, PeerUnavailable, UntrustedKey
from node.peer_client import KeyLookup, PeerClient, verify_answer
from tests.pki import NodeTls
from tests.services.interchange_node import (
    COMPANY,
    HUZHOU,
    JIAXING,
    Node,
)


@dataclasses.dataclass(frozen=True)
class Key:
    """A peer key as a trust list gives it: the key and its validity window."""

    key: signing.VerificationKey
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def verification_key(self) -> signing.VerificationKey:
        return self.key

    def valid_at(self, at: dt.datetime) -> bool:
        return self.not_before <= at < self.not_after


def keys_of(
    node: Node, not_after: dt.datetime = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
) -> KeyLookup:
    def key_for(peer: str, keyid: str) -> Key:
        if peer == HUZHOU and keyid == node.signer.keyid:
            return Key(
                node.signer.verification_key(), dt.datetime(2000, 1, 1, tzinfo=dt.UTC), not_after
            )
        raise UntrustedKey(f"{keyid} is not a key of {peer}")

    return key_for


def client_for(node: Node, me: NodeTls, endpoint: str | None = None) -> PeerClient:
    key_for = keys_of(node)

    return PeerClient(
        local_node=me.node_id,
        peer=HUZHOU,
        endpoint=endpoint or node.server.target,
        key_pem=me.key_pem,
        cert_pem=me.cert_pem,
        peer_cert_pem=node.tls.cert_pem,
        key_for=key_for,
        deadline=5,
        attempts=2,
    )


def q(request_id: str) -> model.CreditQuery:
    return model.CreditQuery(
        request_id, model.SubjectRef(model.SubjectIdType.USCC, COMPANY), "hjjw", "xinyi-dai"
    )


async def test_query_returns_verified_result(node: Node, tls: dict[str, NodeTls]) -> None:
    client = client_for(node, tls[JIAXING])
    try:
        answer = await client.query(q("pc-1"))
    finally:
        await client.close()
    assert answer.result.subject.id == COMPANY
    assert answer.result.audience_node == JIAXING
    assert answer.signed_by == node.signer.keyid


async def test_refusal_surfaces_as_grpc_error(node: Node, tls: dict[str, NodeTls]) -> None:
    client = client_for(node, tls[JIAXING])
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.query(dataclasses.replace(q("pc-2"), purpose="joint-sanction"))
    finally:
        await client.close()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_peer_down_is_unavailable_after_retries(tls: dict[str, NodeTls]) -> None:
    port = free_port()  # nothing listens there
    me = tls[JIAXING]
    client = PeerClient(
        local_node=JIAXING,
        peer=HUZHOU,
        endpoint=f"127.0.0.1:{port}",
        key_pem=me.key_pem,
        cert_pem=me.cert_pem,
        peer_cert_pem=tls[HUZHOU].cert_pem,
        key_for=lambda peer, keyid: (_ for _ in ()).throw(UntrustedKey(keyid)),
        deadline=2,
        attempts=2,
    )
    try:
        with pytest.raises(PeerUnavailable, match="unavailable after 2 attempts"):
            await client.query(q("pc-3"))
    finally:
        await client.close()


async def test_tampered_or_misbound_answers_are_rejected_with_why(
    node: Node, tls: dict[str, NodeTls]
) -> None:
    client = client_for(node, tls[JIAXING])
    try:
        good = await client.query(q("pc-4"))
    finally:
        await client.close()
    sent = wire.serialize(wire.query_to_pb(q("pc-4")))
    response = wire.spb.QueryCreditResponse(result=wire.envelope_to_pb(good.envelope))

    verify = functools.partial(
        verify_answer, peer=HUZHOU, sent=sent, request_id="pc-4", key_for=keys_of(node)
    )
    verify(response, local_node=JIAXING)
    with pytest.raises(BadAnswer, match="addressed to cn-330400, not to us"):
        verify(response, local_node="cn-330100")
    with pytest.raises(BadAnswer, match="answers request 'pc-4', we sent 'other'"):
        verify(response, local_node=JIAXING, request_id="other")
    with pytest.raises(BadAnswer, match="digest"):
        verify(response, local_node=JIAXING, sent=sent + b"x")
    tampered = wire.spb.QueryCreditResponse()
    tampered.CopyFrom(response)
    flipped = bytearray(tampered.result.payload)
    flipped[len(flipped) // 2] ^= 0x01
    tampered.result.payload = bytes(flipped)
    with pytest.raises(BadSignature):
        verify(tampered, local_node=JIAXING)
    # A key that had expired before the result was issued does not count.
    with pytest.raises(UntrustedKey, match="was not valid when the result was issued"):
        verify(
            response,
            local_node=JIAXING,
            key_for=keys_of(node, not_after=dt.datetime(2001, 1, 1, tzinfo=dt.UTC)),
        )
    # A key the trust list does not hold for that peer.
    with pytest.raises(UntrustedKey):
        verify(
            response,
            local_node=JIAXING,
            key_for=lambda p, k: (_ for _ in ()).throw(UntrustedKey(k)),
        )
