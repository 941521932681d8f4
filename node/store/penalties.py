"""Penalty records and what they do to results (floor 3; DESIGN.md §9, node.repair).

This module owns `penalty_records` (migration 0005_penalties). A record in force adds its flag
(node.repair.FLAG_BY_SEVERITY) to every current result of its subject; closing it (repair or
expiry) takes the flag away again. A result's content never changes under its id: a changed
flag set is re-issued as a new result that supersedes the old one, with the change journalled
(REVOKE old, UPSERT new) in the same transaction. A result whose flag was taken away by repair
or expiry is REVOKED with that reason, so it is never served, replayed or fed again, and every
peer that received it is sent a notice (node.revocation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Date, Index, SmallInteger, String, Table, Text, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.orm import Mapped, mapped_column

from node.errors import InvalidInput, NotFound
from node.model import (
    ChangeKind,
    CreditResult,
    ResultStatus,
    RevocationReason,
    SubjectIdType,
    SubjectRef,
)
from node.repair import FLAG_BY_SEVERITY, MAX_RECORD_ID_CHARS, PenaltyStatus, Severity
from node.store.engine import Database
from node.store.journal import append_changes
from node.store.results import (
    RESULTS,
    PlannedInsert,
    content_digest,
    result_from_row,
    result_row_values,
)
from node.store.schema import Base, UtcDateTime

PENALTY_FLAGS = frozenset(FLAG_BY_SEVERITY.values())


class PenaltyRecordRow(Base):
    """One administrative penalty of one subject (行政处罚决定)."""

    __tablename__ = "penalty_records"

    record_id: Mapped[str] = mapped_column(String, primary_key=True)
    id_type: Mapped[int] = mapped_column(SmallInteger)
    subject_id: Mapped[str] = mapped_column(String)
    subject_name: Mapped[str] = mapped_column(Text)
    severity: Mapped[int] = mapped_column(SmallInteger)  # node.repair.Severity
    decided_on: Mapped[dt.date] = mapped_column(Date)  # China calendar day
    flag: Mapped[str] = mapped_column(String)
    content: Mapped[str] = mapped_column(Text)  # JSON object of the source's fields
    status: Mapped[int] = mapped_column(SmallInteger)  # node.repair.PenaltyStatus
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    close_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_penalty_records_subject", "subject_id", "id_type"),
        Index("ix_penalty_records_status", "status", "decided_on"),
    )


PENALTIES: Table = PenaltyRecordRow.__table__  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True, slots=True)
class PenaltyRecord:
    record_id: str
    subject: SubjectRef
    subject_name: str
    severity: Severity
    decided_on: dt.date
    content: Mapping[str, str] = dataclasses.field(default_factory=dict)
    status: PenaltyStatus = PenaltyStatus.IN_FORCE
    closed_at: dt.datetime | None = None
    close_reason: str = ""

    def __post_init__(self) -> None:
        if not self.record_id or len(self.record_id) > MAX_RECORD_ID_CHARS:
            raise InvalidInput(f"a record id has 1 to {MAX_RECORD_ID_CHARS} characters")
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "status", PenaltyStatus(self.status))

    @property
    def flag(self) -> str:
        return FLAG_BY_SEVERITY[self.severity]


@dataclasses.dataclass(frozen=True, slots=True)
class Reissued:
    """What a change of a subject's records did to its results: old id -> new id."""

    replaced: Mapping[str, str]


# (record, today) -> None or raises: the rule a closing must pass (node.repair.check_repair).
CloseCheck = Callable[[PenaltyRecord], None]


class PenaltyRepository:
    """`store.penalties`."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def add(self, records: Sequence[PenaltyRecord], now: dt.datetime) -> Reissued:
        """Record penalties in force (all or nothing); their subjects' results gain the flags.
        A record id already held is refused."""
        with self._store.begin() as conn:
            self._store.lock_changes(conn)
            held = {
                r.record_id
                for r in conn.execute(
                    select(PENALTIES.c.record_id).where(
                        PENALTIES.c.record_id.in_([r.record_id for r in records])
                    )
                )
            }
            if held:
                raise InvalidInput(
                    f"{len(held)} record ids are held already (e.g. {sorted(held)[0][:128]!r}); "
                    "nothing was recorded"
                )
            if records:
                conn.execute(insert(PENALTIES), [_values(r, now) for r in records])
            replaced: dict[str, str] = {}
            for subject in {r.subject for r in records}:
                replaced |= self._reflag(conn, subject, now, None)
        return Reissued(replaced)

    def get(self, record_id: str) -> PenaltyRecord | None:
        with self._store.connect() as conn:
            row = conn.execute(select(PENALTIES).where(PENALTIES.c.record_id == record_id)).first()
        return None if row is None else _record(row._mapping)

    def in_force(self) -> list[PenaltyRecord]:
        """Every record in force, oldest decision first."""
        query = (
            select(PENALTIES)
            .where(PENALTIES.c.status == int(PenaltyStatus.IN_FORCE))
            .order_by(PENALTIES.c.decided_on, PENALTIES.c.record_id)
        )
        with self._store.connect() as conn:
            return [_record(row._mapping) for row in conn.execute(query)]

    def close(
        self,
        record_id: str,
        status: PenaltyStatus,
        reason: str,
        now: dt.datetime,
        check: CloseCheck,
    ) -> Reissued:
        """Repair or expire one record, if `check` lets it; the subject's results lose its flag
        (unless another record in force carries the same one). All or nothing."""
        revocation = (
            RevocationReason.CREDIT_REPAIRED
            if status is PenaltyStatus.REPAIRED
            else RevocationReason.EXPIRED
        )
        with self._store.begin() as conn:
            self._store.lock_changes(conn)
            row = conn.execute(select(PENALTIES).where(PENALTIES.c.record_id == record_id)).first()
            if row is None:
                raise NotFound(f"no penalty record {record_id[:128]!r} here", reason="NO_RECORD")
            record = _record(row._mapping)
            check(record)  # raises when the rule refuses; nothing is written then
            conn.execute(
                update(PENALTIES)
                .where(PENALTIES.c.record_id == record_id)
                .values(status=int(status), closed_at=now, close_reason=reason)
            )
            return Reissued(self._reflag(conn, record.subject, now, revocation))

    def _reflag(
        self,
        conn: Connection,
        subject: SubjectRef,
        now: dt.datetime,
        revocation: RevocationReason | None,
    ) -> dict[str, str]:
        """Re-issue the subject's current results whose penalty flags differ from its records
        in force. `revocation`: the old results are REVOKED for it (flags taken away by repair
        or expiry); None: SUPERSEDED (a new penalty)."""
        flags = {
            r.flag
            for r in conn.execute(
                select(PENALTIES.c.flag).where(
                    PENALTIES.c.subject_id == subject.id,
                    PENALTIES.c.id_type == int(subject.id_type),
                    PENALTIES.c.status == int(PenaltyStatus.IN_FORCE),
                )
            )
        }
        current = [
            result_from_row(row)
            for row in conn.execute(
                select(RESULTS).where(
                    RESULTS.c.subject_id == subject.id,
                    RESULTS.c.id_type == int(subject.id_type),
                    RESULTS.c.status == int(ResultStatus.ACTIVE),
                )
            )
        ]
        replaced: dict[str, str] = {}
        changes: list[tuple[ChangeKind, str]] = []
        for old in current:
            wanted = (set(old.flags) - PENALTY_FLAGS) | flags
            if wanted == set(old.flags):
                continue
            new = _reissued(old, tuple(sorted(wanted)))
            status = ResultStatus.REVOKED if revocation is not None else ResultStatus.SUPERSEDED
            conn.execute(
                update(RESULTS)
                .where(RESULTS.c.result_id == old.result_id)
                .values(
                    status=int(status),
                    revoked_reason=None if revocation is None else int(revocation),
                    revoked_at=None if revocation is None else now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(RESULTS),
                [result_row_values(PlannedInsert(new, content_digest(new), old.result_id), now)],
            )
            changes += [(ChangeKind.REVOKE, old.result_id), (ChangeKind.UPSERT, new.result_id)]
            replaced[old.result_id] = new.result_id
        append_changes(conn, changes, now)
        return replaced


def _reissued(old: CreditResult, flags: tuple[str, ...]) -> CreditResult:
    """The same evaluation with other flags, under a new id derived from the old one and the
    flags (a result id names one content forever)."""
    digest = hashlib.sha256(f"{old.result_id}|{','.join(flags)}".encode()).hexdigest()[:32]
    return dataclasses.replace(
        old, result_id=f"{old.issuer_node}:{digest}", flags=flags, supersedes=old.result_id
    )


def _values(record: PenaltyRecord, now: dt.datetime) -> dict[str, Any]:
    return {
        "record_id": record.record_id,
        "id_type": int(record.subject.id_type),
        "subject_id": record.subject.id,
        "subject_name": record.subject_name,
        "severity": int(record.severity),
        "decided_on": record.decided_on,
        "flag": record.flag,
        "content": json.dumps(dict(record.content), ensure_ascii=False, sort_keys=True),
        "status": int(record.status),
        "closed_at": record.closed_at,
        "close_reason": record.close_reason or None,
        "created_at": now,
    }


def _record(m: RowMapping | Mapping[str, Any]) -> PenaltyRecord:
    return PenaltyRecord(
        record_id=m["record_id"],
        subject=SubjectRef.trusted(SubjectIdType(m["id_type"]), m["subject_id"]),
        subject_name=m["subject_name"],
        severity=Severity(m["severity"]),
        decided_on=m["decided_on"],
        content=json.loads(m["content"]),
        status=PenaltyStatus(m["status"]),
        closed_at=m["closed_at"],
        close_reason=m["close_reason"] or "",
    )
