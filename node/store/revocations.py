"""Revocation notices on the issuing side (floor 3): who received which result (`deliveries`,
indexed from the exchange log's GRANTED entries), the signed notice each recipient gets once a
result it received is no longer current (`revocation_notices`, numbered per recipient from 1),
and how far the notifier has looked (`notifier_state`). This module owns the three tables;
mirrored by migration 0004_revocations.

A recipient gets at most one notice per result (unique `(audience, result_id)`), whatever
process or restart notices it; its seqs run 1, 2, 3, … as notices are added under the lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from node.model import ResultStatus, RevocationReason
from node.store.engine import Database
from node.store.results import RESULTS
from node.store.schema import Base, UtcDateTime


class DeliveryRow(Base):
    """A result this node issued to `audience` (first at `log_index` of our log)."""

    __tablename__ = "deliveries"

    result_id: Mapped[str] = mapped_column(String, primary_key=True)
    audience: Mapped[str] = mapped_column(String, primary_key=True)
    log_index: Mapped[int] = mapped_column(BigInteger)


class RevocationNoticeRow(Base):
    """The signed notice (DSSE envelope, JSON form) that `audience`'s result was revoked."""

    __tablename__ = "revocation_notices"

    audience: Mapped[str] = mapped_column(String, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    result_id: Mapped[str] = mapped_column(String)
    reason: Mapped[int] = mapped_column(SmallInteger)  # model.RevocationReason
    envelope: Mapped[bytes] = mapped_column(LargeBinary)  # serialized wire Envelope
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("audience", "result_id", name="uq_revocation_notices_audience"),
    )


class NotifierStateRow(Base):
    """The single row (id = 1): log entries indexed so far, last change seq looked at."""

    __tablename__ = "notifier_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    log_size: Mapped[int] = mapped_column(BigInteger)
    change_seq: Mapped[int] = mapped_column(BigInteger)


DELIVERIES: Table = DeliveryRow.__table__  # type: ignore[assignment]
NOTICES: Table = RevocationNoticeRow.__table__  # type: ignore[assignment]
STATE: Table = NotifierStateRow.__table__  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True, slots=True)
class Revoked:
    """A result that is no longer current, as a notice states it."""

    result_id: str
    id_type: int
    subject_id: str
    reason: RevocationReason
    revoked_at: dt.datetime
    superseded_by: str


@dataclasses.dataclass(frozen=True, slots=True)
class Due:
    """A notice to write: `audience` received `revoked`."""

    audience: str
    revoked: Revoked


# Signs one notice given its recipient's next seq; returns the serialized envelope.
SignNotice = Callable[[Due, int], bytes]


class RevocationRepository:
    """`store.revocations`."""

    def __init__(self, store: Database) -> None:
        self._store = store

    # --- the notifier (one pass at a time, under the journal lock) --------------------------

    def state(self) -> tuple[int, int]:
        """(log entries indexed, last change seq looked at)."""
        with self._store.connect() as conn:
            row = conn.execute(select(STATE.c.log_size, STATE.c.change_seq)).first()
        return (0, 0) if row is None else (int(row.log_size), int(row.change_seq))

    def record_pass(
        self,
        *,
        deliveries: Sequence[tuple[str, str, int]],
        log_size: int,
        revoked_ids: Iterable[str],
        change_seq: int,
        sign: SignNotice,
        now: dt.datetime,
    ) -> int:
        """One notifier pass, all or nothing: add `deliveries` (result id, audience, log
        index) indexed from the log up to `log_size`; then write a notice for every recipient
        of a result that is not current — among the new deliveries, and among the results in
        `revoked_ids` (revoked by changes up to `change_seq`). Returns how many notices."""
        with self._store.begin() as conn:
            self._store.lock_changes(conn)  # one notifier at a time, in order with the journal
            held = conn.execute(select(STATE.c.log_size, STATE.c.change_seq)).first()
            if held is None:
                conn.execute(insert(STATE).values(id=1, log_size=0, change_seq=0))
                held_log, held_seq = 0, 0
            else:
                held_log, held_seq = int(held.log_size), int(held.change_seq)
            if held_log >= log_size and held_seq >= change_seq:
                return 0  # another process did this pass
            fresh = self._new_deliveries(conn, deliveries)
            candidates = {result_id for result_id, _, _ in fresh} | set(revoked_ids)
            due = self._due(conn, candidates)
            written = self._write_notices(conn, due, sign, now)
            conn.execute(
                update(STATE).values(
                    log_size=max(held_log, log_size), change_seq=max(held_seq, change_seq)
                )
            )
        return written

    def _new_deliveries(
        self, conn: Connection, deliveries: Sequence[tuple[str, str, int]]
    ) -> list[tuple[str, str, int]]:
        first: dict[tuple[str, str], int] = {}
        for result_id, audience, index in deliveries:
            first.setdefault((result_id, audience), index)
        if not first:
            return []
        keys = list(first)
        known = set()
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            known |= {
                (r.result_id, r.audience)
                for r in conn.execute(
                    select(DELIVERIES.c.result_id, DELIVERIES.c.audience).where(
                        tuple_(DELIVERIES.c.result_id, DELIVERIES.c.audience).in_(chunk)
                    )
                )
            }
        fresh = [(r, a, first[(r, a)]) for r, a in keys if (r, a) not in known]
        if fresh:
            conn.execute(
                insert(DELIVERIES),
                [{"result_id": r, "audience": a, "log_index": i} for r, a, i in fresh],
            )
        return fresh

    def _due(self, conn: Connection, result_ids: set[str]) -> list[Due]:
        """Every (recipient, result) among `result_ids` that is not current and has no notice."""
        due: list[Due] = []
        ids = sorted(result_ids)
        for start in range(0, len(ids), 400):
            chunk = ids[start : start + 400]
            rows = conn.execute(
                select(
                    DELIVERIES.c.audience,
                    RESULTS.c.result_id,
                    RESULTS.c.id_type,
                    RESULTS.c.subject_id,
                    RESULTS.c.status,
                    RESULTS.c.revoked_reason,
                    RESULTS.c.revoked_at,
                    RESULTS.c.updated_at,
                )
                .join(RESULTS, RESULTS.c.result_id == DELIVERIES.c.result_id)
                .where(
                    DELIVERIES.c.result_id.in_(chunk),
                    RESULTS.c.status != int(ResultStatus.ACTIVE),
                    ~select(NOTICES.c.seq)
                    .where(
                        NOTICES.c.audience == DELIVERIES.c.audience,
                        NOTICES.c.result_id == DELIVERIES.c.result_id,
                    )
                    .exists(),
                )
                .order_by(RESULTS.c.result_id, DELIVERIES.c.audience)
            ).all()
            successors = self._successors(conn, [r.result_id for r in rows])
            for row in rows:
                superseded = row.status == int(ResultStatus.SUPERSEDED)
                reason = (
                    RevocationReason.RE_EVALUATED
                    if superseded or row.revoked_reason is None
                    else RevocationReason(row.revoked_reason)
                )
                due.append(
                    Due(
                        row.audience,
                        Revoked(
                            row.result_id,
                            row.id_type,
                            row.subject_id,
                            reason,
                            row.revoked_at or row.updated_at,
                            successors.get(row.result_id, ""),
                        ),
                    )
                )
        return due

    def _successors(self, conn: Connection, result_ids: Sequence[str]) -> dict[str, str]:
        if not result_ids:
            return {}
        rows = conn.execute(
            select(RESULTS.c.supersedes, RESULTS.c.result_id).where(
                RESULTS.c.supersedes.in_(sorted(set(result_ids)))
            )
        )
        return {r.supersedes: r.result_id for r in rows}

    def _write_notices(
        self, conn: Connection, due: Sequence[Due], sign: SignNotice, now: dt.datetime
    ) -> int:
        if not due:
            return 0
        audiences = sorted({d.audience for d in due})
        last = dict(
            conn.execute(
                select(NOTICES.c.audience, func.max(NOTICES.c.seq))
                .where(NOTICES.c.audience.in_(audiences))
                .group_by(NOTICES.c.audience)
            ).all()
        )
        rows = []
        for item in due:
            seq = int(last.get(item.audience) or 0) + 1
            last[item.audience] = seq
            rows.append(
                {
                    "audience": item.audience,
                    "seq": seq,
                    "result_id": item.revoked.result_id,
                    "reason": int(item.revoked.reason),
                    "envelope": sign(item, seq),
                    "created_at": now,
                }
            )
        conn.execute(insert(NOTICES), rows)
        return len(rows)

    # --- serving ---------------------------------------------------------------------------

    def notices(self, audience: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """`audience`'s notices after `after_seq`, in seq order: (seq, serialized envelope)."""
        query = (
            select(NOTICES.c.seq, NOTICES.c.envelope)
            .where(NOTICES.c.audience == audience, NOTICES.c.seq > after_seq)
            .order_by(NOTICES.c.seq)
            .limit(limit)
        )
        with self._store.connect() as conn:
            return [(int(r.seq), bytes(r.envelope)) for r in conn.execute(query)]

    def recipients(self, result_id: str) -> list[str]:
        """Who received `result_id` (as far as the log has been indexed)."""
        query = (
            select(DELIVERIES.c.audience)
            .where(DELIVERIES.c.result_id == result_id)
            .order_by(DELIVERIES.c.audience)
        )
        with self._store.connect() as conn:
            return [r.audience for r in conn.execute(query)]
