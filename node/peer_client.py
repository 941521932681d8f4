"""Asking a peer node (floor 5): mutual TLS, deadlines, retries on UNAVAILABLE only, and
verification of every answer before anyone sees it (DESIGN.md §3-§6).

A peer that ends the TLS handshake over our certificate (its trust list does not hold it)
looks to grpc like one that is down; the first such failure is put to the peer itself
(node.tls_probe), and a refusal is raised at once as PeerRefusesCertificate, not retried.

An answer is accepted only when (1) its envelope is signed by a key of that peer that was
valid when the result was issued, (2) the result is addressed to us, and (3) it answers our
request id with the digest of the query bytes we sent. Anything else is a `BadAnswer` (or the
signature error) that says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc
from grpc_status import rpc_status

from node import error_status, model, signing, tls, wire
from node.errors import BadAnswer, PeerRefusesCertificate, PeerUnavailable, UntrustedKey
from node.log import merkle, notes
from node.tls_probe import Verdict, probe_client_certificate

SERVICE = "creditx.v1.CreditInterchange"


# A log entry of a peer is one GetEntries message. Entries are small since queries are bounded
# (DESIGN.md §6), but a log written before that may hold entries of several MiB; gRPC's
# default limit of 4 MiB would make such a log unreadable.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class PeerKey(Protocol):
    """A peer's signing key from a trust list (node.trust.PublicKeyInfo fits)."""

    @property
    def verification_key(self) -> signing.VerificationKey: ...

    def valid_at(self, at: dt.datetime) -> bool: ...


KeyLookup = Callable[[str, str], PeerKey]  # (peer node id, keyid); raises UntrustedKey


def verify_receipt(receipt: wire.pb.LogReceipt, log_verifier_key: str, peer: str) -> int:
    """Check a peer's log receipt: its checkpoint is signed by the peer's log key and the
    inclusion proof puts the leaf in that tree. Returns the checkpoint's tree size."""
    if not receipt.checkpoint:
        raise BadAnswer(f"{peer} sent no log receipt")
    verifier = notes.NoteVerifier.from_text(log_verifier_key)
    checkpoint = notes.open_checkpoint(receipt.checkpoint, verifier).checkpoint
    if checkpoint.origin != notes.log_origin(peer):
        raise BadAnswer(f"receipt checkpoint is of log {checkpoint.origin}, not {peer}'s")
    merkle.verify_inclusion(
        receipt.log_index,
        checkpoint.size,
        receipt.leaf_hash,
        list(receipt.inclusion_proof),
        checkpoint.root_hash,
    )
    return checkpoint.size


def refusal_reason(exc: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason a peer attached to its refusal, if any."""
    found = rpc_status.from_call(exc)
    info = error_status.error_info(found) if found is not None else None
    return info.reason if info is not None else "UNKNOWN"


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedAnswer:
    result: model.CreditResult
    envelope: signing.Envelope
    receipt: wire.pb.LogReceipt
    signed_by: str


def verify_answer(
    response: wire.spb.QueryCreditResponse,
    *,
    peer: str,
    local_node: str,
    sent: bytes,
    request_id: str,
    key_for: KeyLookup,
) -> VerifiedAnswer:
    """Check one answer against what we asked; raise BadAnswer/BadSignature/UntrustedKey."""
    if not response.HasField("result"):
        raise BadAnswer(f"{peer} sent no result for request {request_id}")
    envelope = wire.envelope_from_pb(response.result)
    result, keyid = verify_issued_result(
        envelope, peer=peer, local_node=local_node, key_for=key_for
    )
    # 3. Bound to our request.
    if result.request_id != request_id:
        raise BadAnswer(f"result answers request {result.request_id!r}, we sent {request_id!r}")
    if result.request_digest != hashlib.sha256(sent).digest():
        raise BadAnswer("result's request digest is not the digest of the query we sent")
    return VerifiedAnswer(result, envelope, response.receipt, keyid)


def verify_issued_result(
    envelope: signing.Envelope, *, peer: str, local_node: str, key_for: KeyLookup
) -> tuple[model.CreditResult, str]:
    """Steps 1-2 of an answer's checks, which need nothing but the envelope and the peer's
    keys (so a kept result verifies again offline): the result and the keyid that signed it."""
    if envelope.payload_type != signing.PAYLOAD_CREDIT_RESULT:
        raise BadAnswer(f"{peer} sent a {envelope.payload_type!r}, not a credit result")
    # 1. Signature by a key of that peer over the bytes received; only then is the payload
    #    decoded (DESIGN.md §4), and the key must have been valid when the result was issued.
    known: dict[str, PeerKey] = {}
    for sig in envelope.signatures:
        with contextlib.suppress(UntrustedKey):
            known[sig.keyid] = key_for(peer, sig.keyid)
    verified = signing.verify_envelope(
        envelope,
        payload_type=signing.PAYLOAD_CREDIT_RESULT,
        keys={keyid: key.verification_key for keyid, key in known.items()},
    )
    result = wire.result_from_bytes(verified.payload)
    if result.issued_at is None or not known[verified.keyid].valid_at(result.issued_at):
        raise UntrustedKey(
            f"key {verified.keyid[:16]}… of {peer} was not valid when the result was issued "
            f"({result.issued_at})"
        )
    # 2. Issued by that peer, to us.
    if result.issuer_node != peer:
        raise BadAnswer(f"result issued by {result.issuer_node}, but we asked {peer}")
    if result.audience_node != local_node:
        raise BadAnswer(f"result is addressed to {result.audience_node}, not to us ({local_node})")
    return result, verified.keyid


class PeerClient:
    """One peer, over one mutual-TLS channel."""

    def __init__(
        self,
        *,
        local_node: str,
        peer: str,
        endpoint: str,
        key_pem: bytes,
        cert_pem: bytes,
        peer_cert_pem: bytes,
        key_for: KeyLookup,
        deadline: float = 10.0,
        attempts: int = 4,
        node_infos: dict[str, wire.pb.NodeInfo] | None = None,
        zones: Sequence[str] = (),
    ) -> None:
        """`zones`: the zones on whose lists we found the peer (named when it refuses us)."""
        self.local_node, self.peer = local_node, peer
        self._endpoint, self._zones = endpoint, tuple(zones)
        self._tls = (key_pem, cert_pem, peer_cert_pem)
        self._verdict: Verdict | None = None  # of the probe, once made
        self._node_infos = node_infos
        self._channel = grpc.aio.secure_channel(
            endpoint,
            tls.channel_credentials(key_pem, cert_pem, peer_cert_pem),
            options=[("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)],
        )
        self._key_for = key_for
        self.last_response: wire.spb.QueryCreditResponse | None = None
        self._deadline = deadline
        self._attempts = attempts
        self._query = self._channel.unary_unary(
            f"/{SERVICE}/QueryCredit",
            request_serializer=bytes,
            response_deserializer=wire.spb.QueryCreditResponse.FromString,
        )

    @property
    def channel(self) -> grpc.aio.Channel:
        """The mutual-TLS channel to the peer, for its other services (the exchange log)."""
        return self._channel

    async def node_info(self) -> wire.pb.NodeInfo:
        """The peer's NodeInfo (its log and witness keys). With `node_infos`, fetched once per
        peer over the authenticated channel and kept there: nodes rotate only result-signing
        keys, which come from the trust list, never from here."""
        kept = self._node_infos.get(self.peer) if self._node_infos is not None else None
        if kept is not None:
            return kept
        try:
            info: wire.pb.NodeInfo = await self._channel.unary_unary(
                f"/{SERVICE}/GetNodeInfo",
                request_serializer=wire.serialize,
                response_deserializer=wire.pb.NodeInfo.FromString,
            )(wire.spb.GetNodeInfoRequest(), timeout=self._deadline)
        except grpc.aio.AioRpcError as exc:
            refused = await self.refusal_of(exc)
            if refused is not None:
                raise refused from None
            raise
        if info.node_id != self.peer:
            raise BadAnswer(f"the node at this endpoint says it is {info.node_id}, not {self.peer}")
        if self._node_infos is not None:
            self._node_infos[self.peer] = info
        return info

    async def close(self) -> None:
        await self._channel.close()

    async def query(self, query: model.CreditQuery) -> VerifiedAnswer:
        sent = wire.serialize(wire.query_to_pb(query))
        response = await self._call_with_retries(sent)
        self.last_response = response
        return verify_answer(
            response,
            peer=self.peer,
            local_node=self.local_node,
            sent=sent,
            request_id=query.request_id,
            key_for=self._key_for,
        )

    async def _call_with_retries(self, sent: bytes) -> wire.spb.QueryCreditResponse:
        delay = 0.2
        for attempt in range(1, self._attempts + 1):
            try:
                response: wire.spb.QueryCreditResponse = await self._query(
                    sent, timeout=self._deadline
                )
                return response
            except grpc.aio.AioRpcError as exc:
                refused = await self.refusal_of(exc) if attempt == 1 else None
                if refused is not None:
                    raise refused from None  # asking again would be refused again
                # Only UNAVAILABLE is worth repeating: the same request id is idempotent there.
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self._attempts:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        raise PeerUnavailable(
                            f"{self.peer} is unavailable after {attempt} attempts: {exc.details()}"
                        ) from None
                    raise
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay *= 2
        raise AssertionError("unreachable")

    async def refusal_of(self, exc: grpc.aio.AioRpcError) -> PeerRefusesCertificate | None:
        """The refusal of our certificate behind a call that failed UNAVAILABLE before the
        peer's server answered it (no status details), once the peer confirmed it
        (node.tls_probe); None for any other failure. The peer is probed once per client."""
        if exc.code() != grpc.StatusCode.UNAVAILABLE or rpc_status.from_call(exc) is not None:
            return None
        if self._verdict is None:
            self._verdict = await probe_client_certificate(self._endpoint, *self._tls)
        if self._verdict is not Verdict.REFUSED:
            return None
        return PeerRefusesCertificate(self.refused_message())

    def refused_message(self) -> str:
        zones = self._zones
        question = (
            f"is its trust list for {zones[0]} current?"
            if len(zones) == 1
            else f"are its trust lists for {', '.join(zones)} current?"
            if zones
            else "is its trust list current?"
        )
        cert_pem = self._tls[1]
        return (
            f"{self.peer} does not accept this node's certificate ({question}); it ended the "
            f"TLS handshake over ours, {tls.certificate_subject(cert_pem)} SHA-256 "
            f"{tls.cert_sha256(cert_pem)}"
        )
