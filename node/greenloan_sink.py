"""The Green Loan Link sync job's sink database (SQLite or PostgreSQL; floor 3).

Three tables: `greenloan_records` (one row per current result, adapters.greenloan's format),
`greenloan_changes` (every change applied, by seq: the job's own journal, so an application can
be counted and traced) and `greenloan_cursor` (per source node, the last seq applied).
Invariant: a batch's records, its journal rows and the cursor move in one transaction, and only
when the cursor stands just before the batch; so a job killed at any moment resumes from the
cursor with nothing lost and nothing applied twice (a second application would also break the
journal's primary key).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Engine,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from adapters import greenloan
from node import model
from node.errors import Conflict, StoreUnavailable
from node.store.engine import SQLITE_BEGIN, build_engine, describe, parse_url

METADATA = MetaData()

RECORDS = Table(
    "greenloan_records",
    METADATA,
    *(
        Column(name, String, primary_key=True)
        if name == "jgbs"
        else Column(name, Double if name == "pjfs" else Text, nullable=name == "pjfs")
        for name in greenloan.COLUMNS
    ),
    Column("source_node", String, nullable=False),
    Column("change_seq", BigInteger, nullable=False),  # the seq that put the row here
)
APPLIED = Table(
    "greenloan_changes",
    METADATA,
    Column("source_node", String, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("kind", SmallInteger, nullable=False),  # model.ChangeKind
    Column("result_id", String, nullable=False),
    Column("applied_at", Text, nullable=False),  # ISO 8601 UTC
)
CURSOR = Table(
    "greenloan_cursor",
    METADATA,
    Column("source_node", String, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("batches", Integer, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did to the sink."""

    upserted: int
    revoked: int
    last_seq: int


class GreenLoanSink:
    """A sink database; `GreenLoanSink.open(url)` creates its tables when missing."""

    def __init__(self, engine: Engine, where: str) -> None:
        self._engine = engine
        self.where = where

    @classmethod
    def open(cls, url: str) -> GreenLoanSink:
        parsed = parse_url(url)
        sink = cls(build_engine(parsed), describe(parsed))
        try:
            with sink._begin() as conn:
                METADATA.create_all(conn)
        except BaseException:
            sink.close()
            raise
        return sink

    def close(self) -> None:
        self._engine.dispose()

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A write transaction (IMMEDIATE on SQLite), with driver errors named."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
                with conn.begin():
                    yield conn
        except IntegrityError as exc:
            raise Conflict(
                f"the sink {self.where} refused a batch ({str(exc.orig).splitlines()[0]}): was "
                "it applied before by another job? Nothing of it was applied"
            ) from exc
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(
                f"sink unavailable: {self.where}: {str(exc.orig).splitlines()[0]}"
            ) from exc

    def cursor(self, source: str) -> int:
        """The last seq of `source`'s feed applied here; 0 before the first batch."""
        with self._begin() as conn:
            found = conn.execute(
                select(CURSOR.c.last_seq).where(CURSOR.c.source_node == source)
            ).scalar_one_or_none()
        return int(found or 0)

    def apply(self, batch: model.ChangeBatch, source: str, now: dt.datetime) -> Applied:
        """Apply one verified batch (node.changefeed.open_change_batch) all or nothing.

        Raises Conflict when the cursor no longer stands just before the batch (another job
        applied it meanwhile): nothing is applied then.
        """
        upserts = [c for c in batch.changes if c.kind is model.ChangeKind.UPSERT]
        revokes = [c.result_id for c in batch.changes if c.kind is model.ChangeKind.REVOKE]
        at = now.astimezone(dt.UTC).isoformat()
        with self._begin() as conn:
            self._advance_cursor(conn, source, batch, now)
            if revokes:
                conn.execute(delete(RECORDS).where(RECORDS.c.jgbs.in_(revokes)))
            # Plain executemany of tuples: a feed applies millions of rows, and SQLAlchemy's
            # per-row parameter processing cost several times the insert itself.
            if upserts:
                conn.exec_driver_sql(
                    _statement(conn, _UPSERT),
                    [
                        (*greenloan.record_row(c.result), source, c.seq)
                        for c in upserts
                        if c.result is not None  # model.Change checks it
                    ],
                )
            if batch.changes:
                conn.exec_driver_sql(
                    _statement(conn, _APPLY),
                    [
                        (
                            source,
                            c.seq,
                            int(c.kind),
                            c.result.result_id if c.result else c.result_id,
                            at,
                        )
                        for c in batch.changes
                    ],
                )
        return Applied(len(upserts), len(revokes), batch.last_seq)

    def _advance_cursor(
        self, conn: Connection, source: str, batch: model.ChangeBatch, now: dt.datetime
    ) -> None:
        expected = batch.first_seq - 1
        moved = conn.execute(
            update(CURSOR)
            .where(CURSOR.c.source_node == source, CURSOR.c.last_seq == expected)
            .values(
                last_seq=batch.last_seq,
                batches=CURSOR.c.batches + 1,
                updated_at=now,
            )
        ).rowcount
        if moved == 1:
            return
        held = conn.execute(
            select(CURSOR.c.last_seq).where(CURSOR.c.source_node == source)
        ).scalar_one_or_none()
        if held is None and expected == 0:
            conn.execute(
                insert(CURSOR).values(
                    source_node=source,
                    last_seq=batch.last_seq,
                    batches=1,
                    schema_version=greenloan.SCHEMA_VERSION,
                    updated_at=now,
                )
            )
            return
        raise Conflict(
            f"the sink's cursor for {source} is at seq {held or 0}, not {expected}: another "
            "sync job is writing to this sink; nothing of this batch was applied"
        )

    def counts(self, source: str) -> tuple[int, int]:
        """(records held, changes applied) from `source`: for status lines and tests."""
        with self._begin() as conn:
            records = conn.execute(
                select(func.count()).select_from(RECORDS).where(RECORDS.c.source_node == source)
            ).scalar_one()
            applied = conn.execute(
                select(func.count()).select_from(APPLIED).where(APPLIED.c.source_node == source)
            ).scalar_one()
        return int(records), int(applied)


_RECORD_COLUMNS = (*greenloan.COLUMNS, "source_node", "change_seq")
# Both backends speak INSERT … ON CONFLICT … DO UPDATE (SQLite since 3.24). A result id names
# one content, so a second UPSERT of it changes nothing, but must not fail either.
_UPSERT = (
    f"INSERT INTO {RECORDS.name} ({', '.join(_RECORD_COLUMNS)}) "
    f"VALUES ({', '.join(['?'] * len(_RECORD_COLUMNS))}) "
    "ON CONFLICT (jgbs) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _RECORD_COLUMNS if c != "jgbs")
)
_APPLY = (
    f"INSERT INTO {APPLIED.name} (source_node, seq, kind, result_id, applied_at) "
    "VALUES (?, ?, ?, ?, ?)"
)


def _statement(conn: Connection, sql: str) -> str:
    """`sql` written with `?` placeholders, in the driver's parameter style."""
    return sql if conn.dialect.paramstyle == "qmark" else sql.replace("?", "%s")
