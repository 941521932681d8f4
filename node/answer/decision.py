"""What a peer's query gets (DESIGN.md §6): a pure function of the policy, the caller, the
query, what the log holds for its request id, the subject's current result and the time.

`decide` does no I/O and keeps no state: the answer path reads the stored answer and the
current result in the log's transaction, calls it, and builds what it returns. The caller's
rate is charged before, once per query, outside it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from node import model
from node import policy as policies
from node.errors import CreditNodeError, InvalidInput, NotFound
from node.identifiers import mask_resident_id


@dataclasses.dataclass(frozen=True, slots=True)
class Asked:
    """A query as received: its request id (empty when the bytes held none valid), the
    domain query or why it is refused whatever the store holds (malformed), and its subject
    as the log names it (a resident id as its HMAC)."""

    request_id: str
    query: model.CreditQuery | None
    refusal: CreditNodeError | None
    logged_subject: model.SubjectRef | None


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """The answer the log holds for this (caller, request id): where, and its entry."""

    log_index: int
    record: model.ExchangeRecord


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """Sign and log `result` as `rule` lets the purpose see it."""

    result: model.CreditResult
    rule: policies.PurposeRule
    replaces: int | None = None  # the stored answer's index, when decided again


@dataclasses.dataclass(frozen=True, slots=True)
class Refuse:
    """Log the refusal; `store`: keep it as the answer to replay for its request id."""

    refusal: CreditNodeError
    store: bool = True
    replaces: int | None = None

    @property
    def decision(self) -> model.Decision:
        return (
            model.Decision.NOT_FOUND
            if isinstance(self.refusal, NotFound)
            else model.Decision.REFUSED
        )


@dataclasses.dataclass(frozen=True, slots=True)
class GiveStored:
    """The stored answer is still what the query gets: send it again, log nothing."""

    log_index: int


@dataclasses.dataclass(frozen=True, slots=True)
class RefuseUnlogged:
    """Refused with no request id to log it under or replay it by."""

    refusal: CreditNodeError


Decision = Grant | Refuse | GiveStored | RefuseUnlogged

REQUEST_ID_REUSED = (
    "this request_id was used before for a query with another subject, zone or purpose; "
    "use a new request_id for a new query"
)


def decide(
    policy: policies.Policy,
    node_id: str,
    caller: str,
    membership: policies.Membership,
    asked: Asked,
    stored: Stored | None,
    current: model.CreditResult | None,
    now: dt.datetime,
) -> Decision:
    """What `caller`'s query gets at `now`.

    `membership`: the zones whose trust list in force holds this node and the caller.
    `stored`: the answer logged before for this request id. `current`: the
    subject's current result, if the store has one.
    """
    query = asked.query
    if stored is not None:
        earlier = stored.record
        # 1. A request id names one query (DESIGN.md §6): another one under it is refused,
        #    logged, and the stored answer stays.
        if query is None or (earlier.zone, earlier.purpose, earlier.subject) != (
            query.zone,
            query.purpose,
            asked.logged_subject,
        ):
            return Refuse(
                asked.refusal or InvalidInput(REQUEST_ID_REUSED, reason="REQUEST_ID_REUSED"),
                store=False,
            )
    fresh = decide_afresh(policy, node_id, caller, membership, asked, current, now)
    if stored is None:
        if isinstance(fresh, Refuse) and not asked.request_id:
            return RefuseUnlogged(fresh.refusal)
        return fresh
    # 2. A replay gets the stored answer only while a fresh decision would give the same:
    #    otherwise it is a new exchange, whose answer takes the stored one's place.
    if gives_the_same(stored.record, fresh):
        return GiveStored(stored.log_index)
    return dataclasses.replace(fresh, replaces=stored.log_index)


def decide_afresh(
    policy: policies.Policy,
    node_id: str,
    caller: str,
    membership: policies.Membership,
    asked: Asked,
    current: model.CreditResult | None,
    now: dt.datetime,
) -> Grant | Refuse:
    """Policy and lookup, as for a request id never seen, in the order a person would ask:
    is the query well formed, may the caller ask it here, is there a current result, may
    the purpose see a subject of its type."""
    query = asked.query
    if asked.refusal is not None or query is None:
        return Refuse(asked.refusal or InvalidInput("no query"))
    try:
        rule = policies.authorize(policy, node_id, caller, query, membership)
        if current is None or current.valid_until <= now:
            raise NotFound(
                f"no current credit result for {query.subject.id_type.name} "
                f"{shown(query.subject)} at {node_id}"
            )
        policies.check_subject_type(rule, query.zone, current.subject_type)
    except CreditNodeError as exc:
        return Refuse(exc)
    return Grant(current, rule)


def gives_the_same(earlier: model.ExchangeRecord, fresh: Grant | Refuse) -> bool:
    """Whether the stored answer is what a fresh decision gives: the same result, or a
    refusal for the same reason."""
    if isinstance(fresh, Grant):
        return (
            earlier.decision is model.Decision.GRANTED
            and earlier.result_id == fresh.result.result_id
        )
    return (
        earlier.decision is fresh.decision
        and earlier.reason.partition(":")[0] == fresh.refusal.reason
    )


def shown(subject: model.SubjectRef) -> str:
    """How a subject appears in a message: a resident id masked, never its birth date."""
    if subject.id_type is model.SubjectIdType.RESIDENT_ID:
        return mask_resident_id(subject.id)
    return subject.id
