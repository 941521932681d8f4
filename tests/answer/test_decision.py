"""The decision as tables (issue 10 §1): every refusal reason and every replay case of
issue 9 §4, without a database, a server or a clock."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import tomllib

import pytest

from node import model
from node import policy as policies
from node.answer.decision import (
    Asked,
    GiveStored,
    Grant,
    Refuse,
    RefuseUnlogged,
    Stored,
    decide,
)
from node.errors import InvalidInput, NotFound, PermissionDenied
from node.identifiers import make_uscc

HUZHOU, JIAXING, SHANGHAI = "cn-330500", "cn-330400", "cn-310000"
NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
USCC = "91330500MA2B3C4D5B"
OTHER_USCC = make_uscc("91330500MA0000001")
RESIDENT = "330522198503142034"
POLICY = policies.policy_from_mapping(
    tomllib.loads(importlib.resources.files("node.data").joinpath("zones.example.toml").read_text())
)
EVERY_ZONE = frozenset(POLICY.zones)
# Membership as the trust lists in force give it: this node and the caller on every list.
ON_EVERY_LIST = policies.Membership(EVERY_ZONE, EVERY_ZONE)


def caller_on(*zones: str) -> policies.Membership:
    """This node on every list, the caller on `zones`' lists only."""
    return policies.Membership(EVERY_ZONE, frozenset(zones))


def result(
    result_id: str = f"{HUZHOU}:{USCC}",
    *,
    valid_for: dt.timedelta = dt.timedelta(days=90),
    subject_type: model.SubjectType = model.SubjectType.ENTERPRISE,
) -> model.CreditResult:
    return model.CreditResult(
        result_id=result_id,
        subject=model.SubjectRef(model.SubjectIdType.USCC, USCC),
        subject_name="湖州绿源新材料有限公司",
        subject_type=subject_type,
        issuer_node=HUZHOU,
        scheme="zj-public-credit@2023",
        native_level="A",
        native_score=92.0,
        level=model.CreditLevel.A,
        flags=(),
        indicators={},
        evaluated_at=NOW - dt.timedelta(days=30),
        valid_until=NOW + valid_for,
    )


def asked(
    request_id: str = "q-1",
    *,
    zone: str = "hjjw",
    purpose: str = "xinyi-dai",
    subject: model.SubjectRef | None = None,
) -> Asked:
    subject = subject or model.SubjectRef(model.SubjectIdType.USCC, USCC)
    query = model.CreditQuery(request_id, subject, zone, purpose)
    return Asked(request_id, query, None, subject)


def malformed(request_id: str = "q-1") -> Asked:
    return Asked(
        request_id,
        None,
        InvalidInput("subject.id is not a USCC", reason="INVALID_SUBJECT_ID"),
        None,
    )


def stored(
    decision: model.Decision,
    *,
    zone: str = "hjjw",
    purpose: str = "xinyi-dai",
    subject: str = USCC,
    result_id: str = "",
    reason: str = "",
    index: int = 7,
) -> Stored:
    return Stored(
        index,
        model.ExchangeRecord(
            time=NOW - dt.timedelta(days=1),
            direction=model.Direction.ANSWERED,
            requester_node=JIAXING,
            responder_node=HUZHOU,
            zone=zone,
            purpose=purpose,
            subject=model.SubjectRef(model.SubjectIdType.USCC, subject),
            request_id="q-1",
            request_digest=b"\0" * 32,
            decision=decision,
            reason=reason,
            result_id=result_id,
            result_digest=b"\1" * 32 if result_id else b"",
        ),
    )


GRANTED_BEFORE = stored(model.Decision.GRANTED, result_id=f"{HUZHOU}:{USCC}")


# --- a request id seen for the first time ----------------------------------------------------

FIRST_TIME = [
    # (case, caller, membership by the lists, asked, current result, expected reason or
    # "GRANTED")
    ("granted", JIAXING, ON_EVERY_LIST, asked(), result(), "GRANTED"),
    ("zone not served here", JIAXING, ON_EVERY_LIST, asked(zone="nowhere"), result(),
     "ZONE_NOT_SERVED"),
    ("caller not on the zone's trust list in force", JIAXING, caller_on("yrd"), asked(),
     result(), "NOT_ZONE_MEMBER"),
    ("this node not on the zone's trust list in force", JIAXING,
     policies.Membership(frozenset({"yrd"}), EVERY_ZONE), asked(), result(), "ZONE_NOT_SERVED"),
    ("purpose not agreed", JIAXING, ON_EVERY_LIST, asked(purpose="joint-sanction"), result(),
     "PURPOSE_NOT_AGREED"),
    ("natural person under a purpose without them", JIAXING, ON_EVERY_LIST,
     asked(subject=model.SubjectRef(model.SubjectIdType.RESIDENT_ID, RESIDENT)), None,
     "SUBJECT_TYPE_NOT_ALLOWED"),
    ("subject type the purpose may not see", JIAXING, ON_EVERY_LIST, asked(purpose="green-loan"),
     result(subject_type=model.SubjectType.INDIVIDUAL_BUSINESS), "SUBJECT_TYPE_NOT_ALLOWED"),
    ("no result", JIAXING, ON_EVERY_LIST, asked(), None, "SUBJECT_NOT_FOUND"),
    ("result expired at this instant", JIAXING, ON_EVERY_LIST, asked(),
     result(valid_for=dt.timedelta(0)), "SUBJECT_NOT_FOUND"),
    ("malformed", JIAXING, ON_EVERY_LIST, malformed(), result(), "INVALID_SUBJECT_ID"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "caller", "membership", "query", "current", "expected"),
    FIRST_TIME,
    ids=[c[0] for c in FIRST_TIME],
)
def test_a_new_request_id_is_decided_by_policy_and_data(
    case: str,
    caller: str,
    membership: policies.Membership,
    query: Asked,
    current: model.CreditResult | None,
    expected: str,
) -> None:
    decision = decide(POLICY, HUZHOU, caller, membership, query, None, current, NOW)
    if expected == "GRANTED":
        assert decision == Grant(current, POLICY.zones["hjjw"].purposes["xinyi-dai"])  # type: ignore[arg-type]
        return
    assert isinstance(decision, Refuse), decision
    assert decision.refusal.reason == expected
    assert decision.store and decision.replaces is None
    assert decision.decision is (
        model.Decision.NOT_FOUND if expected == "SUBJECT_NOT_FOUND" else model.Decision.REFUSED
    )


def test_a_refusal_without_a_request_id_is_not_logged() -> None:
    assert isinstance(
        decide(POLICY, HUZHOU, JIAXING, ON_EVERY_LIST, malformed(""), None, None, NOW),
        RefuseUnlogged,
    )


def test_a_not_found_names_a_resident_id_masked() -> None:
    person = model.SubjectRef(model.SubjectIdType.RESIDENT_ID, RESIDENT)
    decision = decide(
        POLICY,
        HUZHOU,
        SHANGHAI,
        caller_on("yrd"),
        asked(zone="yrd", purpose="joint-sanction", subject=person),
        None,
        None,
        NOW,
    )
    assert isinstance(decision, Refuse) and isinstance(decision.refusal, NotFound)
    assert RESIDENT not in decision.refusal.message and "19850314" not in decision.refusal.message
    assert "330522********2034" in decision.refusal.message


# --- a request id answered before (issue 9 §4) -------------------------------------------------

REPLAYS = [
    # (case, caller's zones, asked, stored, current, expected)
    ("same query, same result: the stored answer", ON_EVERY_LIST, asked(), GRANTED_BEFORE,
     result(), "GIVE_STORED"),
    ("result superseded since: decided again", ON_EVERY_LIST, asked(), GRANTED_BEFORE,
     result(f"{HUZHOU}:{USCC}:2"), "GRANTED"),
    ("result expired since: not found now", ON_EVERY_LIST, asked(), GRANTED_BEFORE,
     result(valid_for=dt.timedelta(seconds=-1)), "SUBJECT_NOT_FOUND"),
    ("result revoked or repaired since: none current", ON_EVERY_LIST, asked(), GRANTED_BEFORE, None,
     "SUBJECT_NOT_FOUND"),
    ("caller removed from the zone's list since", caller_on("yrd"), asked(), GRANTED_BEFORE,
     result(), "NOT_ZONE_MEMBER"),
    ("refused before, refused now for the same reason", ON_EVERY_LIST,
     asked(purpose="xinyi-gou"),
     stored(model.Decision.NOT_FOUND, purpose="xinyi-gou", reason="SUBJECT_NOT_FOUND: none"), None,
     "GIVE_STORED"),
    ("not found before, a result now", ON_EVERY_LIST, asked(),
     stored(model.Decision.NOT_FOUND, reason="SUBJECT_NOT_FOUND: none"), result(), "GRANTED"),
    ("another subject under the same request id", ON_EVERY_LIST, asked(),
     stored(model.Decision.GRANTED, subject=OTHER_USCC, result_id="x"), result(),
     "REQUEST_ID_REUSED"),
    ("another zone under the same request id", ON_EVERY_LIST, asked(),
     stored(model.Decision.GRANTED, zone="yrd", result_id="x"), result(), "REQUEST_ID_REUSED"),
    ("another purpose under the same request id", ON_EVERY_LIST, asked(),
     stored(model.Decision.GRANTED, purpose="green-loan", result_id="x"), result(),
     "REQUEST_ID_REUSED"),
    ("a malformed query under a used request id", ON_EVERY_LIST, malformed(), GRANTED_BEFORE,
     result(), "INVALID_SUBJECT_ID"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "membership", "query", "before", "current", "expected"),
    REPLAYS,
    ids=[c[0] for c in REPLAYS],
)
def test_a_replay_is_given_only_what_would_still_be_given(
    case: str,
    membership: policies.Membership,
    query: Asked,
    before: Stored,
    current: model.CreditResult | None,
    expected: str,
) -> None:
    decision = decide(POLICY, HUZHOU, JIAXING, membership, query, before, current, NOW)
    if expected == "GIVE_STORED":
        assert decision == GiveStored(before.log_index)
    elif expected == "GRANTED":
        assert isinstance(decision, Grant) and decision.result == current
        assert decision.replaces == before.log_index  # its answer takes the stored one's place
    elif expected in {"REQUEST_ID_REUSED", "INVALID_SUBJECT_ID"}:
        # Logged, and the stored answer stays the request id's.
        assert isinstance(decision, Refuse) and decision.refusal.reason == expected
        assert not decision.store and decision.replaces is None
    else:
        assert isinstance(decision, Refuse) and decision.refusal.reason == expected
        assert decision.store and decision.replaces == before.log_index


def test_decide_is_pure() -> None:
    """The same inputs give the same decision: nothing is charged or remembered."""
    args = (POLICY, HUZHOU, JIAXING, ON_EVERY_LIST, asked(), GRANTED_BEFORE, result(), NOW)
    assert decide(*args) == decide(*args) == GiveStored(GRANTED_BEFORE.log_index)


def test_reasons_match_the_error_classes() -> None:
    refusal = decide(POLICY, HUZHOU, SHANGHAI, caller_on("yrd"), asked(), None, result(), NOW)
    assert isinstance(refusal, Refuse) and isinstance(refusal.refusal, PermissionDenied)
    reused = decide(
        POLICY, HUZHOU, JIAXING, ON_EVERY_LIST, asked(zone="hyzt"), GRANTED_BEFORE, result(), NOW
    )
    assert isinstance(reused, Refuse) and isinstance(reused.refusal, InvalidInput)
    assert not reused.store
