"""What auditors search and who searched (floor 3): `audit_entries`, one row of decoded,
indexed fields per exchange-log entry, and `audit_access`, the append-only record of every
auditor request. This module owns both tables; mirrored by migration 0006_audit.

`audit_entries` is derived data: node.audit.index fills it from the log in index order, so
its rows always form a prefix of the log (0 … indexed_size - 1) and a search pages by index
without skipping or repeating while entries are appended. `audit_access` is only ever
inserted into; the migration's triggers refuse UPDATE and DELETE in the database itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Index,
    Integer,
    Select,
    SmallInteger,
    String,
    Table,
    and_,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from node.store.engine import Database
from node.store.schema import Base, BigIntegerKey, UtcDateTime


class AuditEntryRow(Base):
    """The searchable fields of log entry `idx` (an entry that does not decode has zone "",
    decision 0: only a reader of every zone sees it)."""

    __tablename__ = "audit_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time_us: Mapped[int] = mapped_column(BigInteger)  # the record's time, µs since 1970 UTC
    day: Mapped[int] = mapped_column(Integer)  # its date in China, yyyymmdd
    direction: Mapped[int] = mapped_column(SmallInteger)  # model.Direction
    peer: Mapped[str] = mapped_column(String)  # the other node: requester or responder
    zone: Mapped[str] = mapped_column(String)
    purpose: Mapped[str] = mapped_column(String)
    subject: Mapped[str] = mapped_column(String)  # USCC or hmac-sha256:<hex>, "" for none
    decision: Mapped[int] = mapped_column(SmallInteger)  # model.Decision
    reason_code: Mapped[str] = mapped_column(String)  # UPPER_SNAKE, "" for a grant

    # Each filter walks its own index in log order, so a page of the newest matches reads
    # about a page of rows, however large the log.
    __table_args__ = (
        Index("ix_audit_entries_peer", "peer", "idx"),
        Index("ix_audit_entries_zone", "zone", "idx"),
        Index("ix_audit_entries_purpose", "purpose", "idx"),
        Index("ix_audit_entries_subject", "subject", "idx"),
        Index("ix_audit_entries_decision", "decision", "idx"),
        Index("ix_audit_entries_time", "time_us"),
        Index("ix_audit_entries_day", "day", "peer"),
    )


class AuditAccessRow(Base):
    """One auditor request: who, what, with which filter, how many rows, when."""

    __tablename__ = "audit_access"

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    who: Mapped[str] = mapped_column(String)  # the token's name; "-" when none verified
    role: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)  # e.g. "search", "export", "entry"
    filter: Mapped[str] = mapped_column(String)  # JSON of the parameters, resident ids hashed
    rows: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(SmallInteger)  # the HTTP status answered


ENTRIES: Table = AuditEntryRow.__table__  # type: ignore[assignment]
ACCESS: Table = AuditAccessRow.__table__  # type: ignore[assignment]


class IndexedEntry(NamedTuple):
    """The searchable fields of one entry (a named tuple: a million are made at a time)."""

    idx: int
    time_us: int
    day: int
    direction: int
    peer: str
    zone: str
    purpose: str
    subject: str
    decision: int
    reason_code: str


@dataclasses.dataclass(frozen=True, slots=True)
class EntryQuery:
    """Which entries: each field set narrows the search; `zones` None means every zone (and
    entries of none), else only entries of those zones. `after`: the last index of the page
    before, in `descending` order or not."""

    zones: frozenset[str] | None = None
    peer: str | None = None
    zone: str | None = None
    purpose: str | None = None
    subject: str | None = None
    decision: int | None = None
    direction: int | None = None
    since_us: int | None = None  # inclusive
    until_us: int | None = None  # exclusive
    descending: bool = True
    after: int | None = None
    upto: int | None = None  # only entries below this index (the log as indexed then)

    def conditions(self) -> list[ColumnElement[bool]]:
        c = ENTRIES.c
        where: list[ColumnElement[bool]] = []
        if self.zones is not None:
            where.append(c.zone.in_(sorted(self.zones)))
        for column, value in (
            (c.peer, self.peer),
            (c.zone, self.zone),
            (c.purpose, self.purpose),
            (c.subject, self.subject),
            (c.decision, self.decision),
            (c.direction, self.direction),
        ):
            if value is not None:
                where.append(column == value)
        if self.since_us is not None:
            where.append(c.time_us >= self.since_us)
        if self.until_us is not None:
            where.append(c.time_us < self.until_us)
        if self.upto is not None:
            where.append(c.idx < self.upto)
        if self.after is not None:
            where.append(c.idx < self.after if self.descending else c.idx > self.after)
        return where


@dataclasses.dataclass(frozen=True, slots=True)
class AccessRecord:
    at: dt.datetime
    who: str
    role: str
    action: str
    filter: str
    rows: int
    status: int


@dataclasses.dataclass(frozen=True, slots=True)
class LoggedAccess:
    id: int
    record: AccessRecord


class AuditRepository:
    """The auditor's side tables, on `db` (the node's store)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- the index

    def indexed_size(self) -> int:
        """How many log entries are indexed: they are entries 0 … size - 1."""
        with self._db.connect() as conn:
            top = conn.execute(select(func.max(ENTRIES.c.idx))).scalar()
        return 0 if top is None else int(top) + 1

    def add_entries(self, rows: Sequence[IndexedEntry]) -> bool:
        """Index `rows` (consecutive, starting at indexed_size) in one transaction; False when
        another process indexed them first (nothing is written then)."""
        if not rows:
            return True
        try:
            with self._db.begin() as conn:
                top = conn.execute(select(func.max(ENTRIES.c.idx))).scalar()
                if (0 if top is None else int(top) + 1) != rows[0].idx:
                    return False
                conn.execute(insert(ENTRIES), [r._asdict() for r in rows])
        except IntegrityError:
            return False
        return True

    def newest_time_us(self) -> int | None:
        """The latest record time indexed (µs since 1970), None for an empty log."""
        with self._db.connect() as conn:
            top = conn.execute(select(func.max(ENTRIES.c.time_us))).scalar()
        return None if top is None else int(top)

    def search(self, query: EntryQuery, limit: int) -> list[int]:
        """The indices of up to `limit` matching entries, in the query's order."""
        with self._db.connect() as conn:
            return [int(i) for i in conn.execute(self._select(query).limit(limit)).scalars()]

    def iter_matches(self, query: EntryQuery, chunk: int = 1000) -> Iterator[list[int]]:
        """Every matching index, a chunk at a time (keyset paging: each chunk is one short
        read, so an export of a million entries holds one chunk in memory)."""
        while True:
            indices = self.search(query, chunk)
            if not indices:
                return
            yield indices
            if len(indices) < chunk:
                return
            query = dataclasses.replace(query, after=indices[-1])

    def _select(self, query: EntryQuery) -> Select[Any]:
        order = ENTRIES.c.idx.desc() if query.descending else ENTRIES.c.idx.asc()
        return select(ENTRIES.c.idx).where(and_(True, *query.conditions())).order_by(order)

    def volume_by_peer_day(self, query: EntryQuery, max_rows: int) -> list[tuple[int, str, int]]:
        """(day, peer, entries) for the matching entries, by day then peer."""
        c = ENTRIES.c
        stmt = (
            select(c.day, c.peer, func.count())
            .where(and_(True, *query.conditions()))
            .group_by(c.day, c.peer)
            .order_by(c.day, c.peer)
            .limit(max_rows)
        )
        with self._db.connect() as conn:
            return [(int(d), str(p), int(n)) for d, p, n in conn.execute(stmt)]

    def refusals_by_reason(self, query: EntryQuery, max_rows: int) -> list[tuple[str, int]]:
        """(reason code, entries) of the matching entries that were not granted."""
        c = ENTRIES.c
        stmt = (
            select(c.reason_code, func.count())
            .where(and_(c.decision != 1, *query.conditions()))
            .group_by(c.reason_code)
            .order_by(func.count().desc(), c.reason_code)
            .limit(max_rows)
        )
        with self._db.connect() as conn:
            return [(str(r), int(n)) for r, n in conn.execute(stmt)]

    # --- the access log

    def record_access(self, record: AccessRecord) -> None:
        with self._db.begin() as conn:
            conn.execute(insert(ACCESS).values(**dataclasses.asdict(record)))

    def access_log(self, before: int | None, limit: int) -> list[LoggedAccess]:
        """The newest `limit` requests recorded before id `before` (None: the newest)."""
        c = ACCESS.c
        stmt = select(ACCESS).order_by(c.id.desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(c.id < before)
        with self._db.connect() as conn:
            return [
                LoggedAccess(
                    int(r.id),
                    AccessRecord(
                        r.at, r.who, r.role, r.action, r.filter, int(r.rows), int(r.status)
                    ),
                )
                for r in conn.execute(stmt)
            ]
