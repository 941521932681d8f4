"""Answering a peer's credit query (DESIGN.md §6-§7): policy, lookup, signing, logging.

`Interchange.answer` decides, builds the signed result for the log index the sequencer
reserves, and returns only after the exchange record is durable. Every outcome — granted,
refused, not found — is one log entry (a build that fails leaves a FAILED one); a repeated
(requester, request id) gets the stored answer and is not logged again.
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

from node import metrics, model, signing, wire
from node import policy as policies
from node.errors import CreditNodeError, NotFound, PermissionDenied
from node.sequencer import LogWrite, Receipt, Sequencer

StoredAnswer = tuple[int, bytes]  # (log index, stored wire answer)
Read = tuple[str, str, model.SubjectRef | None]  # (requester, request id, subject)
ReadResult = tuple[StoredAnswer | None, model.CreditResult | None]


class ResultSource(Protocol):
    """Where current results come from (the store); called off the event loop."""

    def read_many(self, reads: Sequence[Read]) -> list[ReadResult]:
        """For each read: the stored answer to that request id, and the subject's current
        result (None where there is none)."""
        ...


class _ReadBatcher:
    """Reads for every request that arrives while a read is running go out together: one
    thread hop and one connection per batch instead of two of each per request (the read-side
    twin of the sequencer's group commit)."""

    def __init__(self, source: ResultSource) -> None:
        self._source = source
        # Each waiter is one call's reads and one future for all of them.
        self._waiting: list[tuple[Sequence[Read], asyncio.Future[list[ReadResult]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def read_many(self, reads: Sequence[Read]) -> list[ReadResult]:
        """A group's reads in one go (sharing the hop with whatever else is waiting)."""
        future: asyncio.Future[list[ReadResult]] = asyncio.get_running_loop().create_future()
        self._waiting.append((reads, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="read-batcher")
        return await future

    async def read(self, read: Read) -> ReadResult:
        [value] = await self.read_many([read])
        return value

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            flat = [read for reads, _ in batch for read in reads]
            try:
                values = await asyncio.to_thread(self._source.read_many, flat)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for reads, future in batch:
                if not future.done():
                    future.set_result(values[start : start + len(reads)])
                start += len(reads)


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
        trusted_zones: Callable[[str], AbstractSet[str]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.policy = policy
        self._reads = _ReadBatcher(results)
        self._signer = signer
        self._sequencer = sequencer
        self._subject_key = subject_key
        self._encode = encode
        self._trusted_zones = trusted_zones
        self._clock = clock
        self._monotonic = monotonic
        self._limiter = policies.RateLimiter()
        self._in_flight: dict[tuple[str, str], asyncio.Future[Answer | Replay]] = {}
        self._redacted_cache: dict[tuple[str, int], tuple[policies.PurposeRule, Any]] = {}

    async def answer(
        self, caller: str, raw_query: bytes, parse: Callable[[], model.CreditQuery],
        request_id: str,
    ) -> Answer | Replay:
        """Answer one query, or return the stored wire answer of a repeated request id.

        `raw_query` is the CreditQuery exactly as received (its SHA-256 is the request digest);
        `parse` turns it into the domain query, raising InvalidInput when it is malformed.
        """
        if not request_id:  # malformed: nothing to share with a concurrent twin
            return await self._answer(caller, raw_query, parse, request_id)
        key = (caller, request_id)
        running = self._in_flight.get(key)
        if running is not None:  # the same request id is being answered right now
            return await asyncio.shield(running)
        future: asyncio.Future[Answer | Replay] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            outcome = await self._answer(caller, raw_query, parse, request_id)
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
        request_id: str,
    ) -> Answer | Replay:
        query, refusal = _parsed(parse)
        read = await self._reads.read(
            (caller, request_id, query.subject if query is not None else None))
        decided = self._decide(caller, raw_query, request_id, query, refusal, read)
        if isinstance(decided, Replay):
            return decided
        if isinstance(decided, CreditNodeError):
            raise decided
        [outcome] = await self._log_many(caller, [decided])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def answer_many(
        self, caller: str, items: Sequence[tuple[bytes, Callable[[], model.CreditQuery], str]],
    ) -> list[Answer | Replay | CreditNodeError | BaseException]:
        """Answer a group of one caller's queries (a batch stream): one read for all, one log
        append for all. Each item's outcome stands in its place; none ends the others.

        A request id repeated inside the group is answered once and replayed for the repeats.
        """
        outcomes: list[Answer | Replay | CreditNodeError | BaseException | None] = (
            [None] * len(items))
        first_of: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []
        parsed: list[tuple[int, model.CreditQuery | None, CreditNodeError | None]] = []
        for position, (_, parse, request_id) in enumerate(items):
            if request_id and request_id in first_of:
                repeats.append((position, first_of[request_id]))
                continue
            if request_id:
                first_of[request_id] = position
            query, refusal = _parsed(parse)
            parsed.append((position, query, refusal))
        reads = await self._reads.read_many([
            (caller, items[position][2], query.subject if query is not None else None)
            for position, query, _ in parsed
        ])
        to_log: list[tuple[int, _Decided]] = []
        for (position, query, refusal), read in zip(parsed, reads, strict=True):
            raw, _, request_id = items[position]
            decided = self._decide(caller, raw, request_id, query, refusal, read)
            if isinstance(decided, _Decided):
                to_log.append((position, decided))
            else:
                outcomes[position] = decided
        logged = await self._log_many(caller, [d for _, d in to_log])
        for (position, _), outcome in zip(to_log, logged, strict=True):
            outcomes[position] = outcome
        for position, first in repeats:
            outcomes[position] = outcomes[first]
        return [o if o is not None else RuntimeError("unanswered") for o in outcomes]

    def _decide(
        self, caller: str, raw_query: bytes, request_id: str, query: model.CreditQuery | None,
        refusal: CreditNodeError | None, read: ReadResult,
    ) -> _Decided | Replay | CreditNodeError:
        """Policy, rate, lookup: what this query gets. Pure but for the rate limiter."""
        stored, found = read
        if stored is not None:
            return Replay(*stored)
        result: model.CreditResult | None = None
        rule: policies.PurposeRule | None = None
        try:
            if refusal is not None:
                raise refusal
            assert query is not None
            rule = policies.authorize(self.policy, self.node_id, caller, query)
            if self._trusted_zones is not None and query.zone not in self._trusted_zones(caller):
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
        if refusal is not None and not request_id:
            # Without a request id there is nothing to log the refusal under or replay.
            return refusal
        return _Decided(request_id, hashlib.sha256(raw_query).digest(), query, result, rule,
                        refusal)

    async def _log_many(
        self, caller: str, decided: Sequence[_Decided]
    ) -> list[Answer | BaseException]:
        """Log every decision (one group of appends) and return each answer with its receipt,
        or the exception that kept it from being logged."""
        if not decided:
            return []
        now = self._clock()
        answers: list[Answer | None] = [None] * len(decided)
        writes = []
        for position, item in enumerate(decided):
            build, failed = self._writer(caller, now, item, answers, position)
            writes.append((build, failed))
        receipts = await self._sequencer.append_many(writes)
        outcomes: list[Answer | BaseException] = []
        for answer, receipt in zip(answers, receipts, strict=True):
            if isinstance(receipt, BaseException) or answer is None:
                metrics.EXCHANGES.labels("ANSWERED", "FAILED").inc()
                outcomes.append(receipt if isinstance(receipt, BaseException)
                                else RuntimeError("no answer built"))
                continue
            decision = ("GRANTED" if answer.error is None else
                        "NOT_FOUND" if isinstance(answer.error, NotFound) else "REFUSED")
            metrics.EXCHANGES.labels("ANSWERED", decision).inc()
            outcomes.append(dataclasses.replace(answer, receipt=receipt))
        return outcomes

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

    def _writer(
        self, caller: str, now: dt.datetime, item: _Decided, answers: list[Answer | None],
        position: int,
    ) -> tuple[Callable[[int], LogWrite], Callable[[int, BaseException], bytes]]:
        query, result, rule, refusal = item.query, item.result, item.rule, item.refusal
        subject = pseudonymise(query.subject, self._subject_key) if query else None

        def record(decision: model.Decision, reason: str = "", result_id: str = "",
                   result_digest: bytes = b"") -> bytes:
            return wire.record_bytes(model.ExchangeRecord(
                time=now, direction=model.Direction.ANSWERED, requester_node=caller,
                responder_node=self.node_id, zone=query.zone if query else "",
                purpose=query.purpose if query else "", subject=subject,
                request_id=item.request_id, request_digest=item.digest, decision=decision,
                reason=reason, result_id=result_id, result_digest=result_digest,
            ))

        def build(index: int) -> LogWrite:
            if refusal is not None:
                decision = (model.Decision.NOT_FOUND if isinstance(refusal, NotFound)
                            else model.Decision.REFUSED)
                entry = record(decision, f"{refusal.reason}: {refusal.message}")
                answer = Answer(item.request_id, None, None, refusal)
            else:
                assert query is not None and result is not None and rule is not None
                payload = wire.bound_result_bytes(
                    self._redacted(result, rule), issued_at=now, audience_node=caller,
                    zone=query.zone, purpose=query.purpose, request_id=item.request_id,
                    request_digest=item.digest, log_index=index,
                )
                envelope = signing.sign_envelope(
                    signing.PAYLOAD_CREDIT_RESULT, payload, [self._signer()]
                )
                entry = record(model.Decision.GRANTED, "", result.result_id,
                               hashlib.sha256(payload).digest())
                answer = Answer(item.request_id, envelope, None)
            encoded = self._encode(answer)
            answers[position] = dataclasses.replace(answer, encoded=encoded)
            return LogWrite(entry, requester=caller, request_id=item.request_id,
                            answer=encoded)

        def failed(index: int, exc: BaseException) -> bytes:
            return record(model.Decision.FAILED, f"FAILED: {type(exc).__name__}")

        return build, failed


@dataclasses.dataclass(frozen=True, slots=True)
class _Decided:
    """A query decided and ready to log: granted (result and rule) or refused (refusal)."""

    request_id: str
    digest: bytes
    query: model.CreditQuery | None
    result: model.CreditResult | None
    rule: policies.PurposeRule | None
    refusal: CreditNodeError | None


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

