"""The wire layer: model ↔ protobuf round trips, deterministic bytes, clear refusals."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf import timestamp_pb2

from node import model, wire
from node.errors import InvalidInput
from tests.results import T0, make_result


def test_result_round_trips_through_bytes() -> None:
    result = make_result(
        audience_node="cn-330400",
        zone="hjjw",
        purpose="xinyi-dai",
        request_id="q-1",
        request_digest=bytes(32),
        log_index=7,
        issued_at=T0,
    )
    assert wire.result_from_bytes(wire.result_bytes(result)) == result


def test_result_without_score_keeps_score_absent() -> None:
    result = make_result(native_score=None)
    msg = wire.result_to_pb(result)
    assert not msg.HasField("native_score")
    assert wire.result_from_bytes(wire.result_bytes(result)).native_score is None


def test_serialization_is_deterministic_for_maps() -> None:
    one = make_result(indicators={"a": "1", "b": "2", "c": "3"})
    two = make_result(indicators={"c": "3", "b": "2", "a": "1"})
    assert wire.result_bytes(one) == wire.result_bytes(two)


def test_record_round_trips() -> None:
    record = model.ExchangeRecord(
        time=T0,
        direction=model.Direction.ANSWERED,
        requester_node="cn-330400",
        responder_node="cn-330500",
        zone="hjjw",
        purpose="xinyi-dai",
        subject=model.SubjectRef(model.SubjectIdType.RESIDENT_ID, "hmac-sha256:" + "ab" * 32),
        request_id="q-1",
        request_digest=bytes(range(32)),
        decision=model.Decision.GRANTED,
        result_id="r",
        result_digest=bytes(32),
    )
    assert wire.record_from_bytes(wire.record_bytes(record)) == record


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (wire.pb.CreditQuery(request_id="q", zone="hjjw", purpose="xinyi-dai"), "no subject"),
        (
            wire.pb.CreditQuery(
                request_id="q",
                zone="hjjw",
                purpose="xinyi-dai",
                subject=wire.pb.SubjectRef(id_type=wire.pb.SUBJECT_ID_TYPE_UNSPECIFIED, id="x"),
            ),
            "id_type must be",
        ),
        (
            wire.pb.CreditQuery(
                request_id="q",
                zone="hjjw",
                purpose="xinyi-dai",
                subject=wire.pb.SubjectRef(id_type=wire.pb.USCC, id="91350100M000100Y44"),
            ),
            "check character should be 3",
        ),
        (
            wire.pb.CreditQuery(
                request_id="",
                zone="hjjw",
                purpose="xinyi-dai",
                subject=wire.pb.SubjectRef(id_type=wire.pb.USCC, id="91350100M000100Y43"),
            ),
            "request_id must be",
        ),
        (
            wire.pb.CreditQuery(
                request_id="q",
                zone="HJJW!",
                purpose="xinyi-dai",
                subject=wire.pb.SubjectRef(id_type=wire.pb.USCC, id="91350100M000100Y43"),
            ),
            "zone must be",
        ),
    ],
)
def test_bad_query_is_refused_with_reason(query: wire.pb.CreditQuery, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        wire.query_from_pb(query)


def test_garbage_bytes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not a valid protobuf"):
        wire.record_from_bytes(b"\xff\xff\xff")


def test_out_of_contract_enum_is_refused() -> None:
    msg = wire.result_to_pb(make_result())
    msg.level = 9  # type: ignore[assignment]  # a level no CreditLevel names, on purpose
    with pytest.raises(InvalidInput, match="outside the contract"):
        wire.result_from_bytes(wire.serialize(msg))


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(1949, 10, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        dt.datetime(2026, 11, 29, 19, 2, 20, 623_677, tzinfo=dt.UTC),
        dt.datetime(2099, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    ],
)
def test_fast_timestamp_matches_protobuf(value: dt.datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value.astimezone(dt.UTC))
    assert wire.timestamp(value) == expected
    assert wire.from_timestamp(wire.timestamp(value)) == value


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no time zone"):
        wire.timestamp(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            dict(
                decision=model.Decision.GRANTED,
                result_id="cn-330500:x",
                result_digest=bytes(range(1, 33)),
            ),
            id="granted",
        ),
        pytest.param(
            dict(decision=model.Decision.REFUSED, reason="PURPOSE_NOT_AGREED: not agreed"),
            id="refused",
        ),
        pytest.param(
            dict(
                decision=model.Decision.FAILED,
                reason="FAILED: KeyError",
                subject=None,
                zone="",
                purpose="",
            ),
            id="failed-malformed",
        ),
        pytest.param(
            dict(
                decision=model.Decision.NOT_FOUND,
                reason="NOT_FOUND: none",
                subject=model.SubjectRef(
                    model.SubjectIdType.RESIDENT_ID, model.HMAC_SUBJECT_PREFIX + "ab" * 32
                ),
            ),
            id="not-found-pseudonymous",
        ),
    ],
)
def test_exchange_record_bytes_equals_the_model_path(fields: dict[str, object]) -> None:
    """The answer path's record bytes are the very bytes of the domain record's."""
    record: dict[str, object] = dict(
        time=T0 + dt.timedelta(days=400, microseconds=999_999),
        direction=model.Direction.ANSWERED,
        requester_node="cn-330400",
        responder_node="cn-330500",
        zone="hjjw",
        purpose="xinyi-dai",
        subject=model.SubjectRef(model.SubjectIdType.USCC, "91330500MA2B3C4D5B"),
        request_id="q-1",
        request_digest=bytes(range(32)),
    )
    record.update(fields)
    fast = wire.exchange_record_bytes(**record)  # type: ignore[arg-type]
    assert fast == wire.record_bytes(model.ExchangeRecord(**record))  # type: ignore[arg-type]


def test_bound_result_bytes_equals_binding_the_model() -> None:
    """The answer path's fast binding gives the very bytes the model path gives."""
    result = make_result()
    binding = dict(
        issued_at=T0 + dt.timedelta(days=3, microseconds=17),
        audience_node="cn-330400",
        zone="hjjw",
        purpose="xinyi-dai",
        request_id="q-9",
        request_digest=bytes(range(32)),
        log_index=12345,
    )
    fast = wire.bound_result_bytes(wire.result_to_pb(result), **binding)  # type: ignore[arg-type]
    assert fast == wire.result_bytes(result.bound(**binding))
