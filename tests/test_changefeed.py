"""The changefeed's rules without a server (node.changefeed): what a consumer may receive, and
the sync job's checks of every batch — tampered, replayed, reordered, gapped, mis-addressed."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from node import changefeed, model, signing, wire
from node import policy as policies
from node.errors import BadAnswer, BadSignature, InvalidInput, PermissionDenied, UntrustedKey
from node.store.changes import StoredChange
from node.trust_model import PublicKeyInfo
from tests import trust_lists
from tests.results import T0, make_result
from tests.trust_lists import key_info

HUZHOU, PROVINCE = "cn-330500", "cn-330000"
UPSERT, REVOKE = model.ChangeKind.UPSERT, model.ChangeKind.REVOKE
ENTERPRISE, PERSON = model.SubjectType.ENTERPRISE, model.SubjectType.NATURAL_PERSON
SIGNER = signing.Ed25519Signer.generate()
KEYS = {SIGNER.keyid: key_info(SIGNER)}


def key_for(node: str, keyid: str) -> PublicKeyInfo:
    if node != HUZHOU or keyid not in KEYS:
        raise UntrustedKey(f"{node} has no key {keyid}")
    return KEYS[keyid]


def rule(
    types: frozenset[model.SubjectType] = frozenset({ENTERPRISE}),
    fields: frozenset[str] = policies.OPTIONAL_FIELDS,
    indicators: frozenset[str] = frozenset({"green_rating"}),
) -> policies.PurposeRule:
    return policies.PurposeRule("green-loan", types, fields, indicators)


def entry(seq: int, kind: model.ChangeKind, n: int = 1, **changes: object) -> StoredChange:
    return StoredChange(seq, kind, make_result(result_id=f"cn-330500:r{n}", **changes))


# --- scope ---------------------------------------------------------------------------------------


def test_scope_is_the_green_loan_purpose_of_the_callers_zones() -> None:
    scope = changefeed.feed_scope(PROVINCE, {"yrd": rule()})
    assert scope.subject_types == {ENTERPRISE} and scope.audience == PROVINCE
    # Several zones: what any of them allows.
    both = changefeed.feed_scope(
        PROVINCE, {"yrd": rule(), "hjjw": rule(frozenset({PERSON})), "hyzt": None}
    )
    assert both.subject_types == {ENTERPRISE, PERSON}
    assert changefeed.feed_scope(PROVINCE, {"yrd": rule()}, [ENTERPRISE])


@pytest.mark.parametrize(
    ("zones", "requested", "reason"),
    [
        (["hjjw"], [], "PURPOSE_NOT_AGREED"),  # the zone agrees no green-loan purpose
        ([], [], "PURPOSE_NOT_AGREED"),  # no zone at all
        (["yrd"], [PERSON], "SUBJECT_TYPE_NOT_ALLOWED"),  # enterprises only
    ],
)
def test_scope_refuses_with_the_reason(
    zones: list[str], requested: list[model.SubjectType], reason: str
) -> None:
    with pytest.raises(PermissionDenied) as caught:
        rules = {"yrd": rule(), "hjjw": None}
        changefeed.feed_scope(PROVINCE, {z: rules[z] for z in zones}, requested)
    assert caught.value.reason == reason


def test_subject_types_outside_the_contract_are_refused() -> None:
    assert changefeed.subject_types_from([1, 6]) == (ENTERPRISE, PERSON)
    for bad in (0, 7):
        with pytest.raises(InvalidInput, match=f"subject type {bad}"):
            changefeed.subject_types_from([bad])


# --- selection -----------------------------------------------------------------------------------


def test_selection_filters_types_trims_fields_and_drops_revoked_content() -> None:
    scope = changefeed.feed_scope(PROVINCE, {"yrd": rule(fields=frozenset({"indicators"}))})
    entries = [
        entry(1, UPSERT, 1),
        entry(2, UPSERT, 2, subject_type=PERSON),  # not in scope: left out
        entry(3, UPSERT, 3, status=model.ResultStatus.REVOKED),  # repaired since: never fed
        entry(4, REVOKE, 3, status=model.ResultStatus.REVOKED),  # ... but its revocation is
        entry(5, UPSERT, 4, status=model.ResultStatus.SUPERSEDED),  # history; REVOKE follows
    ]
    changes = changefeed.select_changes(entries, scope)
    assert [(c.seq, c.kind) for c in changes] == [(1, UPSERT), (4, REVOKE), (5, UPSERT)]
    first = changes[0].result
    assert first is not None
    assert first.indicators == {"green_rating": "G2"}  # carbon_intensity is not agreed
    assert first.flags == () and first.native_score is None  # fields not agreed
    assert changes[1].result_id == "cn-330500:r3" and changes[1].result is None


# --- the job's checks of one batch ---------------------------------------------------------------


def signed(
    first: int,
    last: int,
    changes: tuple[model.Change, ...] = (),
    *,
    audience: str = PROVINCE,
    issuer: str = HUZHOU,
    signer: signing.Signer = SIGNER,
) -> signing.Envelope:
    return changefeed.sign_batch(
        changes,
        first_seq=first,
        last_seq=last,
        issuer=issuer,
        audience=audience,
        now=trust_lists.T0 + dt.timedelta(days=1),
        signer=signer,
    )


def upsert(seq: int, **changes: object) -> model.Change:
    return model.Change(seq, UPSERT, result=make_result(result_id=f"cn-330500:r{seq}", **changes))


def open_batch(envelope: signing.Envelope, after: int) -> model.ChangeBatch:
    return changefeed.open_change_batch(
        envelope, issuer=HUZHOU, audience=PROVINCE, after_seq=after, key_for=key_for
    )


def test_a_batch_that_continues_the_cursor_opens() -> None:
    batch = open_batch(signed(11, 14, (upsert(11), upsert(13))), after=10)
    assert (batch.first_seq, batch.last_seq) == (11, 14)
    assert [c.seq for c in batch.changes] == [11, 13]
    assert batch.changes[0].result == make_result(result_id="cn-330500:r11")


def _tampered(envelope: signing.Envelope) -> signing.Envelope:
    payload = bytearray(envelope.payload)
    payload[-1] ^= 0x01
    return dataclasses.replace(envelope, payload=bytes(payload))


@pytest.mark.parametrize(
    ("case", "envelope", "after", "error", "says"),
    [
        ("tampered", _tampered(signed(11, 12, (upsert(11),))), 10, BadSignature, "does not"),
        ("replayed", signed(11, 12), 12, BadAnswer, "already applied"),
        ("reordered", signed(13, 14), 14, BadAnswer, "already applied"),
        ("gapped", signed(13, 14), 10, BadAnswer, "seqs 11..12 are missing"),
        ("not to us", signed(11, 12, audience="cn-330400"), 10, BadAnswer, "addressed to"),
        (
            "unknown key",
            signed(11, 12, signer=signing.Ed25519Signer.generate()),
            10,
            UntrustedKey,
            "trusted key",
        ),
        (
            "someone else's result",
            signed(11, 12, (upsert(11, issuer_node="cn-330400"),)),
            10,
            BadAnswer,
            "issued by cn-330400",
        ),
    ],
)
def test_a_bad_batch_is_refused_before_anything_is_applied(
    case: str, envelope: signing.Envelope, after: int, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        open_batch(envelope, after)


def test_an_unsigned_or_other_typed_envelope_is_refused() -> None:
    good = signed(1, 1)
    with pytest.raises(BadSignature):
        open_batch(dataclasses.replace(good, signatures=()), 0)
    other = signing.sign_envelope(signing.PAYLOAD_CREDIT_RESULT, good.payload, [SIGNER])
    with pytest.raises(BadSignature, match="payload type"):
        open_batch(other, 0)


def test_batch_bodies_out_of_order_inside_are_refused_on_decoding() -> None:
    body = wire.pb.ChangeBatchBody(first_seq=5, last_seq=6, issuer_node=HUZHOU, audience=PROVINCE)
    body.issued_at.CopyFrom(wire.timestamp(T0))
    body.changes.add(seq=6, kind=2, result_id="a")
    body.changes.add(seq=5, kind=2, result_id="b")
    envelope = signing.sign_envelope(signing.PAYLOAD_CHANGE_BATCH, wire.serialize(body), [SIGNER])
    with pytest.raises(InvalidInput, match="increasing seq order"):
        open_batch(envelope, 4)
