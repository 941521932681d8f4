"""Answering a peer's credit query (DESIGN.md §6-§7): rate, decision, signing, logging.

Every query is charged to its caller's rate first; `Interchange.answer` then hands the group
to the sequencer with itself as the planner: in one transaction for the whole batch it reads
each query's stored answer and current result (`read`), decides (`decision.decide`, pure) and
builds the signed result for the log index reserved for it (`build`). The answer returns only
after the exchange record is durable. Every outcome — granted, refused, not found — is one log
entry (a build that fails leaves a FAILED one), except calls over the caller's rate, of which
one per window is logged and the rest summarised. A repeated (requester, request id) gets the
stored answer, not logged again, while that answer would still be given; otherwise it is
decided again and its new answer replaces the stored one."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import sqlalchemy as sa

from node import model, signing, wire
from node import policy as policies
from node.answer import decision
from node.answer.builder import Answer, AnswerBuilder, Built, Encode, Exchange, pseudonymise
from node.clock import SYSTEM, Clock
from node.errors import CreditNodeError, InvalidInput, RateLimited
from node.log import store as log_store
from node.log.sequencer import Appended, LogWrite, Planned, Sequencer
from node.log.store import StoredAnswer

log = logging.getLogger(__name__)
ReadResult = tuple[StoredAnswer | None, model.CreditResult | None]


class ResultSource(Protocol):
    """Where current results come from (the store); called by the sequencer, inside the
    transaction that logs the answers."""

    def read_many(
        self, conn: sa.Connection, subjects: Sequence[model.SubjectRef | None]
    ) -> list[model.CreditResult | None]:
        """Each subject's current result (None where there is none)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Replay:
    """The stored wire answer to a repeated request id, and where it was logged."""

    log_index: int
    response: bytes


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
        clock: Clock = SYSTEM,
        legacy_codes: frozenset[str] = frozenset(),
    ) -> None:
        self.node_id = node_id
        self.legacy_codes = legacy_codes  # answered despite a wrong check char (DESIGN.md §9)
        self.policy = policy
        self._results = results
        self._sequencer = sequencer
        self._subject_key = subject_key
        self._builder = AnswerBuilder(node_id, signer, encode)
        self._clock = clock
        self._limiter = policies.RateLimiter()
        self._rate_refusals = policies.RateRefusals(policy.refusal_window_s)
        self._summary_timer: asyncio.TimerHandle | None = None
        self._summary_tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[tuple[str, str], asyncio.Future[Answer | Replay]] = {}

    def use_policy(self, policy: policies.Policy) -> None:
        """Decide by `policy` from now on (node.toml reloaded); the rate buckets stay."""
        self.policy = policy
        self._rate_refusals.window_s = policy.refusal_window_s

    async def answer(
        self,
        caller: str,
        received: Received,
        *,
        membership: policies.Membership,
    ) -> Answer | Replay:
        """Answer one query, or return the stored wire answer of a repeated request id; a
        call with the request id of one being answered right now waits for that one.
        `membership`: as for answer_many."""
        request_id = received.request_id
        if not request_id:  # malformed: nothing to share with a concurrent twin
            return _raised(await self.answer_many(caller, [received], membership=membership))
        key = (caller, request_id)
        running = self._in_flight.get(key)
        if running is not None:  # the same request id is being answered right now
            return await asyncio.shield(running)
        future: asyncio.Future[Answer | Replay] = self._sequencer.loop.create_future()
        self._in_flight[key] = future
        try:
            outcome = _raised(await self.answer_many(caller, [received], membership=membership))
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

    async def answer_many(
        self,
        caller: str,
        received: Sequence[Received],
        *,
        membership: policies.Membership,
    ) -> list[Answer | Replay | BaseException]:
        """Answer a group of one caller's queries (a batch stream, or one query): one log
        append for all. Each item's outcome stands in its place; none ends the others.

        A request id repeated inside the group is answered once and replayed for the repeats.
        `membership`: the zones whose trust list in force holds this node and the caller (the
        server looks them up on the lists it holds).
        """
        first_of: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []  # (position, position of the first)
        entries: list[_Entry] = []
        # Every position is set below: by its entry, as refused over the rate, or as the
        # repeat of an earlier one.
        outcomes: list[Answer | Replay | BaseException] = [_UNANSWERED] * len(received)
        for position, item in enumerate(received):
            request_id = item.request_id
            if request_id:
                first = first_of.setdefault(request_id, position)
                if first != position:
                    repeats.append((position, first))
                    continue
            over_rate = self._charge(caller, item)
            if over_rate is not None and not self._rate_refusals.refuse(
                caller, self._clock.monotonic(), self._clock.now()
            ):
                outcomes[position] = over_rate  # counted in the window's summary entry
                continue
            entries.append(_Entry(caller, item, membership, position, self._subject_key, over_rate))
        self._schedule_refusal_summaries()
        logged = await self._sequencer.append_many(self, entries)
        for entry, appended in zip(entries, logged, strict=True):
            outcomes[entry.position] = _settled(entry, appended)
        for position, first in repeats:
            outcomes[position] = outcomes[first]
        return outcomes

    def _charge(self, caller: str, item: Received) -> RateLimited | None:
        """DESIGN.md §6: every query, granted or refused, costs the caller one request of its
        rate; the refusal when it is over."""
        zone = item.query.zone if item.query is not None else None
        try:
            self._limiter.take(caller, self.policy.rate_for(caller, zone), self._clock.monotonic())
        except RateLimited as exc:
            return exc
        return None

    def _schedule_refusal_summaries(self) -> None:
        """Write the summary entry of each refusal window once it has ended, even when the
        caller has gone quiet by then."""
        if self._summary_timer is not None or not self._rate_refusals.pending():
            return
        loop = self._sequencer.loop

        def fire() -> None:
            self._summary_timer = None
            task = loop.create_task(self._log_refusal_summaries())
            self._summary_tasks.add(task)
            task.add_done_callback(self._summary_tasks.discard)

        self._summary_timer = loop.call_later(self._rate_refusals.window_s, fire)

    async def _log_refusal_summaries(self) -> None:
        now = self._clock.now()
        for caller, window in self._rate_refusals.due(self._clock.monotonic()):
            counted = window.refused - 1
            record = wire.exchange_record_bytes(
                time=now,
                direction=model.Direction.ANSWERED,
                requester_node=caller,
                responder_node=self.node_id,
                zone="",
                purpose="",
                subject=None,
                request_id="",
                request_digest=b"",
                decision=model.Decision.REFUSED,
                reason=(
                    f"RATE_LIMITED: {counted} more calls from {caller} over its rate "
                    f"refused in the {self._rate_refusals.window_s:g} s from "
                    f"{window.opened_at.isoformat(timespec='seconds')}, not logged one "
                    "by one"
                ),
            )

            def build(index: int, entry: bytes = record) -> LogWrite:
                return LogWrite(entry)

            def failed(index: int, exc: BaseException, entry: bytes = record) -> bytes:
                return entry

            try:
                await self._sequencer.append(build, failed)
            except Exception:  # the count is lost, the refusals were answered: say so
                log.exception("could not log the summary of %d refusals of %s", counted, caller)
        self._schedule_refusal_summaries()

    # --- the sequencer's planner: each batch's reads, then each entry's build ---------------

    def read(self, conn: sa.Connection, entries: Sequence[_Entry]) -> list[ReadResult]:
        """Stored answers and current results for a batch's entries, in its transaction."""
        stored = log_store.stored_answers(
            conn, [(e.caller, e.received.request_id) for e in entries if e.received.request_id]
        )
        current = self._results.read_many(
            conn, [e.received.query.subject if e.received.query else None for e in entries]
        )
        return [
            (
                stored.get((e.caller, e.received.request_id)) if e.received.request_id else None,
                result,
            )
            for e, result in zip(entries, current, strict=True)
        ]

    def build(self, entry: _Entry, read: ReadResult, index: int) -> Planned:
        """Decide, then sign and record one entry for the log index the sequencer reserved.
        Logs nothing for a replay, or a refusal without a request id."""
        stored, current = read
        decided = self._decide(entry, stored, current)
        if isinstance(decided, decision.GiveStored):
            assert stored is not None
            return Planned(None, Replay(stored[0], stored[1]))
        if isinstance(decided, decision.RefuseUnlogged):
            return Planned(None, decided.refusal)
        write, built = self._builder.build(entry.exchange, decided, self._clock.now(), index)
        return Planned(write, built)

    def failed(self, entry: _Entry, index: int, error: BaseException) -> bytes:
        """The FAILED entry for one whose build raised."""
        return self._builder.failed(entry.exchange, self._clock.now(), error)

    def _decide(
        self, entry: _Entry, stored: StoredAnswer | None, current: model.CreditResult | None
    ) -> decision.Decision:
        """What this query gets, on what the log's transaction read. Over the caller's rate
        (charged before): refused, logged, never stored for a replay."""
        if entry.over_rate is not None:
            return decision.Refuse(entry.over_rate, store=False)
        received = entry.received
        return decision.decide(
            self.policy,
            self.node_id,
            entry.caller,
            entry.membership,
            decision.Asked(
                received.request_id, received.query, received.refusal, entry.exchange.subject
            ),
            None
            if stored is None
            else decision.Stored(stored[0], wire.record_from_bytes(stored[2])),
            current,
            self._clock.now(),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """A query as received: its bytes (their SHA-256 is the request digest), its request id
    (empty when the bytes are no CreditQuery), and the domain query, or why it is refused
    whatever the store holds (malformed)."""

    raw: bytes
    request_id: str
    query: model.CreditQuery | None
    refusal: CreditNodeError | None

    @classmethod
    def parse(cls, raw: bytes, legacy_codes: frozenset[str] = frozenset()) -> Received:
        try:
            message = wire.parse_query(raw)
        except CreditNodeError as exc:
            return cls(raw, "", None, exc)
        if not model.REQUEST_ID_RE.match(message.request_id):
            # Checked before anything could log or store it (DESIGN.md §6).
            return cls(raw, "", None, InvalidInput(model.bad_request_id(message.request_id)))
        try:
            return cls(raw, message.request_id, wire.query_from_pb(message, legacy_codes), None)
        except CreditNodeError as exc:
            return cls(raw, message.request_id, None, exc)


class _Entry:
    """One query on its way to the log, as the sequencer hands it back to its planner."""

    __slots__ = ("caller", "exchange", "membership", "over_rate", "position", "received")

    def __init__(
        self,
        caller: str,
        received: Received,
        membership: policies.Membership,
        position: int,
        subject_key: bytes,
        over_rate: RateLimited | None = None,
    ) -> None:
        query = received.query
        self.caller = caller
        self.received = received
        self.membership = membership  # the zones whose list in force holds us and the caller
        self.position = position  # in the caller's group
        self.exchange = Exchange(
            caller,
            received.request_id,
            query,
            pseudonymise(query.subject, subject_key) if query else None,
            hashlib.sha256(received.raw).digest(),  # the request digest
        )
        self.over_rate = over_rate  # refused over the caller's rate: logged as such


def _settled(entry: _Entry, appended: Appended | BaseException) -> Answer | Replay | BaseException:
    """An entry's outcome once the batch committed (or failed)."""
    if isinstance(appended, BaseException):
        return appended
    outcome = appended.outcome
    if isinstance(outcome, Built):
        if appended.receipt is None:
            return RuntimeError("an answer built but not logged")
        return Answer(
            entry.received.request_id,
            outcome.envelope,
            appended.receipt,
            outcome.refusal,
            outcome.encoded,
        )
    if isinstance(outcome, Replay | CreditNodeError):
        return outcome  # nothing logged: a replay, or refused without a request id
    return RuntimeError("no answer built")


_UNANSWERED = RuntimeError("unanswered")


def _raised(outcomes: list[Answer | Replay | BaseException]) -> Answer | Replay:
    [outcome] = outcomes
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
