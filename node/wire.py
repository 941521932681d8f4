"""The one bridge between the domain model and the generated protobuf code (floor 3).

Only this module imports `node._pb`. Serialization is deterministic (map fields sorted) so the
bytes we sign and hash are reproducible; parsing never trusts a re-serialization: callers keep
the bytes they received.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, NamedTuple

from google.protobuf import message as pb_message
from google.protobuf import timestamp_pb2

from node import model, signing
from node._pb.creditx.v1 import messages_pb2 as pb
from node._pb.creditx.v1 import services_pb2 as spb
from node.errors import InvalidInput
from node.trust_model import Member, PublicKeyInfo, TrustList

__all__ = ["pb", "spb"]


def serialize(message: pb_message.Message) -> bytes:
    return message.SerializeToString(deterministic=True)


def _parse(cls: type[pb_message.Message], data: bytes, what: str) -> pb_message.Message:
    msg = cls()
    try:
        msg.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise InvalidInput(f"{what} is not a valid protobuf message: {exc}") from None
    return msg


def _enum(value: int) -> Any:
    """An IntEnum value for a generated enum field (the stubs only admit names or wrappers)."""
    return int(value)


# --- timestamps --------------------------------------------------------------------------


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    """An aware datetime as a Timestamp (exact to the microsecond; on the hot path, so plain
    timedelta arithmetic rather than Timestamp.FromDatetime)."""
    if value.tzinfo is None:
        raise InvalidInput(f"timestamp {value.isoformat()} has no time zone")
    delta = value - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def from_timestamp(ts: timestamp_pb2.Timestamp) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC)


# --- subjects and queries ----------------------------------------------------------------


_SUBJECT_ID_TYPES = frozenset(t.value for t in model.SubjectIdType)


def subject_to_pb(subject: model.SubjectRef) -> pb.SubjectRef:
    return pb.SubjectRef(id_type=_enum(subject.id_type), id=subject.id)


def subject_from_pb(
    msg: pb.SubjectRef, *, legacy_codes: AbstractSet[str] = frozenset(), admitted: bool = False
) -> model.SubjectRef:
    """`legacy_codes`, `admitted`: which legacy register codes pass (model.SubjectRef)."""
    if msg.id_type not in _SUBJECT_ID_TYPES:
        raise InvalidInput(
            f"subject id_type must be USCC (1) or RESIDENT_ID (2), got {msg.id_type}"
        )
    return model.SubjectRef(
        model.SubjectIdType(msg.id_type), msg.id, legacy_codes=legacy_codes, admitted=admitted
    )


def query_to_pb(query: model.CreditQuery) -> pb.CreditQuery:
    return pb.CreditQuery(
        request_id=query.request_id,
        subject=subject_to_pb(query.subject),
        zone=query.zone,
        purpose=query.purpose,
    )


def query_from_pb(
    msg: pb.CreditQuery, legacy_codes: AbstractSet[str] = frozenset()
) -> model.CreditQuery:
    """A peer's query; a USCC with a wrong check character is answered only when it is one of
    our `legacy_codes` (DESIGN.md §9)."""
    if not msg.HasField("subject"):
        raise InvalidInput("query has no subject")
    return model.CreditQuery(
        request_id=msg.request_id,
        subject=subject_from_pb(msg.subject, legacy_codes=legacy_codes),
        zone=msg.zone,
        purpose=msg.purpose,
    )


# --- credit results ----------------------------------------------------------------------


def result_to_pb(result: model.CreditResult) -> pb.CreditResult:
    msg = pb.CreditResult(
        result_id=result.result_id,
        subject=subject_to_pb(result.subject),
        subject_name=result.subject_name,
        subject_type=_enum(result.subject_type),
        issuer_node=result.issuer_node,
        scheme=result.scheme,
        native_level=result.native_level,
        level=_enum(result.level),
        flags=list(result.flags),
        indicators=dict(result.indicators),
        evaluated_at=timestamp(result.evaluated_at),
        valid_until=timestamp(result.valid_until),
        audience_node=result.audience_node,
        zone=result.zone,
        purpose=result.purpose,
        request_id=result.request_id,
        request_digest=result.request_digest,
        log_index=result.log_index,
        status=_enum(result.status),
        supersedes=result.supersedes,
    )
    if result.native_score is not None:
        msg.native_score = result.native_score
    if result.issued_at is not None:
        msg.issued_at.CopyFrom(timestamp(result.issued_at))
    return msg


def result_from_pb(msg: pb.CreditResult) -> model.CreditResult:
    try:
        return model.CreditResult(
            result_id=msg.result_id,
            # A legacy register code is its issuer's to admit: the signature vouches for it.
            subject=subject_from_pb(msg.subject, admitted=True),
            subject_name=msg.subject_name,
            subject_type=model.SubjectType(msg.subject_type),
            issuer_node=msg.issuer_node,
            scheme=msg.scheme,
            native_level=msg.native_level,
            native_score=msg.native_score if msg.HasField("native_score") else None,
            level=model.CreditLevel(msg.level),
            flags=tuple(msg.flags),
            indicators=dict(msg.indicators),
            evaluated_at=from_timestamp(msg.evaluated_at),
            valid_until=from_timestamp(msg.valid_until),
            issued_at=from_timestamp(msg.issued_at) if msg.HasField("issued_at") else None,
            audience_node=msg.audience_node,
            zone=msg.zone,
            purpose=msg.purpose,
            request_id=msg.request_id,
            request_digest=msg.request_digest,
            log_index=msg.log_index,
            status=model.ResultStatus(msg.status),
            supersedes=msg.supersedes,
        )
    except ValueError as exc:  # an enum value outside the contract
        raise InvalidInput(f"credit result has a value outside the contract: {exc}") from None


def bound_result_bytes(
    base: pb.CreditResult,
    *,
    issued_at: dt.datetime,
    audience_node: str,
    zone: str,
    purpose: str,
    request_id: str,
    request_digest: bytes,
    log_index: int,
) -> bytes:
    """A stored result's wire form (already redacted for the purpose) bound to one request:
    the answer path's fast equivalent of result_bytes(result.bound(...)), which a test pins."""
    msg = pb.CreditResult()
    msg.CopyFrom(base)
    msg.issued_at.CopyFrom(timestamp(issued_at))
    msg.audience_node = audience_node
    msg.zone = zone
    msg.purpose = purpose
    msg.request_id = request_id
    msg.request_digest = request_digest
    msg.log_index = log_index
    return serialize(msg)


def result_bytes(result: model.CreditResult) -> bytes:
    return serialize(result_to_pb(result))


def result_from_bytes(data: bytes) -> model.CreditResult:
    msg = _parse(pb.CreditResult, data, "credit result")
    assert isinstance(msg, pb.CreditResult)
    return result_from_pb(msg)


# --- exchange records --------------------------------------------------------------------


def record_to_pb(record: model.ExchangeRecord) -> pb.ExchangeRecord:
    return _record_pb(
        time=record.time,
        direction=record.direction,
        requester_node=record.requester_node,
        responder_node=record.responder_node,
        zone=record.zone,
        purpose=record.purpose,
        subject=record.subject,
        request_id=record.request_id,
        request_digest=record.request_digest,
        decision=record.decision,
        reason=record.reason,
        result_id=record.result_id,
        result_digest=record.result_digest,
    )


def record_bytes(record: model.ExchangeRecord) -> bytes:
    return serialize(record_to_pb(record))


def exchange_record_bytes(
    *,
    time: dt.datetime,
    direction: model.Direction,
    requester_node: str,
    responder_node: str,
    zone: str,
    purpose: str,
    subject: model.SubjectRef | None,
    request_id: str,
    request_digest: bytes,
    decision: model.Decision,
    reason: str = "",
    result_id: str = "",
    result_digest: bytes = b"",
) -> bytes:
    """record_bytes(ExchangeRecord(...)) for the answer path, without building the domain
    record: its invariants (a pseudonymous subject, 32-byte digests, a GRANTED record's
    result digest) hold by construction there. A test pins the two to the same bytes."""
    return serialize(
        _record_pb(
            time=time,
            direction=direction,
            requester_node=requester_node,
            responder_node=responder_node,
            zone=zone,
            purpose=purpose,
            subject=subject,
            request_id=request_id,
            request_digest=request_digest,
            decision=decision,
            reason=reason,
            result_id=result_id,
            result_digest=result_digest,
        )
    )


def _record_pb(
    *,
    time: dt.datetime,
    direction: model.Direction,
    requester_node: str,
    responder_node: str,
    zone: str,
    purpose: str,
    subject: model.SubjectRef | None,
    request_id: str,
    request_digest: bytes,
    decision: model.Decision,
    reason: str,
    result_id: str,
    result_digest: bytes,
) -> pb.ExchangeRecord:
    return pb.ExchangeRecord(
        time=timestamp(time),
        direction=_enum(direction),
        requester_node=requester_node,
        responder_node=responder_node,
        zone=zone,
        purpose=purpose,
        subject=subject_to_pb(subject) if subject is not None else None,
        request_id=request_id,
        request_digest=request_digest,
        decision=_enum(decision),
        reason=reason,
        result_id=result_id,
        result_digest=result_digest,
    )


def record_zone(data: bytes) -> str:
    """The zone a serialized ExchangeRecord names ("" for none), without building the record:
    the log service reads it for every entry it serves (node.disclosure)."""
    msg = _parse(pb.ExchangeRecord, data, "exchange record")
    assert isinstance(msg, pb.ExchangeRecord)
    return str(msg.zone)


class RecordFields(NamedTuple):
    """What the auditor's index keeps of an ExchangeRecord, as the bytes say it (unchecked)."""

    seconds: int
    nanos: int
    direction: int
    requester_node: str
    responder_node: str
    zone: str
    purpose: str
    subject_id: str
    decision: int
    reason: str


def record_fields(data: bytes) -> RecordFields:
    """The indexed fields of a serialized ExchangeRecord without building (and checking) the
    record: node.audit.index reads them for every entry of the log, a million on a first start."""
    msg = _parse(pb.ExchangeRecord, data, "exchange record")
    assert isinstance(msg, pb.ExchangeRecord)
    return RecordFields(
        msg.time.seconds,
        msg.time.nanos,
        msg.direction,
        msg.requester_node,
        msg.responder_node,
        msg.zone,
        msg.purpose,
        msg.subject.id,
        msg.decision,
        msg.reason,
    )


def record_from_bytes(data: bytes) -> model.ExchangeRecord:
    msg = _parse(pb.ExchangeRecord, data, "exchange record")
    assert isinstance(msg, pb.ExchangeRecord)
    try:
        return model.ExchangeRecord(
            time=from_timestamp(msg.time),
            direction=model.Direction(msg.direction),
            requester_node=msg.requester_node,
            responder_node=msg.responder_node,
            zone=msg.zone,
            purpose=msg.purpose,
            # A legacy register code in an entry was admitted by the node that logged it.
            subject=(
                subject_from_pb(msg.subject, admitted=True) if msg.HasField("subject") else None
            ),
            request_id=msg.request_id,
            request_digest=msg.request_digest,
            decision=model.Decision(msg.decision),
            reason=msg.reason,
            result_id=msg.result_id,
            result_digest=msg.result_digest,
        )
    except ValueError as exc:
        raise InvalidInput(f"exchange record has a value outside the contract: {exc}") from None


# --- revocation notices (DESIGN.md §5-§6) ------------------------------------------------


def revocation_notice_bytes(notice: model.RevocationNotice) -> bytes:
    return serialize(
        pb.RevocationNotice(
            seq=notice.seq,
            result_id=notice.result_id,
            subject=subject_to_pb(notice.subject),
            issuer_node=notice.issuer_node,
            reason=_enum(notice.reason),
            superseded_by=notice.superseded_by,
            revoked_at=timestamp(notice.revoked_at),
            audience_node=notice.audience_node,
        )
    )


def revocation_notice_from_bytes(data: bytes) -> model.RevocationNotice:
    """A notice as received, once its signature verified; InvalidInput off the contract."""
    msg = _parse(pb.RevocationNotice, data, "revocation notice")
    assert isinstance(msg, pb.RevocationNotice)
    try:
        return model.RevocationNotice(
            seq=msg.seq,
            result_id=msg.result_id,
            # The issuer's signature vouches for the subject, as for a result it signed.
            subject=subject_from_pb(msg.subject, admitted=True),
            issuer_node=msg.issuer_node,
            reason=model.RevocationReason(msg.reason),
            revoked_at=from_timestamp(msg.revoked_at),
            audience_node=msg.audience_node,
            superseded_by=msg.superseded_by,
        )
    except ValueError as exc:  # an enum value outside the contract
        raise InvalidInput(f"revocation notice has a value outside the contract: {exc}") from None


def envelope_bytes(envelope: signing.Envelope) -> bytes:
    """An envelope in its wire form (as stored and streamed)."""
    return serialize(envelope_to_pb(envelope))


def envelope_from_bytes(data: bytes) -> signing.Envelope:
    msg = _parse(pb.Envelope, data, "envelope")
    assert isinstance(msg, pb.Envelope)
    return envelope_from_pb(msg)


# --- changefeed (DESIGN.md §5-§6) ---------------------------------------------------------


def change_batch_bytes(batch: model.ChangeBatch) -> bytes:
    msg = pb.ChangeBatchBody(
        first_seq=batch.first_seq,
        last_seq=batch.last_seq,
        issuer_node=batch.issuer_node,
        audience=batch.audience,
        issued_at=timestamp(batch.issued_at),
    )
    for change in batch.changes:
        item = msg.changes.add(seq=change.seq, kind=_enum(change.kind), result_id=change.result_id)
        if change.result is not None:
            item.result.CopyFrom(result_to_pb(change.result))
    return serialize(msg)


def _signed_result_from_pb(msg: pb.CreditResult) -> model.CreditResult:
    if not msg.result_id or not msg.subject.id:
        raise InvalidInput("a changed result must name its result id and subject")
    return model.CreditResult.trusted(
        result_id=msg.result_id,
        subject=model.SubjectRef.trusted(model.SubjectIdType(msg.subject.id_type), msg.subject.id),
        subject_name=msg.subject_name,
        subject_type=model.SubjectType(msg.subject_type),
        issuer_node=msg.issuer_node,
        scheme=msg.scheme,
        native_level=msg.native_level,
        native_score=msg.native_score if msg.HasField("native_score") else None,
        level=model.CreditLevel(msg.level),
        flags=tuple(msg.flags),
        indicators=dict(msg.indicators),
        evaluated_at=from_timestamp(msg.evaluated_at),
        valid_until=from_timestamp(msg.valid_until),
        status=model.ResultStatus(msg.status),
        supersedes=msg.supersedes,
    )


def sync_request(
    after_seq: int, max_batch: int, subject_types: Sequence[model.SubjectType], follow: bool
) -> spb.SyncRequest:
    return spb.SyncRequest(
        after_seq=after_seq,
        max_batch=max_batch,
        subject_types=[_enum(t) for t in subject_types],
        follow=follow,
    )


def change_batch_from_bytes(data: bytes) -> model.ChangeBatch:
    """A batch body as received, once its signature verified; InvalidInput when it breaks
    the contract (model.ChangeBatch checks its range and order, each enum its value).

    A batch carries up to a thousand results and a feed millions: each result's fields are
    vouched for by the issuer's signature over the batch, as a stored result's are by the
    import that checked it, and are not checked one by one again (`CreditResult.trusted`)."""
    msg = _parse(pb.ChangeBatchBody, data, "change batch")
    assert isinstance(msg, pb.ChangeBatchBody)
    try:
        changes = tuple(
            model.Change(
                seq=c.seq,
                kind=model.ChangeKind(c.kind),
                result=_signed_result_from_pb(c.result) if c.HasField("result") else None,
                result_id=c.result_id,
            )
            for c in msg.changes
        )
    except ValueError as exc:  # an enum value outside the contract
        raise InvalidInput(f"change batch has a value outside the contract: {exc}") from None
    return model.ChangeBatch(
        first_seq=msg.first_seq,
        last_seq=msg.last_seq,
        changes=changes,
        issuer_node=msg.issuer_node,
        audience=msg.audience,
        issued_at=from_timestamp(msg.issued_at),
    )


# --- trust lists (DESIGN.md §3, §5 TrustList, Member, PublicKey) ----------------------------


def public_key_to_pb(key: PublicKeyInfo) -> pb.PublicKey:
    msg = pb.PublicKey(
        keyid=key.keyid,
        spki_der=key.spki_der,
        algorithm=key.algorithm,
        not_before=timestamp(key.not_before),
        status=key.status,
    )
    if key.not_after is not None:  # no planned end: the field is absent
        msg.not_after.CopyFrom(timestamp(key.not_after))
    return msg


def public_key_from_pb(msg: pb.PublicKey) -> PublicKeyInfo:
    """The key, checked (InvalidInput when it breaks the model's rules)."""
    return PublicKeyInfo(
        keyid=msg.keyid,
        algorithm=msg.algorithm,
        spki_der=msg.spki_der,
        not_before=from_timestamp(msg.not_before),
        not_after=from_timestamp(msg.not_after) if msg.HasField("not_after") else None,
        status=msg.status,
    )


def trust_list_bytes(trust_list: TrustList) -> bytes:
    """The exact protobuf payload that a coordinator signs."""
    msg = pb.TrustList(
        zone=trust_list.zone,
        version=trust_list.version,
        issued_at=timestamp(trust_list.issued_at),
        expires_at=timestamp(trust_list.expires_at),
    )
    for member in trust_list.members:
        msg.members.add(
            node_id=member.node_id,
            name=member.name,
            division_code=member.division_code,
            endpoint=member.endpoint,
            tls_cert_sha256=member.tls_cert_sha256,
            signing_keys=[public_key_to_pb(k) for k in member.signing_keys],
            roles=list(member.roles),
            tls_cert_der=member.tls_cert_der,
            log_verifier_key=member.log_verifier_key,
            witness_verifier_key=member.witness_verifier_key,
        )
    return serialize(msg)


def trust_list_from_bytes(data: bytes) -> TrustList:
    """A trust list payload, decoded and checked (InvalidInput when it breaks the rules)."""
    msg = _parse(pb.TrustList, data, "trust list")
    assert isinstance(msg, pb.TrustList)
    return TrustList(
        zone=msg.zone,
        version=msg.version,
        issued_at=from_timestamp(msg.issued_at),
        expires_at=from_timestamp(msg.expires_at),
        members=tuple(
            Member(
                node_id=m.node_id,
                name=m.name,
                division_code=m.division_code,
                endpoint=m.endpoint,
                tls_cert_der=m.tls_cert_der,
                tls_cert_sha256=m.tls_cert_sha256,
                signing_keys=tuple(public_key_from_pb(k) for k in m.signing_keys),
                roles=tuple(m.roles),
                log_verifier_key=m.log_verifier_key,
                witness_verifier_key=m.witness_verifier_key,
            )
            for m in msg.members
        ),
    )


# --- envelopes and answers ---------------------------------------------------------------


def envelope_to_pb(envelope: signing.Envelope) -> pb.Envelope:
    return pb.Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=[pb.Signature(keyid=s.keyid, sig=s.sig) for s in envelope.signatures],
    )


def envelope_from_pb(msg: pb.Envelope) -> signing.Envelope:
    return signing.Envelope(
        msg.payload_type,
        msg.payload,
        tuple(signing.EnvelopeSignature(s.keyid, s.sig) for s in msg.signatures),
    )


def receipt_to_pb(
    log_index: int, leaf_hash: bytes, checkpoint: str, proof: Sequence[bytes]
) -> pb.LogReceipt:
    return pb.LogReceipt(
        log_index=log_index,
        leaf_hash=leaf_hash,
        checkpoint=checkpoint,
        inclusion_proof=list(proof),
    )


def parse_query(data: bytes) -> pb.CreditQuery:
    msg = _parse(pb.CreditQuery, data, "credit query")
    assert isinstance(msg, pb.CreditQuery)
    return msg


def parse_response(data: bytes) -> spb.QueryCreditResponse:
    msg = _parse(spb.QueryCreditResponse, data, "query response")
    assert isinstance(msg, spb.QueryCreditResponse)
    return msg
