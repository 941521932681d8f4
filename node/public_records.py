"""Public records that flag a subject's results (floor 2, pure; DESIGN.md §8-§9).

Two kinds: an administrative penalty (行政处罚, from the 双公示 exchange) adds
ADMINISTRATIVE_PENALTY or SERIOUS_ADMINISTRATIVE_PENALTY by its class while in force; an entry
of the serious-dishonesty list (严重失信主体名单) adds SERIOUS_DISHONESTY until a removal (移出)
closes it. Each kind is the authority for its own flags only (`MANAGED_FLAGS`): a change of
one kind never touches a flag the other kind, or the platform's export, gave.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping

from node.errors import InvalidInput
from node.model import RevocationReason, SubjectRef
from node.repair import FLAG_BY_SEVERITY, MAX_RECORD_ID_CHARS, PenaltyStatus, Severity

SERIOUS_DISHONESTY = "SERIOUS_DISHONESTY"


class RecordKind(enum.IntEnum):
    PENALTY = 1  # 行政处罚
    SERIOUS_DISHONESTY_LIST = 2  # 严重失信主体名单 entry


# The flags each kind sets and clears on a subject's results.
MANAGED_FLAGS: Mapping[RecordKind, frozenset[str]] = {
    RecordKind.PENALTY: frozenset(FLAG_BY_SEVERITY.values()),
    RecordKind.SERIOUS_DISHONESTY_LIST: frozenset({SERIOUS_DISHONESTY}),
}


@dataclasses.dataclass(frozen=True, slots=True)
class PenaltyRecord:
    """One record of a subject: a penalty (class, decision date, the publicity end the
    authority announced, CF_GSJZQ) or a list entry (class SERIOUS, decided_on = listed on).
    `content` holds the source's other fields by canonical name, never a person's id."""

    record_id: str
    subject: SubjectRef
    subject_name: str
    severity: Severity
    decided_on: dt.date
    content: Mapping[str, str] = dataclasses.field(default_factory=dict)
    status: PenaltyStatus = PenaltyStatus.IN_FORCE
    closed_at: dt.datetime | None = None
    close_reason: str = ""
    kind: RecordKind = RecordKind.PENALTY
    publicity_ends_on: dt.date | None = None

    def __post_init__(self) -> None:
        if not self.record_id or len(self.record_id) > MAX_RECORD_ID_CHARS:
            raise InvalidInput(f"a record id has 1 to {MAX_RECORD_ID_CHARS} characters")
        # Coerced only when given as plain ints (a store row): a million records are built.
        if type(self.severity) is not Severity:
            object.__setattr__(self, "severity", Severity(self.severity))
        if type(self.status) is not PenaltyStatus:
            object.__setattr__(self, "status", PenaltyStatus(self.status))
        if type(self.kind) is not RecordKind:
            object.__setattr__(self, "kind", RecordKind(self.kind))
        if self.publicity_ends_on is not None and self.publicity_ends_on < self.decided_on:
            raise InvalidInput("a record's publicity cannot end before its decision date")

    @property
    def flag(self) -> str:
        if self.kind is RecordKind.SERIOUS_DISHONESTY_LIST:
            return SERIOUS_DISHONESTY
        return FLAG_BY_SEVERITY[self.severity]


@dataclasses.dataclass(frozen=True, slots=True)
class ListRemoval:
    """A removal (移出) from the serious-dishonesty list: closes the entry `record_id` (the
    entry's own id: subject, list and listing date) on `removed_on`, for `reason`."""

    record_id: str
    subject: SubjectRef
    subject_name: str
    removed_on: dt.date
    reason: RevocationReason = RevocationReason.CREDIT_REPAIRED
    content: Mapping[str, str] = dataclasses.field(default_factory=dict)


ListChange = PenaltyRecord | ListRemoval
