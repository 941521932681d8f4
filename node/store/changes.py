"""Reading the changes journal (node.store.journal): each change with its result as it stands
now, the source of the Green Loan Link changefeed (DESIGN.md §6) and of revocation notices."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from node.model import ChangeKind, CreditResult
from node.store.engine import Database
from node.store.journal import CHANGES, last_seq
from node.store.results import RESULT_COLUMNS, RESULTS, result_from_row

_KINDS = {int(kind): kind for kind in ChangeKind}


@dataclasses.dataclass(frozen=True, slots=True)
class StoredChange:
    """One journal entry with the result it is about, as that result stands now."""

    seq: int
    kind: ChangeKind
    result: CreditResult


class ChangeRepository:
    """Reads of the journal: `Store.changes`."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def head(self) -> int:
        """The last seq committed; 0 while the journal is empty."""
        with self._store.connect() as conn:
            return last_seq(conn)

    def read(self, after_seq: int, limit: int) -> list[StoredChange]:
        """Up to `limit` changes after `after_seq`, in seq order, each with its result."""
        query = (
            select(CHANGES.c.seq, CHANGES.c.kind, *(RESULTS.c[name] for name in RESULT_COLUMNS))
            .join(RESULTS, RESULTS.c.result_id == CHANGES.c.result_id)
            .where(CHANGES.c.seq > after_seq)
            .order_by(CHANGES.c.seq)
            .limit(limit)
        )
        with self._store.connect() as conn:
            return [
                StoredChange(row.seq, _KINDS[row.kind], result_from_row(row))
                for row in conn.execute(query)
            ]
