"""The CreditInterchange servicer: wire message → domain call → wire message (DESIGN.md §6).

Queries are deserialized lazily from the bytes as received, because the request digest bound
into a signed result is the SHA-256 of exactly those bytes. Errors are raised as domain errors
and mapped by `node.services.status` (for a batch item, into that item's `error`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_status import rpc_status

from node import model, wire
from node.errors import CreditNodeError, Unauthenticated
from node.interchange import Answer, Interchange, Replay
from node.sequencer import Receipt, Sequencer
from node.services import status

SERVICE = "creditx.v1.CreditInterchange"
BATCH_WINDOW = 512  # batch items read ahead of the group being answered (flow control)
BATCH_GROUP = 256  # batch items answered together: one read, one log append

Context = Any  # grpc.aio.ServicerContext
Authenticate = Callable[[Context], str]  # the caller's node id from its verified certificate


@dataclasses.dataclass(frozen=True, slots=True)
class RawQuery:
    """A query as received: its bytes, parsed once on first use."""

    data: bytes
    _parsed: list[wire.pb.CreditQuery | CreditNodeError] = dataclasses.field(
        default_factory=list, compare=False, repr=False)

    def message(self) -> wire.pb.CreditQuery:
        if not self._parsed:
            try:
                self._parsed.append(wire.parse_query(self.data))
            except CreditNodeError as exc:
                self._parsed.append(exc)
        parsed = self._parsed[0]
        if isinstance(parsed, CreditNodeError):
            raise parsed
        return parsed

    def request_id(self) -> str:
        try:
            return self.message().request_id
        except CreditNodeError:
            return ""


def _parser(raw: RawQuery) -> Callable[[], model.CreditQuery]:
    def parse() -> model.CreditQuery:
        return wire.query_from_pb(raw.message())

    return parse


def answer_message(answer: Answer) -> wire.spb.QueryCreditResponse:
    """The response for an answer, without its receipt."""
    response = wire.spb.QueryCreditResponse(request_id=answer.request_id)
    if answer.envelope is not None:
        response.result.CopyFrom(wire.envelope_to_pb(answer.envelope))
    if answer.error is not None:
        response.error.CopyFrom(status.to_rpc_status(answer.error))
    return response


def encode_answer(answer: Answer) -> bytes:
    """The stored form of an answer (replayed for a repeated request id), without receipt."""
    return wire.serialize(answer_message(answer))


def _with_receipt(response: wire.spb.QueryCreditResponse, receipt: Receipt) -> None:
    response.receipt.CopyFrom(
        wire.receipt_to_pb(receipt.log_index, receipt.leaf_hash, receipt.checkpoint,
                           receipt.inclusion_proof)
    )


def _receipt_field(receipt: Receipt) -> bytes:
    """A QueryCreditResponse holding only `receipt`, serialized. Appended to a serialized
    response it sets that field: the protobuf encoding of two messages concatenated is the
    two merged, so the stored answer is sent as stored, without parsing it again."""
    return wire.serialize(wire.spb.QueryCreditResponse(receipt=wire.receipt_to_pb(
        receipt.log_index, receipt.leaf_hash, receipt.checkpoint, receipt.inclusion_proof)))


class InterchangeServicer:
    def __init__(
        self,
        interchange: Interchange,
        sequencer: Sequencer,
        authenticate: Authenticate,
        node_info: Callable[[], wire.pb.NodeInfo],
    ) -> None:
        self._interchange = interchange
        self._sequencer = sequencer
        self._authenticate = authenticate
        self._node_info = node_info

    def _response(
        self, request_id: str, outcome: Answer | Replay | BaseException
    ) -> wire.spb.QueryCreditResponse:
        """The wire response for one outcome. Whatever was logged — a grant or a refusal —
        carries its receipt; an outcome refused before logging (no request id) has none."""
        if isinstance(outcome, Replay):
            response = wire.parse_response(outcome.response)
            _with_receipt(response, self._sequencer.receipt_for(outcome.log_index))
        elif isinstance(outcome, Answer):
            response = (wire.parse_response(outcome.encoded) if outcome.encoded
                        else answer_message(outcome))
            if outcome.receipt is not None:
                _with_receipt(response, outcome.receipt)
        else:  # refused before anything could be logged, or the log failed
            response = wire.spb.QueryCreditResponse(
                request_id=request_id, error=status.to_rpc_status(outcome))
        return response

    async def QueryCredit(
        self, request: RawQuery, context: Context
    ) -> wire.spb.QueryCreditResponse | bytes:
        caller = self._authenticate(context)
        request_id = request.request_id()
        try:
            outcome = await self._interchange.answer(caller, request.data, _parser(request),
                                                     request_id)
        except CreditNodeError as exc:
            outcome = exc
        if isinstance(outcome, Answer) and outcome.error is None and outcome.encoded \
                and outcome.receipt is not None:
            # The common case, a granted answer: the stored bytes and the receipt's field.
            return outcome.encoded + _receipt_field(outcome.receipt)
        response = self._response(request_id, outcome)
        if response.HasField("error"):
            await context.abort_with_status(rpc_status.to_status(response.error))
        return response

    async def BatchQueryCredit(
        self, requests: AsyncIterator[RawQuery], context: Context
    ) -> AsyncIterator[wire.spb.QueryCreditResponse]:
        """Items are answered in groups (whatever has arrived, up to BATCH_GROUP): one read
        and one log append per group, while the next items keep arriving. Responses come back
        in request order; a refused item is answered in its own `error`."""
        caller = self._authenticate(context)
        incoming: asyncio.Queue[RawQuery | None] = asyncio.Queue(maxsize=BATCH_WINDOW)

        async def read() -> None:
            try:
                async for raw in requests:
                    await incoming.put(raw)
            finally:
                await incoming.put(None)

        reader = asyncio.create_task(read())
        try:
            finished = False
            while not finished:
                group: list[RawQuery] = []
                item = await incoming.get()
                while item is not None:
                    group.append(item)
                    if len(group) >= BATCH_GROUP or incoming.empty():
                        break
                    item = incoming.get_nowait()
                finished = item is None
                for response in await self._respond_many(caller, group):
                    yield response
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()

    async def _respond_many(
        self, caller: str, raws: list[RawQuery]
    ) -> list[wire.spb.QueryCreditResponse]:
        if not raws:
            return []
        items = [(raw.data, _parser(raw), raw.request_id()) for raw in raws]
        outcomes = await self._interchange.answer_many(caller, items)
        return [self._response(request_id, outcome)
                for (_, _, request_id), outcome in zip(items, outcomes, strict=True)]

    async def GetNodeInfo(self, request: Any, context: Context) -> wire.pb.NodeInfo:
        self._authenticate(context)
        return self._node_info()

    async def SubscribeRevocations(
        self, request: Any, context: Context
    ) -> AsyncIterator[wire.pb.Envelope]:
        self._authenticate(context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "revocation notices are not served by this node yet")
        yield wire.pb.Envelope()  # pragma: no cover - abort raises


def handler(servicer: InterchangeServicer) -> grpc.GenericRpcHandler:
    """Method handlers with a raw-bytes deserializer for the two query methods."""
    def raw(data: bytes) -> RawQuery:
        return RawQuery(data)

    def ser(message: Any) -> bytes:
        # A handler may return a response it already holds serialized.
        return message if isinstance(message, bytes) else bytes(message.SerializeToString())

    return grpc.method_handlers_generic_handler(SERVICE, {
        "QueryCredit": grpc.unary_unary_rpc_method_handler(
            servicer.QueryCredit, request_deserializer=raw, response_serializer=ser),
        "BatchQueryCredit": grpc.stream_stream_rpc_method_handler(
            servicer.BatchQueryCredit, request_deserializer=raw, response_serializer=ser),
        "GetNodeInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetNodeInfo,
            request_deserializer=wire.spb.GetNodeInfoRequest.FromString,
            response_serializer=ser),
        "SubscribeRevocations": grpc.unary_stream_rpc_method_handler(
            servicer.SubscribeRevocations,
            request_deserializer=wire.spb.SubscribeRevocationsRequest.FromString,
            response_serializer=ser),
    })


@functools.lru_cache(maxsize=1024)
def _fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER; cached, as a connection presents the same PEM on
    every call."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def caller_from_certificate(
    lookup: Callable[[str], str | None],
) -> Authenticate:
    """Authenticate by the SHA-256 fingerprint of the verified client certificate."""

    def authenticate(context: Context) -> str:
        auth = context.auth_context()
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            raise Unauthenticated("no client certificate: this service requires mutual TLS")
        fingerprint = _fingerprint(pems[0])
        node_id = lookup(fingerprint)
        if node_id is None:
            raise Unauthenticated(
                f"client certificate {fingerprint[:16]}… is not on any trust list this node holds"
            )
        return node_id

    return authenticate
