"""Following a peer's revocation notices, on the asking side (floor 5, DESIGN.md §6
`SubscribeRevocations`): each notice is checked (node.revocation.open_revocation_notice), logged
in our exchange log, then applied — the result we hold marked, the peer's cursor moved — so a
notice is never applied unlogged, and a restart resumes after the last one applied.

The log entry of an applied notice is an ExchangeRecord: direction ASKED (we subscribed),
requester us, responder the issuer, the zone and purpose we received the result under, request
id `revocation:<issuer>:<seq>`, decision GRANTED, reason `REVOCATION_APPLIED: <reason>`, and
`result_digest` the SHA-256 of the notice's payload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable

import grpc

from node import model, revocation, signing, wire
from node.answer.builder import pseudonymise
from node.clock import Clock
from node.errors import BadAnswer, BadSignature, PeerError, UntrustedKey
from node.log.sequencer import LogWrite, Sequencer
from node.peer_client import PeerClient
from node.store import Store

log = logging.getLogger(__name__)
SERVICE = "creditx.v1.CreditInterchange"
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
APPLIED = "REVOCATION_APPLIED"


class NoticeRejected(PeerError):
    """A notice failed its checks: nothing of it was applied, and the watch stops."""

    reason = "NOTICE_REJECTED"


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """One notice applied: whether we held the result, and our log entry of it."""

    notice: model.RevocationNotice
    held: bool
    log_index: int


class RevocationWatch:
    """Applies one peer's notices: `catch_up()` once, or `follow()` until cancelled."""

    def __init__(
        self,
        *,
        peer: str,
        client: PeerClient,
        local_node: str,
        store: Store,
        key_for: revocation.KeyLookup,
        sequencer: Sequencer,
        subject_key: Callable[[], bytes],
        clock: Clock,
        on_applied: Callable[[Applied], None] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        self.peer = peer
        self._client = client
        self._local = local_node
        self._store = store
        self._key_for = key_for
        self._sequencer = sequencer
        self._subject_key = subject_key
        self._clock = clock
        self._on_applied = on_applied
        self._retry_delays = retry_delays
        self._subscribe = client.channel.unary_stream(
            f"/{SERVICE}/SubscribeRevocations",
            request_serializer=wire.serialize,
            response_deserializer=wire.pb.Envelope.FromString,
        )
        self.applied = 0

    async def close(self) -> None:
        await self._client.close()

    async def catch_up(self) -> int:
        """Apply every notice the peer has for us now; returns how many were applied."""
        before = self.applied
        await self._pull(follow=False)
        return self.applied - before

    async def follow(self) -> None:
        """Apply notices as they come, reconnecting from the cursor when the stream drops."""
        failures = 0
        while True:
            try:
                await self._pull(follow=True)
                failures = 0
                await asyncio.sleep(self._retry_delays[0])  # the peer ended the stream
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                    log.warning("%s serves no revocation notices; not following it", self.peer)
                    return
                failures += 1
                delay = self._retry_delays[min(failures, len(self._retry_delays)) - 1]
                log.info(
                    "revocation notices of %s: %s; again in %.1f s",
                    self.peer,
                    exc.code().name,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _pull(self, *, follow: bool) -> None:
        after = await asyncio.to_thread(self._store.received.cursor, self.peer)
        call = self._subscribe(wire.spb.SubscribeRevocationsRequest(after_seq=after, follow=follow))
        async for message in call:
            envelope = wire.envelope_from_pb(message)
            try:
                notice = revocation.open_revocation_notice(
                    envelope,
                    issuer=self.peer,
                    audience=self._local,
                    after_seq=after,
                    key_for=self._key_for,
                )
            except (BadAnswer, BadSignature, UntrustedKey) as exc:
                raise NoticeRejected(
                    f"revocation notice after {after} from {self.peer} rejected: {exc.message}; "
                    "nothing of it was applied"
                ) from exc
            applied = await self._apply(notice, envelope)
            after = notice.seq
            self.applied += 1
            if self._on_applied is not None:
                self._on_applied(applied)

    async def _apply(self, notice: model.RevocationNotice, envelope: signing.Envelope) -> Applied:
        held = await asyncio.to_thread(self._store.received.get, self.peer, notice.result_id)
        record = model.ExchangeRecord(
            time=self._clock.now(),
            direction=model.Direction.ASKED,
            requester_node=self._local,
            responder_node=self.peer,
            zone=held.zone if held else "",
            purpose=held.purpose if held else "",
            subject=pseudonymise(notice.subject, self._subject_key()),
            request_id=f"revocation:{self.peer}:{notice.seq}",
            request_digest=b"",
            decision=model.Decision.GRANTED,
            reason=f"{APPLIED}: {notice.reason.name}"
            + (f" by {notice.superseded_by}" if notice.superseded_by else ""),
            result_id=notice.result_id,
            result_digest=hashlib.sha256(envelope.payload).digest(),
        )
        entry = wire.record_bytes(record)
        # Logged first: a crash before the mark applies it again on restart, logged twice;
        # never applied unlogged.
        receipt = await self._sequencer.append(lambda index: LogWrite(entry), lambda i, e: entry)
        marked = await asyncio.to_thread(
            self._store.received.apply_notice, notice, self._clock.now()
        )
        return Applied(notice, marked, receipt.log_index)
