"""Read paths the answering side needs: a subject's current result, a stored answer."""

from __future__ import annotations

import sqlalchemy as sa

from node import model
from node.store import log_tables as t
from node.store.store import Store


class StoreResultSource:
    """Implements `node.interchange.ResultSource` over the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def current_result(self, subject: model.SubjectRef) -> model.CreditResult | None:
        current = self._store.results.get_current(subject.id_type, subject.id)
        if not current:
            return None
        # Several schemes may hold a result for one subject: the newest evaluation answers.
        return max(current, key=lambda r: (r.evaluated_at, r.result_id))

    def stored_answer(self, requester: str, request_id: str) -> tuple[int, bytes] | None:
        with self._store.connect() as conn:
            row = conn.execute(
                sa.select(t.log_answers.c.log_index, t.log_answers.c.response).where(
                    t.log_answers.c.requester == requester,
                    t.log_answers.c.request_id == request_id,
                )
            ).first()
        return (int(row.log_index), bytes(row.response)) if row else None
