"""Temporary tables that hold one file's import while it is read (issue 11 §1).

They live on one connection (SQLite keeps them in a temporary file, PostgreSQL in the
session's temporary schema), hold no lock on the store's own tables, and are dropped when
the import ends: `staged_subjects` remembers every row's subject, for the once-per-file rule;
`staged_results` holds the rows that became results until they are applied in one transaction
(node.store.results). Python holds a chunk of them at a time, never the file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    func,
    select,
)
from sqlalchemy.engine import Connection

from node.model import CreditResult, SubjectRef

_METADATA = MetaData()

STAGED_SUBJECTS = Table(
    "staged_subjects",
    _METADATA,
    Column("row_number", BigInteger, primary_key=True, autoincrement=False),
    Column("id_type", SmallInteger, nullable=False),
    Column("subject_id", String, nullable=False),
    Index("ix_staged_subjects_subject", "subject_id", "id_type", "row_number"),
    prefixes=["TEMPORARY"],
)

# credit_results' columns an import writes from the file (results.result_row_values).
STAGED_RESULTS = Table(
    "staged_results",
    _METADATA,
    Column("row_number", BigInteger, primary_key=True, autoincrement=False),
    Column("result_id", String, nullable=False),
    Column("id_type", SmallInteger, nullable=False),
    Column("subject_id", String, nullable=False),
    Column("subject_name", Text, nullable=False),
    Column("subject_type", SmallInteger, nullable=False),
    Column("issuer_node", String, nullable=False),
    Column("scheme", String, nullable=False),
    Column("native_level", String, nullable=False),
    Column("native_score", Double),
    Column("level", SmallInteger, nullable=False),
    Column("flags", Text, nullable=False),
    Column("indicators", Text, nullable=False),
    Column("evaluated_at", Text, nullable=False),  # ISO 8601 with its offset
    Column("valid_until", Text, nullable=False),
    Column("content_digest", String(64), nullable=False),
    prefixes=["TEMPORARY"],
)
# Staged rows go in through the driver, as tuples of plain values: the staging tables are
# this module's alone, and SQLAlchemy's per-value processing cost more than the insert.
_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


class Staging:
    """The staging tables on `conn`, created by `create` and dropped by `drop`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        mark = _PLACEHOLDER[conn.dialect.paramstyle]
        self._insert_subject = _insert_sql(STAGED_SUBJECTS, mark)
        self._insert_result = _insert_sql(STAGED_RESULTS, mark)

    def create(self) -> None:
        _METADATA.create_all(self._conn)

    def drop(self) -> None:
        _METADATA.drop_all(self._conn)

    def first_rows(self, subjects: Sequence[tuple[int, SubjectRef]]) -> Mapping[int, int]:
        """Stage `(row, subject)` pairs; {row: first row naming the same subject} for repeats
        (adapters.streaming.SeenSubjects)."""
        if not subjects:
            return {}
        self._conn.exec_driver_sql(
            self._insert_subject, [(r, int(s.id_type), s.id) for r, s in subjects]
        )
        later, earlier = STAGED_SUBJECTS, STAGED_SUBJECTS.alias("earlier")
        query = (
            select(later.c.row_number, func.min(earlier.c.row_number))
            .join(
                earlier,
                and_(
                    earlier.c.subject_id == later.c.subject_id,
                    earlier.c.id_type == later.c.id_type,
                    earlier.c.row_number < later.c.row_number,
                ),
            )
            .where(later.c.row_number >= subjects[0][0])
            .group_by(later.c.row_number)
        )
        return {row: first for row, first in self._conn.execute(query)}

    def stage(self, records: Sequence[tuple[int, CreditResult, str]]) -> None:
        """Stage `(row, result, content digest)` triples."""
        if records:
            self._conn.exec_driver_sql(
                self._insert_result, [_staged_values(*record) for record in records]
            )

    def staged(self, after_row: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` staged results after row `after_row`, in row order, as mappings with
        credit_results' column names (node.store.results.result_from_row reads them)."""
        query = (
            select(STAGED_RESULTS)
            .where(STAGED_RESULTS.c.row_number > after_row)
            .order_by(STAGED_RESULTS.c.row_number)
            .limit(limit)
        )
        return [
            {
                **row._mapping,
                "evaluated_at": dt.datetime.fromisoformat(row.evaluated_at),
                "valid_until": dt.datetime.fromisoformat(row.valid_until),
            }
            for row in self._conn.execute(query)
        ]


def _insert_sql(table: Table, mark: str) -> str:
    columns = ", ".join(column.name for column in table.columns)
    return f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join([mark] * len(table.columns))})"


def _staged_values(row: int, result: CreditResult, digest: str) -> tuple[Any, ...]:
    """A staged_results row, in its columns' order."""
    return (
        row,
        result.result_id,
        int(result.subject.id_type),
        result.subject.id,
        result.subject_name,
        int(result.subject_type),
        result.issuer_node,
        result.scheme,
        result.native_level,
        result.native_score,
        int(result.level),
        "[]" if not result.flags else json.dumps(list(result.flags)),
        "{}"
        if not result.indicators
        else json.dumps(dict(result.indicators), ensure_ascii=False, sort_keys=True),
        result.evaluated_at.isoformat(),
        result.valid_until.isoformat(),
        digest,
    )
