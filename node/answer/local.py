"""Queries in, serialized responses out: the answering side below the gRPC servicer.

The servicer hands the raw query bytes of one call (or one group of a batch stream) to an
`Answerer` and sends back what it returns. `LocalAnswerer` answers in this process through
`node.answer.exchange`; `node.answer.worker` answers in a worker process with a LocalAnswerer of
its own, so that the signing and logging of answers runs beside the gRPC server, not under the
same interpreter lock.

Queries travel as the bytes received (`node.answer.exchange.Received`), because the request digest
bound into a signed result is the SHA-256 of exactly those bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

from node import error_status as status
from node import log_output, metrics, wire
from node import policy as policies
from node.answer.builder import Answer
from node.answer.exchange import Interchange, Received, Replay
from node.errors import CreditNodeError, NotFound, RateLimited
from node.log.sequencer import Receipt, Sequencer

# The exchange decisions a reply can report (the `decision` label of metrics.EXCHANGES);
# NOT_LOGGED: nothing was logged for it (a replay, or refused without a request id);
# OVER_RATE: refused over the caller's rate and only counted (issue 9 §3).
NOT_LOGGED = ""
OVER_RATE = "OVER_RATE"


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """One query's response, serialized as sent, and what became of it."""

    data: bytes  # a serialized QueryCreditResponse
    refused: bool  # its `error` is set (a unary call ends with that status instead)
    decision: str = NOT_LOGGED  # GRANTED, REFUSED, NOT_FOUND or FAILED when logged


class Answerer(Protocol):
    async def answer(
        self,
        caller: str,
        queries: Sequence[bytes],
        *,
        single: bool,
        membership: policies.Membership,
    ) -> list[Reply]:
        """One reply per query, in order. `single`: one unary call (a repeated request id
        waits for a concurrent twin); otherwise one group of a batch stream. `membership`: the
        zones whose trust list in force holds this node and the caller."""
        ...

    async def use_policy(self, policy: policies.Policy) -> None:
        """Decide by `policy` from now on (node.toml reloaded); returns once it is in use."""
        ...


def answer_message(answer: Answer) -> wire.spb.QueryCreditResponse:
    """The response for an answer, without its receipt."""
    return wire.spb.QueryCreditResponse(
        request_id=answer.request_id,
        result=wire.envelope_to_pb(answer.envelope) if answer.envelope is not None else None,
        error=status.to_rpc_status(answer.error) if answer.error is not None else None,
    )


def encode_answer(answer: Answer) -> bytes:
    """The stored form of an answer (replayed for a repeated request id), without receipt."""
    return wire.serialize(answer_message(answer))


def receipt_field(receipt: Receipt) -> bytes:
    """A QueryCreditResponse holding only `receipt`, serialized. Appended to a serialized
    response it sets that field: the protobuf encoding of two messages concatenated is the
    two merged, so a stored answer is sent as stored, without parsing it again."""
    return wire.serialize(
        wire.spb.QueryCreditResponse(
            receipt=wire.receipt_to_pb(
                receipt.log_index, receipt.leaf_hash, receipt.checkpoint, receipt.inclusion_proof
            )
        )
    )


def decision_of(outcome: Answer | Replay | BaseException) -> str:
    if isinstance(outcome, Answer):
        if outcome.receipt is None:
            return NOT_LOGGED
        return (
            "GRANTED"
            if outcome.error is None
            else "NOT_FOUND"
            if isinstance(outcome.error, NotFound)
            else "REFUSED"
        )
    if isinstance(outcome, RateLimited):
        return OVER_RATE  # counted in its window's summary entry
    if isinstance(outcome, Replay | CreditNodeError):
        return NOT_LOGGED  # replayed, or refused before anything was logged
    return "FAILED"


class LocalAnswerer:
    """Answers in this process. `count`: add each logged outcome to metrics.EXCHANGES (off in
    a worker process, whose parent counts the decisions its replies report)."""

    def __init__(
        self, interchange: Interchange, sequencer: Sequencer, *, count: bool = True
    ) -> None:
        self._interchange = interchange
        self._sequencer = sequencer
        self._count = count

    async def answer(
        self,
        caller: str,
        queries: Sequence[bytes],
        *,
        single: bool,
        membership: policies.Membership,
    ) -> list[Reply]:
        legacy_codes = self._interchange.legacy_codes
        received = [Received.parse(data, legacy_codes) for data in queries]
        outcomes: list[Answer | Replay | BaseException]
        if single and len(received) == 1:
            try:
                outcomes = [
                    await self._interchange.answer(caller, received[0], membership=membership)
                ]
            except CreditNodeError as exc:
                outcomes = [exc]
        else:
            outcomes = await self._interchange.answer_many(caller, received, membership=membership)
        replies = [
            self._reply(item.request_id, outcome)
            for item, outcome in zip(received, outcomes, strict=True)
        ]
        if self._count:
            count_decisions(caller, replies)
        if _EXCHANGE_LINES.isEnabledFor(logging.INFO):  # one line per exchange: at least INFO
            for item, outcome, reply in zip(received, outcomes, replies, strict=True):
                log_answered(caller, item, outcome, reply.decision)
        return replies

    async def use_policy(self, policy: policies.Policy) -> None:
        self._interchange.use_policy(policy)

    def _reply(self, request_id: str, outcome: Answer | Replay | BaseException) -> Reply:
        """The wire response for one outcome. Whatever was logged — a grant or a refusal —
        carries its receipt; an outcome refused before logging (no request id) has none."""
        decision = decision_of(outcome)
        if (
            isinstance(outcome, Answer)
            and outcome.error is None
            and outcome.encoded
            and outcome.receipt is not None
        ):
            # A grant, the common case: the stored bytes and the receipt's field, unparsed
            # (fields 1, 2 then 3: the canonical order).
            return Reply(outcome.encoded + receipt_field(outcome.receipt), False, decision)
        if isinstance(outcome, Replay):
            response = wire.parse_response(outcome.response)
            response.receipt.CopyFrom(_receipt_pb(self._sequencer.receipt_for(outcome.log_index)))
        elif isinstance(outcome, Answer):
            response = (
                wire.parse_response(outcome.encoded) if outcome.encoded else answer_message(outcome)
            )
            if outcome.receipt is not None:
                response.receipt.CopyFrom(_receipt_pb(outcome.receipt))
        else:  # refused before anything could be logged, or the log failed
            response = wire.spb.QueryCreditResponse(
                request_id=request_id, error=status.to_rpc_status(outcome)
            )
        return Reply(wire.serialize(response), response.HasField("error"), decision)


_COUNTED = frozenset({"GRANTED", "REFUSED", "NOT_FOUND", "FAILED"})


_EXCHANGE_LINES = log_output.EXCHANGES


def log_answered(
    caller: str, item: Received, outcome: Answer | Replay | BaseException, decision: str
) -> None:
    """The exchange's log line: INFO for one the log recorded, DEBUG for a replay, a call over
    the caller's rate or one refused before logging (a flood is summarised in the log)."""
    level = logging.INFO if decision not in (NOT_LOGGED, OVER_RATE) else logging.DEBUG
    if not _EXCHANGE_LINES.isEnabledFor(level):
        return
    query = item.query
    error = (
        outcome.error
        if isinstance(outcome, Answer)
        else None
        if isinstance(outcome, Replay)
        else outcome
    )
    index = (
        outcome.receipt.log_index
        if isinstance(outcome, Answer) and outcome.receipt is not None
        else outcome.log_index
        if isinstance(outcome, Replay)
        else None
    )
    log_output.log_exchange(
        level,
        direction="ANSWERED",
        caller=caller,
        request_id=item.request_id,
        zone=query.zone if query else "",
        purpose=query.purpose if query else "",
        decision=decision or ("REPLAYED" if isinstance(outcome, Replay) else "NOT_LOGGED"),
        reason=getattr(error, "reason", type(error).__name__) if error is not None else "",
        log_index=index,
    )


def count_decisions(caller: str, replies: Sequence[Reply]) -> None:
    """Add the logged outcomes of `caller`'s replies to metrics.EXCHANGES (the callers are the
    members of the trust lists held: a bounded set of label values)."""
    counted = collections.Counter(r.decision for r in replies if r.decision in _COUNTED)
    for decision, n in counted.items():
        metrics.EXCHANGES.labels("ANSWERED", caller, decision).inc(n)


def _receipt_pb(receipt: Receipt) -> wire.pb.LogReceipt:
    return wire.receipt_to_pb(
        receipt.log_index, receipt.leaf_hash, receipt.checkpoint, receipt.inclusion_proof
    )
