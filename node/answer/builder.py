"""The answer to one decided query (DESIGN.md §4, §7): its signed result or its refusal, the
wire form kept for replaying its request id, and its exchange-log record. Deterministic given
the decision, the time, the log index and the signer; no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from node import model, signing, wire
from node import policy as policies
from node.answer import decision
from node.errors import CreditNodeError
from node.log.sequencer import LogWrite, Receipt

_REDACTED_CACHE_SIZE = 65536


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What goes back to the caller: the signed result, or the refusal, and its receipt."""

    request_id: str
    envelope: signing.Envelope | None
    receipt: Receipt | None
    error: CreditNodeError | None = None
    encoded: bytes = b""  # the stored wire form (without receipt), as logged beside the entry


Encode = Callable[[Answer], bytes]  # the wire form kept for replaying a repeated request id


@dataclasses.dataclass(frozen=True, slots=True)
class Exchange:
    """One query as the log records it: who asked, under which request id, what, about whom
    (a resident id as its HMAC), and the SHA-256 of the bytes received."""

    caller: str
    request_id: str
    query: model.CreditQuery | None
    subject: model.SubjectRef | None
    digest: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Built:
    """What a build logged: the signed result or the refusal, and its stored wire form."""

    envelope: signing.Envelope | None
    refusal: CreditNodeError | None
    encoded: bytes


def pseudonymise(subject: model.SubjectRef, key: bytes) -> model.SubjectRef:
    """DESIGN.md §5: a resident id never enters the log in clear."""
    if subject.id_type is not model.SubjectIdType.RESIDENT_ID or subject.is_pseudonymous:
        return subject
    digest = hmac.new(key, subject.id.encode("ascii"), hashlib.sha256).hexdigest()
    return model.SubjectRef(subject.id_type, model.HMAC_SUBJECT_PREFIX + digest)


class AnswerBuilder:
    def __init__(self, node_id: str, signer: Callable[[], signing.Signer], encode: Encode) -> None:
        self._node_id = node_id
        self._signer = signer
        self._encode = encode
        self._redacted_cache: dict[tuple[str, int], tuple[policies.PurposeRule, Any]] = {}

    def build(
        self,
        exchange: Exchange,
        decided: decision.Grant | decision.Refuse,
        now: dt.datetime,
        index: int,
    ) -> tuple[LogWrite, Built]:
        """What to log at `index` for a granted or refused query, and what its caller gets."""
        envelope = None
        if isinstance(decided, decision.Refuse):
            refusal: CreditNodeError | None = decided.refusal
            record = self._record(
                exchange,
                now,
                decided.decision,
                f"{decided.refusal.reason}: {decided.refusal.message}",
            )
        else:
            query, result, rule = exchange.query, decided.result, decided.rule
            assert query is not None
            refusal = None
            payload = wire.bound_result_bytes(
                self._redacted(result, rule),
                issued_at=now,
                audience_node=exchange.caller,
                zone=query.zone,
                purpose=query.purpose,
                request_id=exchange.request_id,
                request_digest=exchange.digest,
                log_index=index,
            )
            envelope = signing.sign_envelope(
                signing.PAYLOAD_CREDIT_RESULT, payload, [self._signer()]
            )
            record = self._record(
                exchange,
                now,
                model.Decision.GRANTED,
                "",
                result.result_id,
                hashlib.sha256(payload).digest(),
            )
        encoded = self._encode(Answer(exchange.request_id, envelope, None, refusal))
        built = Built(envelope, refusal, encoded)
        if isinstance(decided, decision.Refuse) and not decided.store:
            return LogWrite(record), built
        return (
            LogWrite(
                record,
                requester=exchange.caller,
                request_id=exchange.request_id,
                answer=encoded,
                replaces=decided.replaces,
            ),
            built,
        )

    def failed(self, exchange: Exchange, now: dt.datetime, error: BaseException) -> bytes:
        """The FAILED record of a query whose build raised."""
        return self._record(exchange, now, model.Decision.FAILED, f"FAILED: {type(error).__name__}")

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

    def _record(
        self,
        exchange: Exchange,
        now: dt.datetime,
        decision: model.Decision,
        reason: str = "",
        result_id: str = "",
        result_digest: bytes = b"",
    ) -> bytes:
        """The serialized ExchangeRecord of an answer (DESIGN.md §7: the log entry)."""
        query = exchange.query
        return wire.exchange_record_bytes(
            time=now,
            direction=model.Direction.ANSWERED,
            requester_node=exchange.caller,
            responder_node=self._node_id,
            zone=query.zone if query else "",
            purpose=query.purpose if query else "",
            subject=exchange.subject,
            request_id=exchange.request_id,
            request_digest=exchange.digest,
            decision=decision,
            reason=reason,
            result_id=result_id,
            result_digest=result_digest,
        )
