"""The canonical model validates once, on construction."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from node import model
from node.errors import InvalidInput
from tests.results import T0, make_result


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer_node": "huzhou"}, "issuer node must look like cn-330500"),
        ({"scheme": "zj-public-credit"}, "must name its version"),
        ({"valid_until": T0}, "is not after"),
        ({"evaluated_at": dt.datetime(2026, 1, 1)}, "must carry a time zone"),
        ({"flags": ("red list",)}, "UPPER_SNAKE"),
        ({"native_score": float("nan")}, "finite"),
        ({"request_digest": b"short"}, "32-byte"),
        ({"subject_name": "  "}, "subject name must not be empty"),
    ],
)
def test_invalid_result_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        make_result(**changes)


def test_result_is_frozen_and_indicators_read_only() -> None:
    result = make_result()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.level = model.CreditLevel.D  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.indicators["x"] = "y"  # type: ignore[index]


def test_record_never_holds_resident_id_in_clear() -> None:
    clear = model.SubjectRef(model.SubjectIdType.RESIDENT_ID, "11010519491231002X")
    with pytest.raises(InvalidInput, match="never holds a resident id in clear"):
        model.ExchangeRecord(
            time=T0,
            direction=model.Direction.ANSWERED,
            requester_node="cn-330400",
            responder_node="cn-330500",
            zone="hjjw",
            purpose="xinyi-dai",
            subject=clear,
            request_id="q",
            request_digest=bytes(32),
            decision=model.Decision.REFUSED,
        )


def test_granted_record_needs_result_digest() -> None:
    with pytest.raises(InvalidInput, match="GRANTED record must carry the result digest"):
        model.ExchangeRecord(
            time=T0,
            direction=model.Direction.ANSWERED,
            requester_node="cn-330400",
            responder_node="cn-330500",
            zone="hjjw",
            purpose="xinyi-dai",
            subject=None,
            request_id="q",
            request_digest=bytes(32),
            decision=model.Decision.GRANTED,
        )


def test_change_kinds_carry_what_they_need() -> None:
    with pytest.raises(InvalidInput, match="UPSERT change carries the result"):
        model.Change(seq=1, kind=model.ChangeKind.UPSERT)
    with pytest.raises(InvalidInput, match="REVOKE change names the result id"):
        model.Change(seq=1, kind=model.ChangeKind.REVOKE)
    assert model.Change(seq=2, kind=model.ChangeKind.UPSERT, result=make_result()).seq == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"audience_node": "jiaxing"}, "audience node must look like cn-330500"),
        ({"request_digest": b"x" * 31}, "32-byte"),
        ({"log_index": -1}, "must not be negative"),
        ({"issued_at": dt.datetime(2026, 1, 1)}, "must carry a time zone"),
        ({"native_level": ""}, "native level must not be empty"),
    ],
)
def test_binding_checks_what_it_changes(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        make_result().bound(**changes)


def test_bound_copy_equals_a_fully_validated_copy() -> None:
    result = make_result()
    binding = dict(
        audience_node="cn-330400",
        zone="hjjw",
        purpose="xinyi-dai",
        request_id="q",
        request_digest=bytes(32),
        log_index=3,
        issued_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
        flags=["RED_LIST"],
        indicators={"green_rating": "G1"},
        native_score=None,
    )
    assert result.bound(**binding) == dataclasses.replace(result, **binding)  # type: ignore[arg-type]
    assert result.bound(**binding).flags == ("RED_LIST",)
    assert result.level == model.CreditLevel.A  # the original is untouched


def test_trusted_result_equals_a_checked_one() -> None:
    result = make_result()
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    assert model.CreditResult.trusted(**fields) == result
    with pytest.raises(TypeError, match=r"unknown \['colour'\], missing \[\]"):
        model.CreditResult.trusted(**fields, colour="red")
    del fields["scheme"]
    with pytest.raises(TypeError, match=r"unknown \[\], missing \['scheme'\]"):
        model.CreditResult.trusted(**fields)
