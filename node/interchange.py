"""Answering a peer's credit query (DESIGN.md §6-§7): policy, lookup, signing, logging.

`Interchange.answer` hands each query to the sequencer, which reads the stored answer and the
subject's current result, decides, builds the signed result for the log index it reserves, and
commits, all in one transaction for the whole batch; the answer returns only after the exchange
record is durable. Every outcome — granted, refused, not found — is one log entry (a build
that fails leaves a FAILED one); a repeated (requester, request id) gets the stored answer and
is not logged again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

import sqlalchemy as sa

from node import model, signing, wire
from node import policy as policies
from node.errors import CreditNodeError, NotFound, PermissionDenied
from node.sequencer import LogWrite, Receipt, Sequencer, Slot

StoredAnswer = tuple[int, bytes]  # (log index, stored wire answer)
Read = tuple[str, str, model.SubjectRef | None]  # (requester, request id, subject)
ReadResult = tuple[StoredAnswer | None, model.CreditResult | None]


class ResultSource(Protocol):
    """Where current results come from (the store); called by the sequencer, inside the
    transaction that logs the answers."""

    def read_many(self, conn: sa.Connection, reads: Sequence[Read]) -> list[ReadResult]:
        """For each read: the stored answer to that request id, and the subject's current
        result (None where there is none)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What goes back to the caller: the signed result, or the refusal, and its receipt."""

    request_id: str
    envelope: signing.Envelope | None
    receipt: Receipt | None
    error: CreditNodeError | None = None
    encoded: bytes = b""  # the stored wire form (without receipt), as logged beside the entry


@dataclasses.dataclass(frozen=True, slots=True)
class Replay:
    """The stored wire answer to a repeated request id, and where it was logged."""

    log_index: int
    response: bytes


def pseudonymise(subject: model.SubjectRef, key: bytes) -> model.SubjectRef:
    """DESIGN.md §5: a resident id never enters the log in clear."""
    if subject.id_type is not model.SubjectIdType.RESIDENT_ID or subject.is_pseudonymous:
        return subject
    digest = hmac.new(key, subject.id.encode("ascii"), hashlib.sha256).hexdigest()
    return model.SubjectRef(subject.id_type, model.HMAC_SUBJECT_PREFIX + digest)


_REDACTED_CACHE_SIZE = 65536
Encode = Callable[[Answer], bytes]  # the wire form kept for replaying a repeated request id


class Interchange:
    def __init__(
        self,
        *,
        node_id: str,
        policy: policies.Policy,
        results: ResultSource,
        signer: Callable[[], signing.Signer],
        sequencer: Sequencer,
        subject_key: bytes,
        encode: Encode,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.policy = policy
        self._results = results
        self._signer = signer
        self._sequencer = sequencer
        self._subject_key = subject_key
        self._encode = encode
        self._clock = clock
        self._monotonic = monotonic
        self._limiter = policies.RateLimiter()
        self._in_flight: dict[tuple[str, str], asyncio.Future[Answer | Replay]] = {}
        self._redacted_cache: dict[tuple[str, int], tuple[policies.PurposeRule, Any]] = {}

    async def answer(
        self, caller: str, raw_query: bytes, parse: Callable[[], model.CreditQuery],
        request_id: str, *, zones: AbstractSet[str] | None = None,
    ) -> Answer | Replay:
        """Answer one query, or return the stored wire answer of a repeated request id.

        `raw_query` is the CreditQuery exactly as received (its SHA-256 is the request digest);
        `parse` turns it into the domain query, raising InvalidInput when it is malformed.
        """
        if not request_id:  # malformed: nothing to share with a concurrent twin
            return await self._answer(caller, raw_query, parse, request_id, zones)
        key = (caller, request_id)
        running = self._in_flight.get(key)
        if running is not None:  # the same request id is being answered right now
            return await asyncio.shield(running)
        future: asyncio.Future[Answer | Replay] = self._sequencer.loop.create_future()
        self._in_flight[key] = future
        try:
            outcome = await self._answer(caller, raw_query, parse, request_id, zones)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter may not exist
            raise
        else:
            future.set_result(outcome)
            return outcome
        finally:
            del self._in_flight[key]

    async def _answer(
        self, caller: str, raw_query: bytes, parse: Callable[[], model.CreditQuery],
        request_id: str, zones: AbstractSet[str] | None,
    ) -> Answer | Replay:
        [outcome] = await self.answer_many(caller, [(raw_query, parse, request_id)],
                                           zones=zones)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def answer_many(
        self, caller: str, items: Sequence[tuple[bytes, Callable[[], model.CreditQuery], str]],
        *, zones: AbstractSet[str] | None = None,
    ) -> list[Answer | Replay | BaseException]:
        """Answer a group of one caller's queries (a batch stream, or one query): one log
        append for all. Each item's outcome stands in its place; none ends the others.

        A request id repeated inside the group is answered once and replayed for the repeats.
        `zones`: the zones whose current trust list holds the caller (the server looks them
        up); None leaves the trust lists out of the decision.
        """
        outcomes: list[Answer | Replay | BaseException | None] = [None] * len(items)
        first_of: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []
        positions: list[int] = []
        writes = []
        slots: list[Slot] = []
        for position, (raw, parse, request_id) in enumerate(items):
            if request_id and request_id in first_of:
                repeats.append((position, first_of[request_id]))
                continue
            if request_id:
                first_of[request_id] = position
            query, refusal = _parsed(parse)
            slot = Slot((caller, request_id, query.subject if query is not None else None),
                        self._read)
            item = _Item(caller, raw, request_id, query, refusal, zones, slot)
            positions.append(position)
            slots.append(slot)
            writes.append(self._writer(item))
        logged = await self._sequencer.append_many(
            [(w.build, w.failed) for w in writes], slots)
        for position, write, receipt in zip(positions, writes, logged, strict=True):
            outcomes[position] = self._settled(write, receipt)
        for position, first in repeats:
            outcomes[position] = outcomes[first]
        return [o if o is not None else RuntimeError("unanswered") for o in outcomes]

    def _read(self, conn: sa.Connection, slots: Sequence[Slot]) -> None:
        """The sequencer's reader: stored answers and current results for a batch's slots."""
        for slot, value in zip(slots, self._results.read_many(conn, [s.key for s in slots]),
                               strict=True):
            slot.value = value

    def _settled(
        self, write: _Write, receipt: Receipt | BaseException | None
    ) -> Answer | Replay | BaseException:
        """The outcome of one item once its batch committed (or failed)."""
        if isinstance(receipt, BaseException):
            return receipt
        outcome = write.outcome
        if outcome is None:
            return RuntimeError("no answer built")
        if receipt is None:  # nothing logged: a replay, or refused without a request id
            return outcome
        assert isinstance(outcome, Answer)
        return Answer(outcome.request_id, outcome.envelope, receipt, outcome.error,
                      outcome.encoded)

    def _decide(self, item: _Item) -> _Decided | Replay | CreditNodeError:
        """Policy, rate, lookup: what this query gets. Runs where the sequencer writes (its
        thread, or its event loop), on what the log's transaction reads; pure but for the rate
        limiter, which only the sequencer's builds touch, one batch at a time."""
        stored, found = item.slot.value
        if stored is not None:
            return Replay(*stored)
        caller, query, refusal = item.caller, item.query, item.refusal
        result: model.CreditResult | None = None
        rule: policies.PurposeRule | None = None
        try:
            if refusal is not None:
                raise refusal
            assert query is not None
            rule = policies.authorize(self.policy, self.node_id, caller, query)
            if item.zones is not None and query.zone not in item.zones:
                # Configured as a member, but the zone's current trust list does not hold it
                # (e.g. removed by the coordinator): the signed list wins.
                raise PermissionDenied(
                    f"{caller} is not on the {query.zone} trust list this node holds",
                    reason="NOT_ZONE_MEMBER",
                )
            zone = self.policy.zones[query.zone]
            self._limiter.take(caller, zone.rate_for(caller), self._monotonic())
            result = found
            if result is None or result.valid_until <= self._clock():
                raise NotFound(
                    f"no current credit result for {query.subject.id_type.name} "
                    f"{_shown(query.subject)} at {self.node_id}"
                )
            policies.check_subject_type(rule, query.zone, result.subject_type)
        except CreditNodeError as exc:
            refusal = exc
        if refusal is not None and not item.request_id:
            # Without a request id there is nothing to log the refusal under or replay.
            return refusal
        return _Decided(result, rule, refusal)

    def _redacted(self, result: model.CreditResult, rule: policies.PurposeRule) -> Any:
        """The result's wire form as this purpose may see it, cached per (result, rule): a
        result id names one content for good, so only its binding differs between answers."""
        key = (result.result_id, id(rule))
        base = self._redacted_cache.get(key)
        if base is None or base[0] is not rule:
            if len(self._redacted_cache) >= _REDACTED_CACHE_SIZE:
                self._redacted_cache.clear()
            base = (rule, wire.result_to_pb(policies.redact(result, rule)))
            self._redacted_cache[key] = base
        return base[1]

    def _writer(self, item: _Item) -> _Write:
        """The build (decide, sign, record) for one item, run by the sequencer with the log
        index it reserves; it leaves the item's outcome in the returned _Write."""
        write = _Write()
        caller, query = item.caller, item.query
        digest = hashlib.sha256(item.raw).digest()  # the request digest: the bytes received
        subject = pseudonymise(query.subject, self._subject_key) if query else None

        def record(now: dt.datetime, decision: model.Decision, reason: str = "",
                   result_id: str = "", result_digest: bytes = b"") -> bytes:
            return wire.record_bytes(model.ExchangeRecord(
                time=now, direction=model.Direction.ANSWERED, requester_node=caller,
                responder_node=self.node_id, zone=query.zone if query else "",
                purpose=query.purpose if query else "", subject=subject,
                request_id=item.request_id, request_digest=digest, decision=decision,
                reason=reason, result_id=result_id, result_digest=result_digest,
            ))

        def build(index: int) -> LogWrite | None:
            write.outcome = None
            decided = self._decide(item)
            if not isinstance(decided, _Decided):  # replayed, or refused without request id
                write.outcome = decided
                return None
            now = write.now = self._clock()
            result, rule, refusal = decided.result, decided.rule, decided.refusal
            if refusal is not None:
                decision = (model.Decision.NOT_FOUND if isinstance(refusal, NotFound)
                            else model.Decision.REFUSED)
                entry = record(now, decision,
                               f"{refusal.reason}: {refusal.message}")
                answer = Answer(item.request_id, None, None, refusal)
            else:
                assert query is not None and result is not None and rule is not None
                payload = wire.bound_result_bytes(
                    self._redacted(result, rule), issued_at=now, audience_node=caller,
                    zone=query.zone, purpose=query.purpose, request_id=item.request_id,
                    request_digest=digest, log_index=index,
                )
                envelope = signing.sign_envelope(
                    signing.PAYLOAD_CREDIT_RESULT, payload, [self._signer()]
                )
                entry = record(now, model.Decision.GRANTED, "",
                               result.result_id, hashlib.sha256(payload).digest())
                answer = Answer(item.request_id, envelope, None)
            encoded = self._encode(answer)
            write.outcome = Answer(answer.request_id, answer.envelope, None, answer.error,
                                   encoded)
            return LogWrite(entry, requester=caller, request_id=item.request_id,
                            answer=encoded)

        def failed(index: int, exc: BaseException) -> bytes:
            write.outcome = None
            now = write.now or self._clock()
            return record(now, model.Decision.FAILED, f"FAILED: {type(exc).__name__}")

        write.build, write.failed = build, failed
        return write


@dataclasses.dataclass(frozen=True, slots=True)
class _Item:
    """One query as received, with what the batch's read will fill in."""

    caller: str
    raw: bytes
    request_id: str
    query: model.CreditQuery | None
    refusal: CreditNodeError | None  # malformed: refused whatever the read says
    zones: AbstractSet[str] | None  # the zones whose current trust list holds the caller
    slot: Slot  # filled with (stored answer, current result) before the build runs


@dataclasses.dataclass(frozen=True, slots=True)
class _Decided:
    """A query decided and ready to log: granted (result and rule) or refused (refusal)."""

    result: model.CreditResult | None
    rule: policies.PurposeRule | None
    refusal: CreditNodeError | None


class _Write:
    """One item's build and failure hooks, and what its build left: the outcome (an answer
    to log, a replay, or a refusal with nothing to log)."""

    __slots__ = ("build", "failed", "now", "outcome")

    def __init__(self) -> None:
        self.build: Callable[[int], LogWrite | None]
        self.failed: Callable[[int, BaseException], bytes]
        self.outcome: Answer | Replay | CreditNodeError | None = None
        self.now: dt.datetime | None = None


def _parsed(
    parse: Callable[[], model.CreditQuery],
) -> tuple[model.CreditQuery | None, CreditNodeError | None]:
    try:
        return parse(), None
    except CreditNodeError as exc:
        return None, exc


def _shown(subject: model.SubjectRef) -> str:
    """How a subject appears in a message: resident ids are masked."""
    if subject.id_type is model.SubjectIdType.RESIDENT_ID:
        return subject.id[:6] + "********" + subject.id[-4:]
    return subject.id

