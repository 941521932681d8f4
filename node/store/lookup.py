"""The read path the answering side needs of the results: subjects' current results, for a
whole batch of queries at once, inside the exchange log's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa

from node import model
from node.store.results import RESULTS, result_from_row

# Values per IN list: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500

_ACTIVE = int(model.ResultStatus.ACTIVE)
_CURRENT_SQLITE = (
    f"SELECT result_id FROM credit_results WHERE subject_id = ? AND status = {_ACTIVE}"
)
_CURRENT_PG = (
    f"SELECT result_id FROM credit_results WHERE subject_id = ANY(%s) AND status = {_ACTIVE}"
)
# Rows are converted only for result ids not cached yet.
_BY_ID = sa.select(RESULTS).where(
    RESULTS.c.result_id.in_(sa.bindparam("result_ids", expanding=True))
)
_RESULT_CACHE_SIZE = 65536


class StoreResultSource:
    """Implements `node.answer.exchange.ResultSource` over the store."""

    def __init__(self) -> None:
        # A result id names one content for good (node.store.results), so a converted result
        # can be reused; whether it is still current is asked of the database every time.
        self._results: dict[str, model.CreditResult] = {}

    def read_many(
        self, conn: sa.Connection, subjects: Sequence[model.SubjectRef | None]
    ) -> list[model.CreditResult | None]:
        """Each subject's current result (None where it has none), read on `conn` (the log's
        transaction)."""
        newest: dict[tuple[int, str], model.CreditResult] = {}
        subject_ids = list({s.id for s in subjects if s is not None})
        # Straight to the driver: SQLAlchemy's per-statement work cost more than these
        # lookups, which each walk an index (docs/adr/0004).
        driver = conn.connection.driver_connection
        assert driver is not None, "the connection is open"
        cursor = driver.cursor()
        try:
            if conn.dialect.name == "postgresql":  # one round trip for all
                cursor.execute(_CURRENT_PG, (subject_ids,))
                current = [row[0] for row in cursor.fetchall()]
            else:  # SQLite: point lookups in process cost microseconds
                current = []
                for subject_id in subject_ids:
                    cursor.execute(_CURRENT_SQLITE, (subject_id,))
                    current.extend(row[0] for row in cursor.fetchall())
        finally:
            cursor.close()
        missing = [rid for rid in current if rid not in self._results]
        if len(self._results) + len(missing) > _RESULT_CACHE_SIZE:
            self._results.clear()
        for start in range(0, len(missing), _IN_CHUNK):
            for row in conn.execute(_BY_ID, {"result_ids": missing[start : start + _IN_CHUNK]}):
                self._results[row.result_id] = result_from_row(
                    cast("Mapping[str, Any]", row._mapping)
                )
        for result_id in current:
            result = self._results[result_id]
            key = (int(result.subject.id_type), result.subject.id)
            best = newest.get(key)
            # Several schemes may hold a result for one subject: the newest answers.
            if best is None or (result.evaluated_at, result.result_id) > (
                best.evaluated_at,
                best.result_id,
            ):
                newest[key] = result
        return [
            newest.get((int(subject.id_type), subject.id)) if subject is not None else None
            for subject in subjects
        ]
