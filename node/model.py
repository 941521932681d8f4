"""The canonical domain model: frozen, typed dataclasses validated once on construction.

Enum values mirror the wire contract's numbers (DESIGN.md §5) so `node.wire` converts by value.
No I/O and no generated protobuf code here; `node.wire` is the only bridge to the wire format.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import math
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType

from node import identifiers
from node.errors import InvalidInput


class SubjectIdType(enum.IntEnum):
    USCC = 1
    RESIDENT_ID = 2


class SubjectType(enum.IntEnum):
    ENTERPRISE = 1
    INDIVIDUAL_BUSINESS = 2
    SOCIAL_ORGANIZATION = 3
    PUBLIC_INSTITUTION = 4
    GOVERNMENT_AGENCY = 5
    NATURAL_PERSON = 6


class CreditLevel(enum.IntEnum):
    """The national four-grade evaluation: A 优, B 良, C 中, D 差."""

    A = 1
    B = 2
    C = 3
    D = 4


class ResultStatus(enum.IntEnum):
    ACTIVE = 1
    SUPERSEDED = 2
    REVOKED = 3


class Direction(enum.IntEnum):
    ANSWERED = 1
    ASKED = 2


class Decision(enum.IntEnum):
    GRANTED = 1
    REFUSED = 2
    NOT_FOUND = 3
    FAILED = 4


class RevocationReason(enum.IntEnum):
    CREDIT_REPAIRED = 1
    RE_EVALUATED = 2
    CORRECTED = 3
    EXPIRED = 4


class ChangeKind(enum.IntEnum):
    UPSERT = 1
    REVOKE = 2


NODE_ID_RE = re.compile(r"^cn-\d{6}\Z")
FLAG_RE = re.compile(r"^[A-Z][A-Z0-9_]*\Z")
HMAC_SUBJECT_PREFIX = "hmac-sha256:"
_HMAC_SUBJECT_RE = re.compile(r"^hmac-sha256:[0-9a-f]{64}\Z")


def require_node_id(value: str, what: str = "node id") -> str:
    if not NODE_ID_RE.match(value):
        raise InvalidInput(f"{what} must look like cn-330500 (cn- and six digits), got {value!r}")
    return value


def require_aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} must carry a time zone, got naive {value.isoformat()}")
    return value.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class SubjectRef:
    """A subject by identifier; the id is normalised and checked on construction.

    A resident id may also be held in its pseudonymous log form (`hmac-sha256:<hex>`), which is
    the only form an exchange record ever carries (DESIGN.md §5).
    """

    id_type: SubjectIdType
    id: str
    _: dataclasses.KW_ONLY
    # A USCC whose check character is wrong is a known legacy register code (DESIGN.md §9)
    # when it is in `legacy_codes` (the node's list: ingest, a peer's query) or `admitted`
    # already (read from our store, signed by its issuer, asked about with --legacy).
    legacy_codes: dataclasses.InitVar[AbstractSet[str]] = frozenset()
    admitted: dataclasses.InitVar[bool] = False

    def __post_init__(self, legacy_codes: AbstractSet[str], admitted: bool) -> None:
        id_type = self.id_type
        if type(id_type) is not SubjectIdType:  # given as a name or a number
            id_type = SubjectIdType(id_type)
            object.__setattr__(self, "id_type", id_type)
        if id_type is SubjectIdType.RESIDENT_ID and _HMAC_SUBJECT_RE.match(self.id):
            return
        object.__setattr__(
            self,
            "id",
            identifiers.normalise_subject_id(
                id_type.name, self.id, legacy_codes=legacy_codes, admitted=admitted
            ),
        )

    @classmethod
    def trusted(cls, id_type: SubjectIdType, id: str) -> SubjectRef:
        """A subject from this node's own store, checked when it was stored."""
        subject = object.__new__(cls)
        object.__setattr__(subject, "id_type", id_type)
        object.__setattr__(subject, "id", id)
        return subject

    @property
    def is_pseudonymous(self) -> bool:
        return self.id.startswith(HMAC_SUBJECT_PREFIX)


@dataclasses.dataclass(frozen=True, slots=True)
class CreditResult:
    """One subject's evaluation result as published by its issuer node.

    The binding fields (audience, zone, purpose, request id/digest, log index) are empty on a
    stored result and filled when the result is issued to a requester.
    """

    result_id: str
    subject: SubjectRef
    subject_name: str
    subject_type: SubjectType
    issuer_node: str
    scheme: str
    native_level: str
    level: CreditLevel
    evaluated_at: dt.datetime
    valid_until: dt.datetime
    native_score: float | None = None
    flags: tuple[str, ...] = ()
    indicators: Mapping[str, str] = dataclasses.field(default_factory=dict)
    issued_at: dt.datetime | None = None
    audience_node: str = ""
    zone: str = ""
    purpose: str = ""
    request_id: str = ""
    request_digest: bytes = b""
    log_index: int = 0
    status: ResultStatus = ResultStatus.ACTIVE
    supersedes: str = ""

    def __post_init__(self) -> None:
        if not self.result_id:
            raise InvalidInput("result_id must not be empty")
        if not self.subject_name.strip():
            raise InvalidInput(f"result {self.result_id}: subject name must not be empty")
        object.__setattr__(self, "subject_type", SubjectType(self.subject_type))
        object.__setattr__(self, "level", CreditLevel(self.level))
        object.__setattr__(self, "status", ResultStatus(self.status))
        require_node_id(self.issuer_node, "issuer node")
        if self.audience_node:
            require_node_id(self.audience_node, "audience node")
        if "@" not in self.scheme:
            raise InvalidInput(
                f"scheme must name its version like 'zj-public-credit@2023', got {self.scheme!r}"
            )
        if not self.native_level:
            raise InvalidInput(f"result {self.result_id}: native level must not be empty")
        if self.native_score is not None and not math.isfinite(self.native_score):
            raise InvalidInput(f"result {self.result_id}: native score must be a finite number")
        evaluated = require_aware(self.evaluated_at, "evaluated_at")
        valid_until = require_aware(self.valid_until, "valid_until")
        if valid_until <= evaluated:
            raise InvalidInput(
                f"result {self.result_id}: valid_until {valid_until.date()} is not after "
                f"evaluated_at {evaluated.date()}"
            )
        object.__setattr__(self, "evaluated_at", evaluated)
        object.__setattr__(self, "valid_until", valid_until)
        if self.issued_at is not None:
            object.__setattr__(self, "issued_at", require_aware(self.issued_at, "issued_at"))
        flags = tuple(self.flags)
        for flag in flags:
            if not FLAG_RE.match(flag):
                raise InvalidInput(f"flag {flag!r} must be UPPER_SNAKE like SERIOUS_DISHONESTY")
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "indicators", MappingProxyType(dict(self.indicators)))
        if self.log_index < 0:
            raise InvalidInput("log_index must not be negative")
        if self.request_digest and len(self.request_digest) != 32:
            raise InvalidInput("request_digest must be a 32-byte SHA-256 digest")

    def bound(self, **changes: object) -> CreditResult:
        """A copy with binding fields (audience, zone, purpose, request, log index, issue time)
        set and optional fields trimmed. Only the changed fields are checked: the rest were
        checked when this result was built (the answer path calls this for every answer)."""
        unknown = set(changes) - _BINDABLE
        if unknown:
            return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        copy = _copy(self)
        for name, value in changes.items():
            object.__setattr__(copy, name, value)
        if "audience_node" in changes and copy.audience_node:
            require_node_id(copy.audience_node, "audience node")
        if copy.issued_at is not None:
            object.__setattr__(copy, "issued_at", require_aware(copy.issued_at, "issued_at"))
        if copy.request_digest and len(copy.request_digest) != 32:
            raise InvalidInput("request_digest must be a 32-byte SHA-256 digest")
        if copy.log_index < 0:
            raise InvalidInput("log_index must not be negative")
        if not copy.native_level:
            raise InvalidInput(f"result {copy.result_id}: native level must not be empty")
        if "flags" in changes:
            object.__setattr__(copy, "flags", tuple(copy.flags))
            for flag in copy.flags:
                if not FLAG_RE.match(flag):
                    raise InvalidInput(f"flag {flag!r} must be UPPER_SNAKE like SERIOUS_DISHONESTY")
        if copy.native_score is not None and not math.isfinite(copy.native_score):
            raise InvalidInput(f"result {copy.result_id}: native score must be a finite number")
        if "indicators" in changes:
            object.__setattr__(copy, "indicators", MappingProxyType(dict(copy.indicators)))
        return copy

    @classmethod
    def trusted(cls, **fields: object) -> CreditResult:
        """A result from this node's own store, checked when it was imported: built without
        checking again (the read path of every answer). Never for outside input."""
        values = {**_DEFAULTS, **fields}
        if values.keys() != _FIELD_SET:
            unknown = sorted(set(values) - set(_FIELD_NAMES))
            missing = sorted(set(_FIELD_NAMES) - set(values))
            raise TypeError(f"trusted CreditResult: unknown {unknown}, missing {missing}")
        result = object.__new__(cls)
        setattr_ = object.__setattr__
        for name in _FIELD_NAMES:
            setattr_(result, name, values[name])
        setattr_(result, "indicators", MappingProxyType(dict(result.indicators)))
        return result


def _defaults() -> dict[str, object]:
    defaults: dict[str, object] = {}
    for f in dataclasses.fields(CreditResult):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif callable(f.default_factory):
            defaults[f.name] = f.default_factory()
    return defaults


_DEFAULTS = _defaults()

_BINDABLE = frozenset(
    {
        "issued_at",
        "audience_node",
        "zone",
        "purpose",
        "request_id",
        "request_digest",
        "log_index",
        "native_score",
        "native_level",
        "flags",
        "indicators",
    }
)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(CreditResult))
_FIELD_SET = frozenset(_FIELD_NAMES)


def _copy(result: CreditResult) -> CreditResult:
    copy = object.__new__(CreditResult)
    for name in _FIELD_NAMES:
        object.__setattr__(copy, name, getattr(result, name))
    return copy


@dataclasses.dataclass(frozen=True, slots=True)
class ExchangeRecord:
    """One entry of the exchange log: who asked whom, what, why, and what was decided."""

    time: dt.datetime
    direction: Direction
    requester_node: str
    responder_node: str
    zone: str
    purpose: str
    subject: SubjectRef | None
    request_id: str
    request_digest: bytes
    decision: Decision
    reason: str = ""
    result_id: str = ""
    result_digest: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", require_aware(self.time, "time"))
        object.__setattr__(self, "direction", Direction(self.direction))
        object.__setattr__(self, "decision", Decision(self.decision))
        if (
            self.subject is not None
            and self.subject.id_type is SubjectIdType.RESIDENT_ID
            and not self.subject.is_pseudonymous
        ):
            raise InvalidInput("an exchange record never holds a resident id in clear")
        if self.decision is Decision.GRANTED and not self.result_digest:
            raise InvalidInput("a GRANTED record must carry the result digest")
        for name in ("request_digest", "result_digest"):
            value = getattr(self, name)
            if value and len(value) != 32:
                raise InvalidInput(f"{name} must be a 32-byte SHA-256 digest")


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationNotice:
    seq: int
    result_id: str
    subject: SubjectRef
    issuer_node: str
    reason: RevocationReason
    revoked_at: dt.datetime
    audience_node: str
    superseded_by: str = ""

    def __post_init__(self) -> None:
        if self.seq < 1:
            raise InvalidInput("revocation seq starts at 1")
        object.__setattr__(self, "reason", RevocationReason(self.reason))
        object.__setattr__(self, "revoked_at", require_aware(self.revoked_at, "revoked_at"))
        require_node_id(self.issuer_node, "issuer node")
        require_node_id(self.audience_node, "audience node")


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One changefeed entry: an upserted result, or the id of a revoked one."""

    seq: int
    kind: ChangeKind
    result: CreditResult | None = None
    result_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ChangeKind(self.kind))
        if self.seq < 1:
            raise InvalidInput("change seq starts at 1")
        if self.kind is ChangeKind.UPSERT and self.result is None:
            raise InvalidInput("an UPSERT change carries the result")
        if self.kind is ChangeKind.REVOKE and not self.result_id:
            raise InvalidInput("a REVOKE change names the result id")


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeBatch:
    first_seq: int
    last_seq: int
    changes: tuple[Change, ...]
    issuer_node: str
    audience: str
    issued_at: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", tuple(self.changes))
        object.__setattr__(self, "issued_at", require_aware(self.issued_at, "issued_at"))
        # The batch covers every seq in [first_seq, last_seq]; changes the audience may not
        # see are left out, so its changes are an increasing subset of that range.
        if not 1 <= self.first_seq <= self.last_seq:
            raise InvalidInput(
                f"batch range {self.first_seq}..{self.last_seq} is not 1 <= first <= last"
            )
        seqs = [c.seq for c in self.changes]
        if any(b <= a for a, b in itertools.pairwise(seqs)) or (
            seqs and not (self.first_seq <= seqs[0] and seqs[-1] <= self.last_seq)
        ):
            raise InvalidInput(
                f"batch {self.first_seq}..{self.last_seq}: changes must be in increasing seq "
                "order inside the batch's range"
            )


REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}\Z")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9\-]{0,63}\Z")


@dataclasses.dataclass(frozen=True, slots=True)
class CreditQuery:
    """A peer's question: this subject's result, under this zone, for this purpose."""

    request_id: str
    subject: SubjectRef
    zone: str
    purpose: str

    def __post_init__(self) -> None:
        # DESIGN.md §6: a value over its limit is refused without being echoed or stored.
        if not REQUEST_ID_RE.match(self.request_id):
            raise InvalidInput(bad_request_id(self.request_id))
        if not SLUG_RE.match(self.zone):
            raise InvalidInput(
                f"zone must be a lower-case slug of at most 64 characters like 'hjjw' "
                f"({_what_is_wrong(self.zone, 64)})"
            )
        if not SLUG_RE.match(self.purpose):
            raise InvalidInput(
                f"purpose must be a lower-case slug of at most 64 characters like 'xinyi-dai' "
                f"({_what_is_wrong(self.purpose, 64)})"
            )


def bad_request_id(request_id: str) -> str:
    """Why a request id is refused, without echoing it."""
    return (
        "request_id must be 1-128 characters of letters, digits and . _ : - "
        f"({_what_is_wrong(request_id, 128)})"
    )


def _what_is_wrong(value: str, limit: int) -> str:
    if not value:
        return "got none"
    if len(value) > limit:
        return f"got {len(value):,} characters"
    return "got a character outside that set"
