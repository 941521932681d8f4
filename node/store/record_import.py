"""A file of public records imported all or nothing: 双公示 penalties, or serious-dishonesty
list entries and removals (issue 11 §5; node.public_records).

While the file is read its rows are staged, a chunk at a time, in temporary tables on one
connection (no lock on the store's tables: a serving node keeps writing), and Python holds
one chunk. `commit` then works set-based in one transaction holding the journal lock: it
refuses a record held already with other content and a removal of an entry never listed;
inserts the new records with one INSERT ... SELECT in key order (a record whose publicity
had already ended goes in EXPIRED); closes the entries removed; and re-issues the current
results of the subjects whose flags changed (node.store.penalties.reflag), a batch of
subjects at a time.
Importing the same file again changes nothing; a closed record is never revived.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from node.errors import RowProblem
from node.model import ResultStatus, RevocationReason, SubjectIdType
from node.public_records import MANAGED_FLAGS, ListChange, PenaltyRecord, RecordKind
from node.repair import PenaltyStatus, china_day
from node.staged_rows import ADD, REMOVE, StagedRows
from node.store.engine import SQLITE_BEGIN, Database, is_file_sqlite
from node.store.penalties import PENALTIES, SubjectKey, reflag
from node.store.results import IMPORT_BATCHES, RESULTS, ProblemList
from node.store.schema import UtcDateTime

_SUBJECTS_AT_A_TIME = 400
_REMOVALS_AT_A_TIME = 5000
_EXPIRED_ON_IMPORT = "publicity had ended when the record was imported"

_METADATA = MetaData()
STAGED = Table(
    "staged_records",
    _METADATA,
    # SQLite: INTEGER is the rowid itself, so the rows need no second B-tree to be numbered.
    Column(
        "row_number",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("action", SmallInteger, nullable=False),  # node.staged_rows: ADD | REMOVE
    Column("record_id", String, nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("id_type", SmallInteger, nullable=False),
    Column("subject_id", String, nullable=False),
    Column("subject_name", Text, nullable=False),
    Column("severity", SmallInteger, nullable=False),
    Column("decided_on", Date, nullable=False),  # a removal: the day it was removed
    Column("publicity_ends_on", Date),
    Column("expires_on", Date),  # None: a list entry (it leaves by removal)
    Column("flag", String, nullable=False),
    Column("content", Text, nullable=False),
    Column("reason", SmallInteger),  # a removal's RevocationReason
    Column("fresh", SmallInteger, nullable=False),  # 1: changes the store (set at commit)
    prefixes=["TEMPORARY"],
)
# Built once the file is staged (cheaper than kept up to date row by row); dropped with it.
_BY_RECORD = "CREATE INDEX ix_staged_records_record ON staged_records (record_id, action)"
_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}
# SQLite's page cache while commit inserts (KiB; its default is 2 MiB): the store's indexes
# take keys in no order, and a cache this size keeps their upper pages from being re-read.
_COMMIT_CACHE_KIB = 16 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class RecordImportSummary:
    """What an import did: records added (in force, or expired already), entries removed,
    rows the store held already, and current results re-issued with changed flags."""

    added: int
    expired: int
    removed: int
    unchanged: int
    reissued: int


class StagedRecords:
    """One file's records, fed chunk by chunk (`add`) and applied by `commit`; leaving the
    block without `commit` imports nothing. `first_rows` is the adapter's memory of the
    records named so far (adapters.shuanggongshi.SeenKeys)."""

    def __init__(
        self,
        store: Database,
        *,
        source: str,
        fmt: str,
        kind: RecordKind,
        now: dt.datetime,
        repeat: tuple[str, str] = ("row", "the same record"),
    ) -> None:
        self._store = store
        self._repeat = repeat
        self._source = source
        self._fmt = fmt
        self._kind = kind
        self._now = now
        self._problems = ProblemList()
        self._stack = contextlib.ExitStack()
        self._conn: Connection | None = None
        self._rows = 0
        self._maker: StagedRows | None = None

    def __enter__(self) -> StagedRecords:
        conn = self._stack.enter_context(self._store.connect())
        _METADATA.create_all(conn)
        on_file = is_file_sqlite(conn.engine.url)
        self._stack.callback(self._discard if on_file else self._drop, conn)
        self._conn = conn
        mark = _PLACEHOLDER[conn.dialect.paramstyle]
        self._insert_record = _insert_sql(STAGED, mark)
        self._sqlite = conn.dialect.name == "sqlite"
        self._maker = StagedRows(sqlite=self._sqlite)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    @staticmethod
    def _discard(conn: Connection) -> None:
        """A file SQLite's temporary tables are its connection's own temporary file: closing
        the connection deletes it at once, where DROP TABLE would free its pages one by one."""
        conn.invalidate()

    @staticmethod
    def _drop(conn: Connection) -> None:
        if conn.in_transaction():
            conn.rollback()
        with contextlib.suppress(Exception):  # a broken connection takes its tables with it
            _METADATA.drop_all(conn)
            conn.commit()

    @property
    def problem_count(self) -> int:
        return self._problems.count

    deferred = True  # a record named twice is found set-based by commit

    def first_rows(self, keys: Sequence[tuple[int, str]]) -> Mapping[int, int]:
        """Nothing, here: a record named twice is found set-based when the file is committed
        (a million keys would cost a query per chunk)."""
        return {}

    def add(
        self, records: Sequence[tuple[int, ListChange]], problems: Sequence[RowProblem]
    ) -> None:
        """The next chunk: its records are staged (those of a file with problems too, so
        that `commit` can tell every repeat)."""
        self._problems.add(problems)
        self._rows += len({p.row for p in problems if p.row})
        maker = self.row_maker()
        self.add_rows([maker.row(row, record) for row, record in records])

    def row_maker(self) -> StagedRows:
        """What makes this store's staged rows: `add_rows` takes what it makes (in another
        process, too: node.split_reading)."""
        if self._maker is None:
            raise RuntimeError("a StagedRecords is used inside its with block")
        return self._maker

    def add_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows made by `row_maker()`, staged as they are."""
        self._rows += len(rows)
        if rows:
            self._connection().exec_driver_sql(self._insert_record, rows)

    def add_problems(self, problems: ProblemList) -> None:
        """The problems of a part of the file (node.split_reading), the parts in file
        order, each after all of its rows."""
        self._problems.extend(problems)
        self._rows += problems.bad_rows

    def commit(self, file_sha256: str) -> RecordImportSummary:
        """Apply the staged rows in one transaction, or raise ImportRejected with nothing
        written."""
        conn = self._connection()
        conn.exec_driver_sql(_BY_RECORD)
        self._check_repeats(conn)
        if self._problems.count:
            raise self._problems.rejected(self._source)
        conn.commit()  # the staged rows; the store's tables are untouched so far
        now = self._now.astimezone(dt.UTC)
        today = china_day(now)
        conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        cache_setting = self._widen_cache(conn)
        try:
            with conn.begin():
                self._store.lock_changes(conn)
                self._check_against_store(conn)
                if self._problems.count:
                    raise self._problems.rejected(self._source)
                added, expired = self._insert(conn, today, now)
                removed = self._remove(conn, now)
                reissued = self._reflag(conn, today, now)
                conn.execute(
                    insert(IMPORT_BATCHES).values(
                        source=self._source,
                        file_sha256=file_sha256,
                        format=self._fmt,
                        row_count=self._rows,
                        inserted=added,
                        updated=removed,
                        unchanged=self._rows - added - removed,
                        imported_at=now,
                    )
                )
        finally:
            conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            if cache_setting is not None:
                with contextlib.suppress(Exception):  # a broken connection keeps no setting
                    _sqlite_pragma(conn, f"main.cache_size = {cache_setting}")
        return RecordImportSummary(
            added=added - expired,
            expired=expired,
            removed=removed,
            unchanged=self._rows - added - removed,
            reissued=reissued,
        )

    # --- the steps of commit --------------------------------------------------------------------

    def _widen_cache(self, conn: Connection) -> int | None:
        """On SQLite, a page cache of _COMMIT_CACHE_KIB for the store while commit writes; the
        setting it had, to restore."""
        if not self._sqlite:
            return None
        setting = int(_sqlite_pragma(conn, "main.cache_size"))
        _sqlite_pragma(conn, f"main.cache_size = -{_COMMIT_CACHE_KIB}")
        return setting

    def _check_repeats(self, conn: Connection) -> None:
        """A record the file names twice is a problem of the later row (set-based). One scan
        of the record index tells whether there is any; only then are the rows paired up."""
        s = STAGED
        named_twice = (
            select(s.c.record_id)
            .group_by(s.c.record_id, s.c.action)
            .having(func.count() > 1)
            .limit(1)
        )
        if conn.execute(named_twice).first() is None:
            return
        later, earlier = STAGED, STAGED.alias("earlier")
        query = (
            select(later.c.row_number, func.min(earlier.c.row_number))
            .join(
                earlier,
                and_(
                    earlier.c.record_id == later.c.record_id,
                    earlier.c.action == later.c.action,
                    earlier.c.row_number < later.c.row_number,
                ),
            )
            .group_by(later.c.row_number)
            .order_by(later.c.row_number)
        )
        field, what = self._repeat
        self._problems.add(
            RowProblem(row, field, f"{what} is in row {first}")
            for row, first in conn.execute(query)
        )

    def _check_against_store(self, conn: Connection) -> None:
        """A record held with other content (a published record is never overwritten: a
        correction is a new decision), and a removal of an entry neither held nor in the
        file, are problems of their rows."""
        s, p = STAGED, PENALTIES
        differs = or_(
            p.c.content != s.c.content,
            p.c.severity != s.c.severity,
            p.c.decided_on != s.c.decided_on,
            p.c.kind != s.c.kind,
            p.c.subject_id != s.c.subject_id,
            p.c.id_type != s.c.id_type,
            p.c.publicity_ends_on.is_distinct_from(s.c.publicity_ends_on),
        )
        held = (
            select(s.c.row_number)
            .join(p, p.c.record_id == s.c.record_id)
            .where(s.c.action == ADD, differs)
            .order_by(s.c.row_number)
        )
        self._problems.add(
            RowProblem(
                row,
                "row",
                "this record is held already with other content; a published record is not "
                "overwritten (a correction is a new decision with its own number)",
            )
            for (row,) in conn.execute(held)
        )
        entry = STAGED.alias("entry")
        unknown = (
            select(s.c.row_number)
            .where(
                s.c.action == REMOVE,
                ~exists().where(p.c.record_id == s.c.record_id),
                ~exists().where(entry.c.record_id == s.c.record_id, entry.c.action == ADD),
            )
            .order_by(s.c.row_number)
        )
        self._problems.add(
            RowProblem(row, "row", "removes an entry that is not on the list (no such 列入)")
            for (row,) in conn.execute(unknown)
        )

    def _insert(self, conn: Connection, today: dt.date, now: dt.datetime) -> tuple[int, int]:
        s, p = STAGED, PENALTIES
        conn.execute(
            update(s)
            .where(s.c.action == ADD, ~exists().where(p.c.record_id == s.c.record_id))
            .values(fresh=1)
        )
        ended = and_(s.c.expires_on.is_not(None), s.c.expires_on <= literal(today, Date))
        columns = [
            "record_id", "id_type", "subject_id", "subject_name", "severity", "decided_on",
            "flag", "content", "kind", "publicity_ends_on", "status", "closed_at",
            "close_reason", "created_at",
        ]  # fmt: skip
        rows = select(
            s.c.record_id,
            s.c.id_type,
            s.c.subject_id,
            s.c.subject_name,
            s.c.severity,
            s.c.decided_on,
            s.c.flag,
            s.c.content,
            s.c.kind,
            s.c.publicity_ends_on,
            case((ended, int(PenaltyStatus.EXPIRED)), else_=int(PenaltyStatus.IN_FORCE)),
            case((ended, literal(now, UtcDateTime)), else_=None),
            case((ended, literal(_EXPIRED_ON_IMPORT)), else_=None),
            literal(now, UtcDateTime),
        ).where(s.c.fresh == 1)
        # In key order, so the store's primary key B-tree grows at one end, page by page. Sorted
        # as an expression (`|| ''`), not read along the staged record index: that would fetch
        # the staged rows one by one from all over their table.
        conn.execute(insert(p).from_select(columns, rows.order_by(s.c.record_id + "")))
        fresh = select(func.count()).select_from(s).where(s.c.fresh == 1)
        added = conn.execute(fresh).scalar_one()  # rowcount of INSERT ... SELECT: not everywhere
        expired = conn.execute(fresh.where(ended)).scalar_one()
        return int(added), int(expired)

    def _remove(self, conn: Connection, now: dt.datetime) -> int:
        s, p = STAGED, PENALTIES
        in_force = exists().where(
            p.c.record_id == s.c.record_id, p.c.status == int(PenaltyStatus.IN_FORCE)
        )
        conn.execute(update(s).where(s.c.action == REMOVE, in_force).values(fresh=1))
        removed = 0
        after = 0
        while True:
            batch = conn.execute(
                select(s.c.row_number, s.c.record_id, s.c.decided_on, s.c.reason)
                .where(s.c.action == REMOVE, s.c.fresh == 1, s.c.row_number > after)
                .order_by(s.c.row_number)
                .limit(_REMOVALS_AT_A_TIME)
            ).all()
            if not batch:
                return removed
            after = batch[-1].row_number
            for row in batch:
                reason = RevocationReason(row.reason).name.lower().replace("_", " ")
                removed += conn.execute(
                    update(p)
                    .where(
                        p.c.record_id == row.record_id,
                        p.c.status == int(PenaltyStatus.IN_FORCE),
                    )
                    .values(
                        status=int(PenaltyStatus.REMOVED),
                        closed_at=now,
                        close_reason=f"removed from the list on {row.decided_on} ({reason})",
                    )
                ).rowcount

    def _reflag(self, conn: Connection, today: dt.date, now: dt.datetime) -> int:
        """Re-issue the current results of the subjects whose records changed, a batch of
        subjects at a time (keyset order), so memory holds a batch, not the file."""
        s, r = STAGED, RESULTS
        changed = and_(
            s.c.fresh == 1,
            or_(
                s.c.action == REMOVE,
                s.c.expires_on.is_(None),
                s.c.expires_on > literal(today, Date),
            ),
        )
        has_results = exists().where(
            r.c.subject_id == s.c.subject_id,
            r.c.id_type == s.c.id_type,
            r.c.status == int(ResultStatus.ACTIVE),
        )
        managed = MANAGED_FLAGS[self._kind]
        reissued = 0
        last: tuple[str, int] = ("", 0)
        while True:
            page = conn.execute(
                select(s.c.subject_id, s.c.id_type, func.max(s.c.reason))
                .where(changed, has_results)
                .where(
                    or_(
                        s.c.subject_id > last[0],
                        and_(s.c.subject_id == last[0], s.c.id_type > last[1]),
                    )
                )
                .group_by(s.c.subject_id, s.c.id_type)
                .order_by(s.c.subject_id, s.c.id_type)
                .limit(_SUBJECTS_AT_A_TIME)
            ).all()
            if not page:
                return reissued
            last = (page[-1][0], page[-1][1])
            subjects: list[SubjectKey] = [(SubjectIdType(t), i) for i, t, _ in page]
            revocations = {
                (SubjectIdType(t), i): RevocationReason(reason)
                for i, t, reason in page
                if reason is not None
            }
            reissued += len(reflag(conn, subjects, managed, revocations, now))

    def _connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("a StagedRecords is used inside its with block")
        return self._conn


def staged_records(
    store: Database,
    *,
    source: str,
    fmt: str,
    kind: RecordKind,
    now: dt.datetime,
    repeat: tuple[str, str] = ("row", "the same record"),
) -> StagedRecords:
    """An import of one file of `kind` to feed chunks into (`with staged_records(...)`).
    `repeat`: the column and the words a record named twice is reported with."""
    return StagedRecords(store, source=source, fmt=fmt, kind=kind, now=now, repeat=repeat)


def _insert_sql(table: Table, mark: str) -> str:
    columns = ", ".join(column.name for column in table.columns)
    return f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join([mark] * len(table.columns))})"


def _sqlite_pragma(conn: Connection, pragma: str) -> Any:
    """A connection setting, on the driver's connection: outside SQLAlchemy's transaction."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the staging connection is closed")
    row = driver.execute(f"PRAGMA {pragma}").fetchone()
    return None if row is None else row[0]


__all__ = ["PenaltyRecord", "RecordImportSummary", "StagedRecords", "staged_records"]
