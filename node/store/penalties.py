"""Penalty records and list entries, and what they do to results (floor 3; DESIGN.md §9,
node.repair, node.public_records).

This module owns `penalty_records` (migrations 0005_penalties, 0007_public_records): penalties
and serious-dishonesty list entries, by `kind`. A record in force adds its flag to every
current result of its subject; closing it (repair, expiry, removal from the list) takes the
flag away again. Each kind manages only its own flags (node.public_records.MANAGED_FLAGS).
A result's content never changes under its id: a changed flag set is re-issued as a new result
that supersedes the old one, with the change journalled (REVOKE old, UPSERT new) in the same
transaction. A result whose flag was taken away by repair, expiry or removal is REVOKED with
that reason, so it is never served, replayed or fed again, and every
peer that received it is sent a notice (node.revocation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Date,
    Index,
    SmallInteger,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    update,
)
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
from node.public_records import MANAGED_FLAGS, PenaltyRecord, RecordKind
from node.repair import PenaltyStatus, Severity
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

__all__ = ["PENALTIES", "PenaltyRecord", "PenaltyRepository", "Reissued", "reflag"]

PENALTY_FLAGS = MANAGED_FLAGS[RecordKind.PENALTY]
# SQLite binds one parameter per value: stay below its historic limit of 999 per query.
_SUBJECTS_AT_A_TIME = 400


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
    kind: Mapped[int] = mapped_column(SmallInteger, server_default="1")  # RecordKind
    # The last day of publicity the authority announced (双公示 CF_GSJZQ); None: the maximum.
    publicity_ends_on: Mapped[dt.date | None] = mapped_column(Date)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    close_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_penalty_records_subject", "subject_id", "id_type"),
        Index("ix_penalty_records_status", "status", "decided_on"),
        Index("ix_penalty_records_kind", "kind", "status"),
    )


PENALTIES: Table = PenaltyRecordRow.__table__  # type: ignore[assignment]


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
            for kind in {r.kind for r in records}:
                subjects = sorted(
                    {(r.subject.id_type, r.subject.id) for r in records if r.kind is kind}
                )
                replaced |= reflag(conn, subjects, MANAGED_FLAGS[kind], {}, now)
        return Reissued(replaced)

    def get(self, record_id: str) -> PenaltyRecord | None:
        with self._store.connect() as conn:
            row = conn.execute(select(PENALTIES).where(PENALTIES.c.record_id == record_id)).first()
        return None if row is None else _record(row._mapping)

    def in_force(self, kind: RecordKind = RecordKind.PENALTY) -> list[PenaltyRecord]:
        """Every record of `kind` in force, oldest decision first."""
        query = (
            select(PENALTIES)
            .where(
                PENALTIES.c.status == int(PenaltyStatus.IN_FORCE),
                PENALTIES.c.kind == int(kind),
            )
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
            subject = (record.subject.id_type, record.subject.id)
            managed = MANAGED_FLAGS[record.kind]
            return Reissued(reflag(conn, [subject], managed, {subject: revocation}, now))


SubjectKey = tuple[SubjectIdType, str]  # (id type, subject id)


def reflag(
    conn: Connection,
    subjects: Sequence[SubjectKey],
    managed: frozenset[str],
    revocations: Mapping[SubjectKey, RevocationReason],
    now: dt.datetime,
) -> dict[str, str]:
    """Re-issue the subjects' current results whose `managed` flags differ from those of their
    records in force (the caller's transaction holds the journal lock). A result that loses
    one of them is REVOKED for the subject's reason in `revocations` (repair, expiry, removal
    from the list; CREDIT_REPAIRED when none is given); one that only gains is SUPERSEDED.
    Returns old id -> new id. Set-based: a few queries per batch of subjects, not per subject."""
    replaced: dict[str, str] = {}
    for start in range(0, len(subjects), _SUBJECTS_AT_A_TIME):
        batch = subjects[start : start + _SUBJECTS_AT_A_TIME]
        replaced |= _reflag_batch(conn, batch, managed, revocations, now)
    return replaced


def _reflag_batch(
    conn: Connection,
    subjects: Sequence[SubjectKey],
    managed: frozenset[str],
    revocations: Mapping[SubjectKey, RevocationReason],
    now: dt.datetime,
) -> dict[str, str]:
    wanted_keys = set(subjects)
    ids = sorted({subject_id for _, subject_id in subjects})
    in_force: dict[SubjectKey, set[str]] = {}
    flag_query = select(PENALTIES.c.id_type, PENALTIES.c.subject_id, PENALTIES.c.flag).where(
        PENALTIES.c.subject_id.in_(ids),
        PENALTIES.c.status == int(PenaltyStatus.IN_FORCE),
        PENALTIES.c.flag.in_(sorted(managed)),
    )
    for row in conn.execute(flag_query):
        key = (SubjectIdType(row.id_type), row.subject_id)
        in_force.setdefault(key, set()).add(row.flag)
    result_query = select(RESULTS).where(
        RESULTS.c.subject_id.in_(ids), RESULTS.c.status == int(ResultStatus.ACTIVE)
    )
    current = [result_from_row(row) for row in conn.execute(result_query)]
    replaced: dict[str, str] = {}
    retired: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    changes: list[tuple[ChangeKind, str]] = []
    for old in sorted(current, key=lambda r: r.result_id):
        key = (old.subject.id_type, old.subject.id)
        if key not in wanted_keys:
            continue
        held = set(old.flags)
        wanted = (held - managed) | in_force.get(key, set())
        if wanted == held:
            continue
        new = _reissued(old, tuple(sorted(wanted)))
        revocation = None
        if held & managed - wanted:  # a flag taken away: the old result must not be relied on
            revocation = revocations.get(key) or RevocationReason.CREDIT_REPAIRED
        retired.append(
            {
                "old_id": old.result_id,
                "new_status": int(
                    ResultStatus.REVOKED if revocation is not None else ResultStatus.SUPERSEDED
                ),
                "reason": None if revocation is None else int(revocation),
                "revoked": None if revocation is None else now,
            }
        )
        inserts.append(
            result_row_values(PlannedInsert(new, content_digest(new), old.result_id), now)
        )
        changes += [(ChangeKind.REVOKE, old.result_id), (ChangeKind.UPSERT, new.result_id)]
        replaced[old.result_id] = new.result_id
    if retired:
        conn.execute(
            update(RESULTS)
            .where(RESULTS.c.result_id == bindparam("old_id"))
            .values(
                status=bindparam("new_status"),
                revoked_reason=bindparam("reason"),
                revoked_at=bindparam("revoked", type_=UtcDateTime),
                updated_at=now,
            ),
            retired,
        )
        conn.execute(insert(RESULTS), inserts)
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
        "kind": int(record.kind),
        "publicity_ends_on": record.publicity_ends_on,
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
        kind=RecordKind(m["kind"]),
        publicity_ends_on=m["publicity_ends_on"],
    )
