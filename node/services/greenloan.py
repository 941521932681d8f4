"""The GreenLoanSync servicer (DESIGN.md §6): the signed, resumable changefeed of results.

Thin: request → scope (node.changefeed.feed_scope) → journal reads (node.store.changes) →
signed batches. Each batch is built off the event loop. The stream starts with the feed's head
in its initial metadata (`creditx-feed-head`) so a consumer can show how far behind it is;
with `follow` it then stays open, polling the journal for changes committed by any process on
the database (an import runs in its own process).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from node import changefeed, metrics, model, signing, wire
from node.clock import Clock
from node.errors import InvalidInput
from node.store.changes import ChangeRepository

SERVICE = "creditx.v1.GreenLoanSync"
FEED_HEAD_METADATA = "creditx-feed-head"
FOLLOW_POLL_S = 0.1  # how often a following stream looks for new changes

Context = Any  # grpc.aio.ServicerContext
Authenticate = Callable[[Context], str]
ScopeOf = Callable[[str, Sequence[model.SubjectType]], changefeed.FeedScope]


class GreenLoanSyncServicer:
    def __init__(
        self,
        changes: ChangeRepository,
        node_id: str,
        signer: Callable[[], signing.Signer],
        authenticate: Authenticate,
        scope_of: ScopeOf,
        clock: Clock,
        *,
        poll_s: float = FOLLOW_POLL_S,
    ) -> None:
        self._changes = changes
        self._node_id = node_id
        self._signer = signer
        self._authenticate = authenticate
        self._scope_of = scope_of
        self._clock = clock
        self._poll_s = poll_s

    async def SyncChanges(
        self, request: wire.spb.SyncRequest, context: Context
    ) -> AsyncIterator[wire.pb.Envelope]:
        caller = self._authenticate(context)
        scope = self._scope_of(caller, changefeed.subject_types_from(request.subject_types))
        limit = min(request.max_batch or changefeed.DEFAULT_BATCH, changefeed.MAX_BATCH)
        after = request.after_seq
        head = await asyncio.to_thread(self._changes.head)
        if after > head:
            raise InvalidInput(
                f"after_seq {after} is beyond this feed's last change {head}: the cursor is "
                "not from this node's feed (restored from elsewhere?)",
                reason="CURSOR_AHEAD_OF_FEED",
            )
        await context.send_initial_metadata(((FEED_HEAD_METADATA, str(head)),))
        metrics.CHANGEFEED_HEAD.set(head)
        metrics.CHANGEFEED_CONSUMER_SEQ.labels(caller).set(after)
        # The next batch is built while this one is sent: reading, trimming and signing and
        # the client's receiving overlap instead of taking turns.
        building = self._build(after, limit, scope)
        try:
            while True:
                built = await building
                if built is None:
                    if not request.follow:
                        return
                    await asyncio.sleep(self._poll_s)
                    building = self._build(after, limit, scope)
                    continue
                envelope, after = built
                building = self._build(after, limit, scope)
                yield envelope
                metrics.CHANGEFEED_CONSUMER_SEQ.labels(caller).set(after)
        finally:
            building.cancel()

    def _build(
        self, after: int, limit: int, scope: changefeed.FeedScope
    ) -> asyncio.Task[tuple[wire.pb.Envelope, int] | None]:
        return asyncio.create_task(asyncio.to_thread(self._next_batch, after, limit, scope))

    def _next_batch(
        self, after: int, limit: int, scope: changefeed.FeedScope
    ) -> tuple[wire.pb.Envelope, int] | None:
        """The signed batch of the changes after `after` (None when there are none yet), and
        the last seq it covers."""
        entries = self._changes.read(after, limit)
        if not entries:
            return None
        last = entries[-1].seq
        envelope = changefeed.sign_batch(
            changefeed.select_changes(entries, scope),
            first_seq=after + 1,
            last_seq=last,
            issuer=self._node_id,
            audience=scope.audience,
            now=self._clock.now(),
            signer=self._signer(),
        )
        return wire.envelope_to_pb(envelope), last


def methods(servicer: GreenLoanSyncServicer) -> dict[str, grpc.RpcMethodHandler]:
    def ser(message: Any) -> bytes:
        return bytes(message.SerializeToString())

    return {
        "SyncChanges": grpc.unary_stream_rpc_method_handler(
            servicer.SyncChanges,
            request_deserializer=wire.spb.SyncRequest.FromString,
            response_serializer=ser,
        )
    }
