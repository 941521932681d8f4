"""The store's tables as typed SQLAlchemy declarative models (floor 3).

These mirror the migrations under `node/store/migrations/versions/`, which are the source of
truth for the schema; a test checks that the two agree. Enums are stored as their wire numbers
(DESIGN.md §5) and every timestamp comes back timezone-aware in UTC on every backend.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from node.model import ResultStatus

# SQLite only auto-assigns an INTEGER PRIMARY KEY; BIGINT elsewhere for long-lived sequences.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that must be timezone-aware going in and is aware UTC coming out.

    SQLite has no time zone type: values are stored there as naive UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# Every constraint has a name, so migrations can address it (SQLite batch mode needs this).
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table of the node; migrations' `target_metadata`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_ACTIVE = f"status = {int(ResultStatus.ACTIVE)}"


class CreditResultRow(Base):
    """A published result of a local subject; old evaluations stay as SUPERSEDED rows."""

    __tablename__ = "credit_results"

    result_id: Mapped[str] = mapped_column(String, primary_key=True)
    id_type: Mapped[int] = mapped_column(SmallInteger)
    subject_id: Mapped[str] = mapped_column(String)
    subject_name: Mapped[str] = mapped_column(Text)
    subject_type: Mapped[int] = mapped_column(SmallInteger)
    issuer_node: Mapped[str] = mapped_column(String)
    scheme: Mapped[str] = mapped_column(String)
    native_level: Mapped[str] = mapped_column(String)
    native_score: Mapped[float | None] = mapped_column(Double)
    level: Mapped[int] = mapped_column(SmallInteger)
    flags: Mapped[str] = mapped_column(Text)  # JSON array of UPPER_SNAKE strings
    indicators: Mapped[str] = mapped_column(Text)  # JSON object, string to string
    evaluated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    valid_until: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    status: Mapped[int] = mapped_column(SmallInteger)
    supersedes: Mapped[str | None] = mapped_column(String, ForeignKey("credit_results.result_id"))
    content_digest: Mapped[str] = mapped_column(String(64))  # hex SHA-256, see results.py
    # Why and when a REVOKED result was revoked (model.RevocationReason); NULL otherwise.
    revoked_reason: Mapped[int | None] = mapped_column(SmallInteger)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        # One current (ACTIVE) result per subject per scheme; superseded and revoked rows stay
        # beside it as history, so the uniqueness is partial.
        Index(
            "uq_credit_results_current",
            "id_type",
            "subject_id",
            "scheme",
            unique=True,
            sqlite_where=text(_ACTIVE),
            postgresql_where=text(_ACTIVE),
        ),
        # subject_id first: it is selective on its own (the id type has two values).
        Index("ix_credit_results_subject", "subject_id", "id_type"),
    )


class ImportBatchRow(Base):
    """One import of a results file, with what it changed."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)  # file name as given by the operator
    file_sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String)
    row_count: Mapped[int] = mapped_column(Integer)
    inserted: Mapped[int] = mapped_column(Integer)
    updated: Mapped[int] = mapped_column(Integer)
    unchanged: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ChangeRow(Base):
    """The changefeed journal: appended in the same transaction as the change it records."""

    __tablename__ = "changes"

    # AUTOINCREMENT on SQLite: a seq is never reused, so a reader resuming after_seq is safe.
    seq: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    kind: Mapped[int] = mapped_column(SmallInteger)  # model.ChangeKind
    result_id: Mapped[str] = mapped_column(
        String, ForeignKey("credit_results.result_id"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = ({"sqlite_autoincrement": True},)
