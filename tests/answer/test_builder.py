"""The answer builder (issue 10 §4) without a database or a server: what a decided query
logs, and what its caller gets."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import tomllib

from node import model, policy, signing, wire
from node.answer import decision
from node.answer.builder import AnswerBuilder, Exchange
from node.answer.local import encode_answer
from node.errors import NotFound
from tests.results import make_result

HUZHOU, JIAXING = "cn-330500", "cn-330400"
NOW = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)
RULE = (
    policy.policy_from_mapping(
        tomllib.loads(
            importlib.resources.files("node.data").joinpath("zones.example.toml").read_text()
        )
    )
    .zones["hjjw"]
    .purposes["xinyi-dai"]
)


def exchange(request_id: str = "b-1") -> Exchange:
    result = make_result()
    query = model.CreditQuery(request_id, result.subject, "hjjw", "xinyi-dai")
    return Exchange(JIAXING, request_id, query, result.subject, b"\x07" * 32)


def test_a_grant_is_signed_bound_to_its_index_and_recorded_with_its_digest() -> None:
    signer = signing.Ed25519Signer.generate()
    builder = AnswerBuilder(HUZHOU, lambda: signer, encode_answer)
    result = make_result()
    write, built = builder.build(exchange(), decision.Grant(result, RULE, replaces=3), NOW, 42)
    assert built.envelope is not None and built.refusal is None
    payload = signing.verify_envelope(
        built.envelope,
        payload_type=signing.PAYLOAD_CREDIT_RESULT,
        keys={signer.keyid: signer.verification_key()},
    ).payload
    bound = wire.result_from_bytes(payload)
    assert (bound.log_index, bound.audience_node, bound.request_id) == (42, JIAXING, "b-1")
    assert bound.request_digest == b"\x07" * 32 and bound.issued_at == NOW
    record = wire.record_from_bytes(write.entry)
    assert record.decision is model.Decision.GRANTED and record.result_id == result.result_id
    assert record.result_digest == hashlib.sha256(payload).digest()
    assert (write.requester, write.request_id, write.replaces) == (JIAXING, "b-1", 3)
    assert write.answer == built.encoded


def test_a_refusal_not_to_be_stored_is_logged_without_its_answer_row() -> None:
    builder = AnswerBuilder(HUZHOU, signing.Ed25519Signer.generate, encode_answer)
    refusal = NotFound("no current credit result")
    write, built = builder.build(exchange(), decision.Refuse(refusal, store=False), NOW, 5)
    assert built.envelope is None and built.refusal is refusal
    assert (write.request_id, write.answer) == ("", b"")  # the stored answer stays as it was
    record = wire.record_from_bytes(write.entry)
    assert record.decision is model.Decision.NOT_FOUND
    assert record.reason.startswith("SUBJECT_NOT_FOUND: ")


def test_a_failed_build_is_recorded_by_its_class_only() -> None:
    builder = AnswerBuilder(HUZHOU, signing.Ed25519Signer.generate, encode_answer)
    record = wire.record_from_bytes(builder.failed(exchange(), NOW, ValueError("secret detail")))
    assert record.decision is model.Decision.FAILED and record.reason == "FAILED: ValueError"
