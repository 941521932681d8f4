"""Read paths the answering side needs: subjects' current results and stored answers, for a
whole batch of requests at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa

from node import model
from node.store import log_tables as t
from node.store.results import RESULTS, result_from_row
from node.store.store import Store

# Values per IN list: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500

# Built once, with expanding IN parameters: building and caching a statement per batch cost
# more than running it when batches are small (one request at a time).
_ANSWERS = (
    sa.select(t.log_answers.c.request_id, t.log_answers.c.log_index, t.log_answers.c.response)
    .where(t.log_answers.c.requester == sa.bindparam("requester"),
           t.log_answers.c.request_id.in_(sa.bindparam("request_ids", expanding=True)))
)
# Which results are current: keys only. Rows are converted only for ids not cached yet.
_CURRENT_IDS = sa.select(RESULTS.c.result_id).where(
    RESULTS.c.subject_id.in_(sa.bindparam("subject_ids", expanding=True)),
    RESULTS.c.status == int(model.ResultStatus.ACTIVE),
)
_BY_ID = sa.select(RESULTS).where(
    RESULTS.c.result_id.in_(sa.bindparam("result_ids", expanding=True)))
_RESULT_CACHE_SIZE = 65536

StoredAnswer = tuple[int, bytes]
Read = tuple[str, str, model.SubjectRef | None]  # (requester, request id, subject)


class StoreResultSource:
    """Implements `node.interchange.ResultSource` over the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # A result id names one content for good (node.store.results), so a converted result
        # can be reused; whether it is still current is asked of the database every time.
        self._results: dict[str, model.CreditResult] = {}

    def read_many(
        self, reads: Sequence[Read]
    ) -> list[tuple[StoredAnswer | None, model.CreditResult | None]]:
        """For each (requester, request id, subject): the stored answer, else the subject's
        current result — for a whole batch of requests in one connection and two IN queries."""
        by_requester: dict[str, set[str]] = {}
        for requester, request_id, _ in reads:
            if request_id:
                by_requester.setdefault(requester, set()).add(request_id)
        subject_ids = sorted({s.id for _, _, s in reads if s is not None})
        answers: dict[tuple[str, str], StoredAnswer] = {}
        newest: dict[tuple[int, str], model.CreditResult] = {}
        with self._store.connect() as conn:
            # Per requester, so the lookup walks the (requester, request_id) primary key.
            for requester, wanted in by_requester.items():
                request_ids = sorted(wanted)
                for start in range(0, len(request_ids), _IN_CHUNK):
                    rows = conn.execute(_ANSWERS, {
                        "requester": requester,
                        "request_ids": request_ids[start : start + _IN_CHUNK],
                    })
                    for row in rows:
                        answers[(requester, row.request_id)] = (int(row.log_index),
                                                                bytes(row.response))
            current: list[str] = []
            for start in range(0, len(subject_ids), _IN_CHUNK):
                current.extend(conn.execute(
                    _CURRENT_IDS, {"subject_ids": subject_ids[start : start + _IN_CHUNK]}
                ).scalars())
            missing = [rid for rid in current if rid not in self._results]
            if len(self._results) + len(missing) > _RESULT_CACHE_SIZE:
                self._results.clear()
            for start in range(0, len(missing), _IN_CHUNK):
                for row in conn.execute(
                    _BY_ID, {"result_ids": missing[start : start + _IN_CHUNK]}
                ):
                    self._results[row.result_id] = result_from_row(
                        cast("Mapping[str, Any]", row._mapping))
            for result_id in current:
                result = self._results[result_id]
                key = (int(result.subject.id_type), result.subject.id)
                best = newest.get(key)
                # Several schemes may hold a result for one subject: the newest answers.
                if best is None or (result.evaluated_at, result.result_id) > (
                    best.evaluated_at, best.result_id
                ):
                    newest[key] = result
        return [
            (answers.get((requester, request_id)) if request_id else None,
             newest.get((int(subject.id_type), subject.id)) if subject is not None else None)
            for requester, request_id, subject in reads
        ]
