"""Policy decisions against the shipped example configuration of DESIGN.md §1 and §8."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import logging
import tomllib

import pytest

from node import model, policy
from node.errors import InvalidInput, PermissionDenied, RateLimited
from tests.results import make_result

USCC = model.SubjectRef(model.SubjectIdType.USCC, "91350100M000100Y43")
PERSON = model.SubjectRef(model.SubjectIdType.RESIDENT_ID, "11010519491231002X")


@pytest.fixture(scope="module")
def example() -> policy.Policy:
    text = importlib.resources.files("node.data").joinpath("zones.example.toml").read_text()
    return policy.policy_from_mapping(tomllib.loads(text), "zones.example.toml")


def q(zone: str, purpose: str, subject: model.SubjectRef = USCC) -> model.CreditQuery:
    return model.CreditQuery("q-1", subject, zone, purpose)


# Who is on each zone's trust list in force (DESIGN.md §1), as the runtime finds it.
ON_LISTS = {
    "cn-330500": frozenset({"yrd", "hz-metro", "hjjw", "hyzt"}),
    "cn-330400": frozenset({"hz-metro", "hjjw"}),
    "cn-330100": frozenset({"yrd", "hz-metro"}),
    "cn-310000": frozenset({"yrd"}),
    "cn-330200": frozenset({"hyzt"}),
}


def on_lists(caller: str) -> policy.Membership:
    return policy.Membership(ON_LISTS["cn-330500"], ON_LISTS[caller])


def test_example_ships_every_zone_of_the_design_and_no_members(example: policy.Policy) -> None:
    assert set(example.zones) == {"yrd", "hz-metro", "hjjw", "hyzt"}
    text = importlib.resources.files("node.data").joinpath("zones.example.toml").read_text()
    assert "members" not in tomllib.loads(text)["zones"]["hjjw"]  # the trust list's business
    assert example.served(frozenset({"hjjw", "pearl-river"})) == ["hjjw"]


@pytest.mark.parametrize(
    ("caller", "query", "reason"),
    [
        # member of the zone, agreed purpose, allowed subject type
        ("cn-330400", q("hjjw", "xinyi-dai"), None),
        ("cn-310000", q("yrd", "joint-sanction", PERSON), None),
        ("cn-330100", q("hz-metro", "xinyi-xing", PERSON), None),
        # not a member of the zone at all
        ("cn-310000", q("hjjw", "xinyi-dai"), "NOT_ZONE_MEMBER"),
        # member of another zone that this node shares (Ningbo is in hyzt, not hjjw)
        ("cn-330200", q("hjjw", "xinyi-dai"), "NOT_ZONE_MEMBER"),
        ("cn-330200", q("hyzt", "xinyi-dai"), None),
        # purpose not agreed in the zone
        ("cn-330400", q("hjjw", "joint-sanction"), "PURPOSE_NOT_AGREED"),
        ("cn-330200", q("hyzt", "green-loan"), "PURPOSE_NOT_AGREED"),
        # natural person where the purpose does not allow it
        ("cn-330400", q("hjjw", "xinyi-dai", PERSON), "SUBJECT_TYPE_NOT_ALLOWED"),
        ("cn-310000", q("yrd", "xinyi-dai", PERSON), "SUBJECT_TYPE_NOT_ALLOWED"),
        # a zone this node does not serve
        ("cn-330400", q("pearl-river", "xinyi-dai"), "ZONE_NOT_SERVED"),
    ],
)
def test_authorisation_matrix(
    example: policy.Policy, caller: str, query: model.CreditQuery, reason: str | None
) -> None:
    membership = on_lists(caller)
    if reason is None:
        rule = policy.authorize(example, "cn-330500", caller, query, membership)
        assert rule.purpose == query.purpose
    else:
        with pytest.raises(PermissionDenied) as info:
            policy.authorize(example, "cn-330500", caller, query, membership)
        assert info.value.reason == reason
        assert caller in info.value.message or query.zone in info.value.message


@pytest.mark.parametrize(
    ("ours", "callers", "reason", "says"),
    [
        # Jiaxing added to hjjw's list: served, whatever node.toml held before.
        ({"hjjw"}, {"hjjw"}, None, ""),
        # removed from the list, or the list expired: the caller is refused first
        ({"hjjw"}, set(), "NOT_ZONE_MEMBER", "cn-330400 is not a member of zone hjjw"),
        (set(), set(), "NOT_ZONE_MEMBER", "not on the hjjw trust list in force"),
        # this node removed from the list it holds: it does not serve the zone
        (set(), {"hjjw"}, "ZONE_NOT_SERVED", "this node (cn-330500) is not on the trust list"),
    ],
)
def test_membership_comes_from_the_trust_lists_in_force(
    example: policy.Policy, ours: set[str], callers: set[str], reason: str | None, says: str
) -> None:
    membership = policy.Membership(frozenset(ours), frozenset(callers))
    query = q("hjjw", "xinyi-dai")
    if reason is None:
        assert policy.authorize(example, "cn-330500", "cn-330400", query, membership)
        return
    with pytest.raises(PermissionDenied) as info:
        policy.authorize(example, "cn-330500", "cn-330400", query, membership)
    assert (info.value.reason, says in info.value.message) == (reason, True)


def test_a_members_key_left_in_node_toml_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    toml = (
        '[zones.a]\nmembers = ["cn-330500"]\n[zones.a.purposes.p]\nsubject_types = ["ENTERPRISE"]'
    )
    with caplog.at_level(logging.WARNING, logger="node.policy"):
        loaded = policy.policy_from_mapping(tomllib.loads(toml), "node.toml")
    assert set(loaded.zones) == {"a"}
    assert "node.toml: [zones.a]: members is ignored" in caplog.text
    assert "signed trust list" in caplog.text


def test_a_policy_survives_the_trip_to_the_answering_worker(example: policy.Policy) -> None:
    """The server hands a reloaded policy to its worker as policy_to_mapping's JSON."""
    sent = json.loads(json.dumps(policy.policy_to_mapping(example)))
    assert policy.policy_from_mapping(sent) == example


def test_subject_type_checked_once_subject_known(example: policy.Policy) -> None:
    rule = example.zones["hjjw"].purposes["green-loan"]
    policy.check_subject_type(rule, "hjjw", model.SubjectType.ENTERPRISE)
    with pytest.raises(PermissionDenied, match="INDIVIDUAL_BUSINESS"):
        policy.check_subject_type(rule, "hjjw", model.SubjectType.INDIVIDUAL_BUSINESS)


def test_redact_keeps_only_what_the_purpose_may_see(example: policy.Policy) -> None:
    result = make_result(indicators={"green_rating": "G2", "internal_note": "x"})
    gou = policy.redact(result, example.zones["hjjw"].purposes["xinyi-gou"])
    assert (gou.native_score, gou.flags, dict(gou.indicators)) == (None, (), {})
    green = policy.redact(result, example.zones["hjjw"].purposes["green-loan"])
    assert dict(green.indicators) == {"green_rating": "G2"}
    assert green.native_score == result.native_score
    you = policy.redact(result, example.zones["hz-metro"].purposes["xinyi-you"])
    assert you.native_level == "A" and you.level == result.level


def test_rate_limiter_refills_over_time() -> None:
    limiter = policy.RateLimiter()
    for _ in range(3):
        limiter.take("cn-330400", 3, now=100.0)
    with pytest.raises(RateLimited, match="over its rate of 3 requests per minute"):
        limiter.take("cn-330400", 3, now=100.0)
    limiter.take("cn-330100", 3, now=100.0)  # other callers have their own bucket
    limiter.take("cn-330400", 3, now=120.0)  # 20 s at 3/min refills one token


WALL = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_refusal_windows_summarise_every_counted_call() -> None:
    """issue 9 §3: one logged refusal per caller and window, the rest counted for its summary."""
    refusals = policy.RateRefusals(10.0)
    assert refusals.refuse("cn-330400", 0.0, WALL)  # opens the window: logged
    assert not any(refusals.refuse("cn-330400", 0.001 * i, WALL) for i in range(1, 1000))
    assert refusals.refuse("cn-330100", 1.0, WALL)  # another caller, its own window
    assert refusals.due(9.9) == []  # not ended yet
    [(caller, window)] = refusals.due(10.0)
    assert (caller, window.refused) == ("cn-330400", 1000)
    assert refusals.due(11.0) == []  # cn-330100 had nothing counted beyond its logged one
    assert not refusals.pending()


def test_a_window_ended_before_its_summary_was_taken_keeps_its_count() -> None:
    """issue 9 §3, found by bench/flood_bench.py: a call over the rate just after a window
    ended, before the summary timer ran, replaced the window and lost its count (46,233 of
    102,006 refusals were in the log)."""
    refusals = policy.RateRefusals(10.0)
    refusals.refuse("cn-330400", 0.0, WALL)
    for i in range(1, 1000):
        refusals.refuse("cn-330400", 0.001 * i, WALL)
    assert refusals.refuse("cn-330400", 10.001, WALL)  # a new window, logged
    refusals.refuse("cn-330400", 10.002, WALL)
    [(_, ended)] = refusals.due(10.5)
    assert ended.refused == 1000
    [(_, second)] = refusals.due(20.002)
    assert second.refused == 2


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[zones.a]\npurposes = 3", r"\[zones.a\]: purposes must be a table"),
        (
            '[zones.a.purposes.p]\nsubject_types = ["ROBOT"]',
            "unknown subject type 'ROBOT'",
        ),
        (
            '[zones.a.purposes.p]\nsubject_types = ["ENTERPRISE"]\nfields = ["password"]',
            "unknown result fields",
        ),
        ("[zones.a]\nrate_per_minute = -1", "rate_per_minute must be"),
    ],
)
def test_bad_policy_file_names_the_place(toml: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        policy.policy_from_mapping(tomllib.loads(toml), "node.toml")
