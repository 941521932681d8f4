import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubjectIdType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBJECT_ID_TYPE_UNSPECIFIED: _ClassVar[SubjectIdType]
    USCC: _ClassVar[SubjectIdType]
    RESIDENT_ID: _ClassVar[SubjectIdType]

class SubjectType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBJECT_TYPE_UNSPECIFIED: _ClassVar[SubjectType]
    ENTERPRISE: _ClassVar[SubjectType]
    INDIVIDUAL_BUSINESS: _ClassVar[SubjectType]
    SOCIAL_ORGANIZATION: _ClassVar[SubjectType]
    PUBLIC_INSTITUTION: _ClassVar[SubjectType]
    GOVERNMENT_AGENCY: _ClassVar[SubjectType]
    NATURAL_PERSON: _ClassVar[SubjectType]

class CreditLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDIT_LEVEL_UNSPECIFIED: _ClassVar[CreditLevel]
    LEVEL_A: _ClassVar[CreditLevel]
    LEVEL_B: _ClassVar[CreditLevel]
    LEVEL_C: _ClassVar[CreditLevel]
    LEVEL_D: _ClassVar[CreditLevel]

class ResultStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_STATUS_UNSPECIFIED: _ClassVar[ResultStatus]
    ACTIVE: _ClassVar[ResultStatus]
    SUPERSEDED: _ClassVar[ResultStatus]
    REVOKED: _ClassVar[ResultStatus]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    ANSWERED: _ClassVar[Direction]
    ASKED: _ClassVar[Direction]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    GRANTED: _ClassVar[Decision]
    REFUSED: _ClassVar[Decision]
    NOT_FOUND: _ClassVar[Decision]
    FAILED: _ClassVar[Decision]

class RevocationReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOCATION_REASON_UNSPECIFIED: _ClassVar[RevocationReason]
    CREDIT_REPAIRED: _ClassVar[RevocationReason]
    RE_EVALUATED: _ClassVar[RevocationReason]
    CORRECTED: _ClassVar[RevocationReason]
    EXPIRED: _ClassVar[RevocationReason]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    UPSERT: _ClassVar[ChangeKind]
    REVOKE: _ClassVar[ChangeKind]
SUBJECT_ID_TYPE_UNSPECIFIED: SubjectIdType
USCC: SubjectIdType
RESIDENT_ID: SubjectIdType
SUBJECT_TYPE_UNSPECIFIED: SubjectType
ENTERPRISE: SubjectType
INDIVIDUAL_BUSINESS: SubjectType
SOCIAL_ORGANIZATION: SubjectType
PUBLIC_INSTITUTION: SubjectType
GOVERNMENT_AGENCY: SubjectType
NATURAL_PERSON: SubjectType
CREDIT_LEVEL_UNSPECIFIED: CreditLevel
LEVEL_A: CreditLevel
LEVEL_B: CreditLevel
LEVEL_C: CreditLevel
LEVEL_D: CreditLevel
RESULT_STATUS_UNSPECIFIED: ResultStatus
ACTIVE: ResultStatus
SUPERSEDED: ResultStatus
REVOKED: ResultStatus
DIRECTION_UNSPECIFIED: Direction
ANSWERED: Direction
ASKED: Direction
DECISION_UNSPECIFIED: Decision
GRANTED: Decision
REFUSED: Decision
NOT_FOUND: Decision
FAILED: Decision
REVOCATION_REASON_UNSPECIFIED: RevocationReason
CREDIT_REPAIRED: RevocationReason
RE_EVALUATED: RevocationReason
CORRECTED: RevocationReason
EXPIRED: RevocationReason
CHANGE_KIND_UNSPECIFIED: ChangeKind
UPSERT: ChangeKind
REVOKE: ChangeKind

class SubjectRef(_message.Message):
    __slots__ = ("id_type", "id")
    ID_TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_type: SubjectIdType
    id: str
    def __init__(self, id_type: _Optional[_Union[SubjectIdType, str]] = ..., id: _Optional[str] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("keyid", "sig")
    KEYID_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    keyid: str
    sig: bytes
    def __init__(self, keyid: _Optional[str] = ..., sig: _Optional[bytes] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("payload_type", "payload", "signatures")
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    payload_type: str
    payload: bytes
    signatures: _containers.RepeatedCompositeFieldContainer[Signature]
    def __init__(self, payload_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., signatures: _Optional[_Iterable[_Union[Signature, _Mapping]]] = ...) -> None: ...

class CreditResult(_message.Message):
    __slots__ = ("result_id", "subject", "subject_name", "subject_type", "issuer_node", "scheme", "native_level", "native_score", "level", "flags", "indicators", "evaluated_at", "valid_until", "issued_at", "audience_node", "zone", "purpose", "request_id", "request_digest", "log_index", "status", "supersedes")
    class IndicatorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_NODE_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    NATIVE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    NATIVE_SCORE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    INDICATORS_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_NODE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDES_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    subject: SubjectRef
    subject_name: str
    subject_type: SubjectType
    issuer_node: str
    scheme: str
    native_level: str
    native_score: float
    level: CreditLevel
    flags: _containers.RepeatedScalarFieldContainer[str]
    indicators: _containers.ScalarMap[str, str]
    evaluated_at: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    issued_at: _timestamp_pb2.Timestamp
    audience_node: str
    zone: str
    purpose: str
    request_id: str
    request_digest: bytes
    log_index: int
    status: ResultStatus
    supersedes: str
    def __init__(self, result_id: _Optional[str] = ..., subject: _Optional[_Union[SubjectRef, _Mapping]] = ..., subject_name: _Optional[str] = ..., subject_type: _Optional[_Union[SubjectType, str]] = ..., issuer_node: _Optional[str] = ..., scheme: _Optional[str] = ..., native_level: _Optional[str] = ..., native_score: _Optional[float] = ..., level: _Optional[_Union[CreditLevel, str]] = ..., flags: _Optional[_Iterable[str]] = ..., indicators: _Optional[_Mapping[str, str]] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audience_node: _Optional[str] = ..., zone: _Optional[str] = ..., purpose: _Optional[str] = ..., request_id: _Optional[str] = ..., request_digest: _Optional[bytes] = ..., log_index: _Optional[int] = ..., status: _Optional[_Union[ResultStatus, str]] = ..., supersedes: _Optional[str] = ...) -> None: ...

class CreditQuery(_message.Message):
    __slots__ = ("request_id", "subject", "zone", "purpose")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subject: SubjectRef
    zone: str
    purpose: str
    def __init__(self, request_id: _Optional[str] = ..., subject: _Optional[_Union[SubjectRef, _Mapping]] = ..., zone: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class LogReceipt(_message.Message):
    __slots__ = ("log_index", "leaf_hash", "checkpoint", "inclusion_proof")
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    log_index: int
    leaf_hash: bytes
    checkpoint: str
    inclusion_proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, log_index: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., checkpoint: _Optional[str] = ..., inclusion_proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PublicKey(_message.Message):
    __slots__ = ("keyid", "spki_der", "algorithm", "not_before", "not_after", "status")
    KEYID_FIELD_NUMBER: _ClassVar[int]
    SPKI_DER_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    keyid: str
    spki_der: bytes
    algorithm: str
    not_before: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    status: str
    def __init__(self, keyid: _Optional[str] = ..., spki_der: _Optional[bytes] = ..., algorithm: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "name", "division_code", "zones", "signing_keys", "schemes", "purposes", "log_origin", "log_verifier_key", "software_version", "witness_verifier_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIVISION_CODE_FIELD_NUMBER: _ClassVar[int]
    ZONES_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEYS_FIELD_NUMBER: _ClassVar[int]
    SCHEMES_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    LOG_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    LOG_VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    WITNESS_VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    division_code: str
    zones: _containers.RepeatedScalarFieldContainer[str]
    signing_keys: _containers.RepeatedCompositeFieldContainer[PublicKey]
    schemes: _containers.RepeatedScalarFieldContainer[str]
    purposes: _containers.RepeatedScalarFieldContainer[str]
    log_origin: str
    log_verifier_key: str
    software_version: str
    witness_verifier_key: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., division_code: _Optional[str] = ..., zones: _Optional[_Iterable[str]] = ..., signing_keys: _Optional[_Iterable[_Union[PublicKey, _Mapping]]] = ..., schemes: _Optional[_Iterable[str]] = ..., purposes: _Optional[_Iterable[str]] = ..., log_origin: _Optional[str] = ..., log_verifier_key: _Optional[str] = ..., software_version: _Optional[str] = ..., witness_verifier_key: _Optional[str] = ...) -> None: ...

class ExchangeRecord(_message.Message):
    __slots__ = ("time", "direction", "requester_node", "responder_node", "zone", "purpose", "subject", "request_id", "request_digest", "decision", "reason", "result_id", "result_digest")
    TIME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_NODE_FIELD_NUMBER: _ClassVar[int]
    RESPONDER_NODE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    direction: Direction
    requester_node: str
    responder_node: str
    zone: str
    purpose: str
    subject: SubjectRef
    request_id: str
    request_digest: bytes
    decision: Decision
    reason: str
    result_id: str
    result_digest: bytes
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., direction: _Optional[_Union[Direction, str]] = ..., requester_node: _Optional[str] = ..., responder_node: _Optional[str] = ..., zone: _Optional[str] = ..., purpose: _Optional[str] = ..., subject: _Optional[_Union[SubjectRef, _Mapping]] = ..., request_id: _Optional[str] = ..., request_digest: _Optional[bytes] = ..., decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[str] = ..., result_id: _Optional[str] = ..., result_digest: _Optional[bytes] = ...) -> None: ...

class RevocationNotice(_message.Message):
    __slots__ = ("seq", "result_id", "subject", "issuer_node", "reason", "superseded_by", "revoked_at", "audience_node")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_NODE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    result_id: str
    subject: SubjectRef
    issuer_node: str
    reason: RevocationReason
    superseded_by: str
    revoked_at: _timestamp_pb2.Timestamp
    audience_node: str
    def __init__(self, seq: _Optional[int] = ..., result_id: _Optional[str] = ..., subject: _Optional[_Union[SubjectRef, _Mapping]] = ..., issuer_node: _Optional[str] = ..., reason: _Optional[_Union[RevocationReason, str]] = ..., superseded_by: _Optional[str] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audience_node: _Optional[str] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("seq", "kind", "result", "result_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: ChangeKind
    result: CreditResult
    result_id: str
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., result: _Optional[_Union[CreditResult, _Mapping]] = ..., result_id: _Optional[str] = ...) -> None: ...

class ChangeBatchBody(_message.Message):
    __slots__ = ("first_seq", "last_seq", "changes", "issuer_node", "audience", "issued_at")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ISSUER_NODE_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    last_seq: int
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    issuer_node: str
    audience: str
    issued_at: _timestamp_pb2.Timestamp
    def __init__(self, first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., issuer_node: _Optional[str] = ..., audience: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("node_id", "name", "division_code", "endpoint", "tls_cert_sha256", "signing_keys", "roles", "tls_cert_der", "log_verifier_key", "witness_verifier_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIVISION_CODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEYS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_DER_FIELD_NUMBER: _ClassVar[int]
    LOG_VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    WITNESS_VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    division_code: str
    endpoint: str
    tls_cert_sha256: str
    signing_keys: _containers.RepeatedCompositeFieldContainer[PublicKey]
    roles: _containers.RepeatedScalarFieldContainer[str]
    tls_cert_der: bytes
    log_verifier_key: str
    witness_verifier_key: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., division_code: _Optional[str] = ..., endpoint: _Optional[str] = ..., tls_cert_sha256: _Optional[str] = ..., signing_keys: _Optional[_Iterable[_Union[PublicKey, _Mapping]]] = ..., roles: _Optional[_Iterable[str]] = ..., tls_cert_der: _Optional[bytes] = ..., log_verifier_key: _Optional[str] = ..., witness_verifier_key: _Optional[str] = ...) -> None: ...

class TrustList(_message.Message):
    __slots__ = ("zone", "version", "issued_at", "expires_at", "members")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    zone: str
    version: int
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, zone: _Optional[str] = ..., version: _Optional[int] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...
