"""The CreditInterchange servicer: wire message → domain call → wire message (DESIGN.md §6).

Queries reach the answerer (`node.answer.local`) as the bytes received, because the request
digest bound into a signed result is the SHA-256 of exactly those bytes; responses come back
serialized. A refused unary call ends with the refusal's status; a refused batch item is
answered in its own `error`. Other errors are raised as domain errors and mapped by
`node.services.status`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_status import rpc_status

from node import metrics, wire
from node.answer.local import OVER_RATE, Answerer, Reply
from node.errors import Unauthenticated
from node.policy import Membership

SERVICE = "creditx.v1.CreditInterchange"
BATCH_WINDOW = 512  # batch items read ahead of the group being answered (flow control)
BATCH_GROUP = 256  # batch items answered together: one read, one log append
BATCH_IN_FLIGHT = 2  # groups of one stream being answered at once
# Items of one caller read and not yet answered, over all its streams: a caller that sends
# without reading its replies holds at most this many (each at most the server's request size
# limit) and slows only itself.
CALLER_ITEMS_HELD = 2048
# A call refused over the caller's rate is answered this much later (a batch stream's group
# holding one is sent this much later, and reading waits with it): a caller flooding past
# its rate is held to its own pace instead of taking the server's time from the others.
OVER_RATE_DELAY_S = 0.25

# SubscribeRevocations reads this many of a caller's notices at a time, and a following
# stream looks for new ones this often.
NOTICES_PER_READ = 200
NOTICE_POLL_S = 0.1
_ANSWER_SECONDS = metrics.QUERY_SECONDS.labels("ANSWERED")

Context = Any  # grpc.aio.ServicerContext
Authenticate = Callable[[Context], str]  # the caller's node id from its verified certificate
# (audience, after seq, limit) -> [(seq, serialized envelope)]: node.store.revocations
Notices = Callable[[str, int, int], list[tuple[int, bytes]]]


class InterchangeServicer:
    def __init__(
        self,
        answerer: Answerer,
        authenticate: Authenticate,
        node_info: Callable[[], wire.pb.NodeInfo],
        membership: Callable[[str], Membership],
        *,
        caller_items_held: int = CALLER_ITEMS_HELD,
        over_rate_delay_s: float = OVER_RATE_DELAY_S,
        notices: Notices | None = None,
        notice_poll_s: float = NOTICE_POLL_S,
    ) -> None:
        self._answerer = answerer
        self._authenticate = authenticate
        self._node_info = node_info
        self._membership = membership  # the zones a caller and this node are in, by list
        self._caller_items_held = caller_items_held
        self._over_rate_delay_s = over_rate_delay_s
        self._notices = notices
        self._notice_poll_s = notice_poll_s
        self._held: dict[str, asyncio.Semaphore] = {}  # per caller: room for items read

    def items_held(self, caller: str) -> int:
        """Batch items of `caller` read and not yet answered."""
        room = self._held.get(caller)
        return 0 if room is None else self._caller_items_held - room._value

    async def QueryCredit(self, request: bytes, context: Context) -> bytes:
        caller = self._authenticate(context)
        with _ANSWER_SECONDS.time():
            [reply] = await self._answerer.answer(
                caller, [request], single=True, membership=self._membership(caller)
            )
        if reply.decision == OVER_RATE:
            await asyncio.sleep(self._over_rate_delay_s)
        if reply.refused:
            error = wire.parse_response(reply.data).error
            await context.abort_with_status(rpc_status.to_status(error))
        return reply.data

    async def BatchQueryCredit(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        """Items are answered in groups (whatever has arrived, up to BATCH_GROUP): one read
        and one log append per group, while the next items keep arriving, and while the
        replies of the group before go out (up to BATCH_IN_FLIGHT groups at once). Responses
        come back in request order; a refused item is answered in its own `error`."""
        caller = self._authenticate(context)
        held = self._held.setdefault(caller, asyncio.Semaphore(self._caller_items_held))
        taken = 0  # items of this stream counted in `held`
        incoming: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=BATCH_WINDOW)
        # The groups being answered, oldest first; None after the last.
        answering: asyncio.Queue[asyncio.Future[list[Reply]] | None] = asyncio.Queue()
        room = asyncio.Semaphore(BATCH_IN_FLIGHT)

        async def read() -> None:
            nonlocal taken
            items = aiter(requests)
            try:
                while True:
                    await held.acquire()  # the caller's room, taken before the item is read
                    taken += 1
                    try:
                        raw = await anext(items)
                    except StopAsyncIteration:
                        taken -= 1
                        held.release()
                        break
                    await incoming.put(raw)
            finally:
                await incoming.put(None)

        async def group() -> None:
            try:
                finished = False
                while not finished:
                    await room.acquire()
                    items: list[bytes] = []
                    item = await incoming.get()
                    while item is not None:
                        items.append(item)
                        if len(items) >= BATCH_GROUP or incoming.empty():
                            break
                        item = incoming.get_nowait()
                    finished = item is None
                    if items:
                        answering.put_nowait(
                            asyncio.ensure_future(self._answer_group(caller, items))
                        )
            finally:
                answering.put_nowait(None)

        reader = asyncio.create_task(read())
        grouper = asyncio.create_task(group())
        try:
            while (replies := await answering.get()) is not None:
                answered = await replies
                if any(reply.decision == OVER_RATE for reply in answered):
                    await asyncio.sleep(self._over_rate_delay_s)
                for reply in answered:
                    yield reply.data
                    taken -= 1
                    held.release()
                room.release()
            await grouper  # surfaces a failure to answer
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            grouper.cancel()
            for _ in range(taken):  # read but never answered: the stream ended early
                held.release()
            taken = 0
            while not answering.empty():
                left = answering.get_nowait()
                if left is not None:
                    left.cancel()

    async def _answer_group(self, caller: str, items: list[bytes]) -> list[Reply]:
        with _ANSWER_SECONDS.time():
            return await self._answerer.answer(
                caller, items, single=False, membership=self._membership(caller)
            )

    async def GetNodeInfo(self, request: Any, context: Context) -> wire.pb.NodeInfo:
        self._authenticate(context)
        return self._node_info()

    async def SubscribeRevocations(
        self, request: wire.spb.SubscribeRevocationsRequest, context: Context
    ) -> AsyncIterator[wire.pb.Envelope]:
        """The caller's revocation notices after `after_seq`, in order; with `follow`, new
        ones as they are written (node.revocation.Notifier)."""
        caller = self._authenticate(context)
        notices = self._notices
        if notices is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "revocation notices are not served by this node"
            )
            return
        after = request.after_seq
        while True:
            found = await asyncio.to_thread(notices, caller, after, NOTICES_PER_READ)
            for seq, data in found:
                yield wire.pb.Envelope.FromString(data)
                after = seq
            if not found:
                if not request.follow:
                    return
                await asyncio.sleep(self._notice_poll_s)


def methods(servicer: InterchangeServicer) -> dict[str, grpc.RpcMethodHandler]:
    """Method handlers; the two query methods take their requests as the bytes received (no
    deserializer)."""

    def ser(message: Any) -> bytes:
        # A handler may return a response it already holds serialized.
        return message if isinstance(message, bytes) else bytes(message.SerializeToString())

    return {
        "QueryCredit": grpc.unary_unary_rpc_method_handler(
            servicer.QueryCredit, response_serializer=ser
        ),
        "BatchQueryCredit": grpc.stream_stream_rpc_method_handler(
            servicer.BatchQueryCredit, response_serializer=ser
        ),
        "GetNodeInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetNodeInfo,
            request_deserializer=wire.spb.GetNodeInfoRequest.FromString,
            response_serializer=ser,
        ),
        "SubscribeRevocations": grpc.unary_stream_rpc_method_handler(
            servicer.SubscribeRevocations,
            request_deserializer=wire.spb.SubscribeRevocationsRequest.FromString,
            response_serializer=ser,
        ),
    }


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
