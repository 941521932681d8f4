"""The reference Green Loan Link sync job (floor 5): pull a node's changefeed into a sink.

Each received batch is checked (node.changefeed.open_change_batch: signature, addressee,
continuity) and applied with the cursor in one transaction (node.greenloan_sink); the next
call resumes after the cursor. A batch that fails a check stops the job with `FeedRejected`
and is never applied; a connection that drops is retried from the cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence

import grpc

from node import changefeed, model, signing, wire
from node.clock import Clock
from node.errors import BadAnswer, BadSignature, PeerError, PeerUnavailable, UntrustedKey
from node.greenloan_sink import GreenLoanSink
from node.services.greenloan import FEED_HEAD_METADATA, SERVICE

RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # then 5 s between attempts


class FeedRejected(PeerError):
    """A batch failed verification: tampered, reordered, gapped, replayed or mis-addressed."""

    reason = "FEED_REJECTED"


@dataclasses.dataclass(frozen=True, slots=True)
class SyncProgress:
    """Where the job stands: the cursor, the feed's head as last known, and what it applied."""

    cursor: int
    head: int
    batches: int
    upserted: int
    revoked: int

    @property
    def lag(self) -> int:
        """Changes behind the head (0 when caught up)."""
        return max(0, self.head - self.cursor)


Progress = Callable[[SyncProgress], None]


class SyncJob:
    """One source node's feed into one sink, as `audience` (our node id on the source's list)."""

    def __init__(
        self,
        *,
        channel: grpc.aio.Channel,
        source: str,
        audience: str,
        key_for: changefeed.KeyLookup,
        sink: GreenLoanSink,
        clock: Clock,
        subject_types: Sequence[model.SubjectType] = (),
        max_batch: int = 0,
        progress: Progress | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self._sync = channel.unary_stream(
            f"/{SERVICE}/SyncChanges",
            request_serializer=wire.serialize,
            response_deserializer=wire.pb.Envelope.FromString,
        )
        self._source, self._audience, self._key_for = source, audience, key_for
        self._sink, self._clock = sink, clock
        self._subject_types = tuple(subject_types)
        self._max_batch = max_batch
        self._progress = progress
        self._retry_delays = tuple(retry_delays)
        self._state = SyncProgress(0, 0, 0, 0, 0)

    @property
    def state(self) -> SyncProgress:
        return self._state

    async def run(self, *, follow: bool = False, attempts: int | None = None) -> SyncProgress:
        """Pull until caught up (or, with `follow`, until cancelled). A dropped connection is
        retried from the cursor: forever when following, else `attempts` times (default: the
        retry schedule's length). Raises FeedRejected on a bad batch, PeerUnavailable when the
        source stays unreachable, or the source's refusal (e.g. PERMISSION_DENIED)."""
        cursor = await asyncio.to_thread(self._sink.cursor, self._source)
        self._state = dataclasses.replace(self._state, cursor=cursor, head=cursor)
        limit = len(self._retry_delays) if attempts is None else attempts
        failures = 0
        while True:
            try:
                await self._pull(follow)
                return self._state
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    raise
                failures += 1
                if not follow and failures > limit:
                    raise PeerUnavailable(
                        f"{self._source} is unreachable ({exc.code().name}: {exc.details()}); "
                        f"the sink stays at seq {self._state.cursor}, run the job again"
                    ) from None
                delay = self._retry_delays[min(failures, len(self._retry_delays)) - 1]
                await asyncio.sleep(delay)

    async def _pull(self, follow: bool) -> None:
        request = wire.sync_request(
            self._state.cursor, self._max_batch, self._subject_types, follow
        )
        call = self._sync(request)
        for key, value in await call.initial_metadata() or ():
            if key == FEED_HEAD_METADATA and value.isdigit():
                self._state = dataclasses.replace(self._state, head=int(value))
        self._report()
        checked = self._state.cursor  # the last seq of the batches checked so far
        applying: asyncio.Task[None] | None = None
        try:
            async for message in call:
                batch = await asyncio.to_thread(
                    self._check, wire.envelope_from_pb(message), checked
                )
                checked = batch.last_seq
                if applying is not None:
                    task, applying = applying, None
                    await task
                # A batch is written while the next one is checked: the sink's commit (an
                # fsync) and the checking overlap. Batches are still applied one by one, in
                # order, each only once the one before it committed.
                applying = asyncio.create_task(self._apply(batch))
            if applying is not None:
                task, applying = applying, None
                await task
        finally:
            if applying is not None:
                # A later batch failed its check, or the stream broke, while this (checked)
                # one was being written: let it finish, so the state says where the sink is.
                with contextlib.suppress(Exception):
                    await applying

    def _check(self, envelope: signing.Envelope, after_seq: int) -> model.ChangeBatch:
        try:
            return changefeed.open_change_batch(
                envelope,
                issuer=self._source,
                audience=self._audience,
                after_seq=after_seq,
                key_for=self._key_for,
            )
        except (BadAnswer, BadSignature, UntrustedKey) as exc:
            raise FeedRejected(
                f"batch after seq {after_seq} from {self._source} rejected: {exc.message}; "
                f"nothing of it was applied (the sink stays at seq {after_seq})"
            ) from exc

    async def _apply(self, batch: model.ChangeBatch) -> None:
        applied = await asyncio.to_thread(self._sink.apply, batch, self._source, self._clock.now())
        state = self._state
        self._state = SyncProgress(
            cursor=applied.last_seq,
            head=max(state.head, applied.last_seq),
            batches=state.batches + 1,
            upserted=state.upserted + applied.upserted,
            revoked=state.revoked + applied.revoked,
        )
        self._report()

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self._state)
