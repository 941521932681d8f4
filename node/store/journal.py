"""The changes journal (floor 3): one ordered sequence of every change to the published results.

Invariant: seqs run 1, 2, 3, … with no gap and no repeat, and a reader never sees seq n+1
before seq n. Writers append only inside a transaction that holds `Database.lock_changes`
(one writer at a time on every backend), taking `max(seq) + 1` onwards: so seqs are handed out
in commit order, and a rolled-back writer leaves no gap (a database sequence would).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.engine import Connection

from node.model import ChangeKind
from node.store.schema import ChangeRow

CHANGES = cast(Table, ChangeRow.__table__)


def last_seq(conn: Connection) -> int:
    """The last seq committed (as `conn` sees it); 0 while the journal is empty."""
    return int(conn.execute(select(func.coalesce(func.max(CHANGES.c.seq), 0))).scalar_one())


def append_changes(
    conn: Connection, changes: Sequence[tuple[ChangeKind, str]], at: dt.datetime
) -> int:
    """Append `(kind, result id)` changes in order; returns the last seq (0 when none).

    The caller's transaction must hold `Database.lock_changes` (see the module docstring).
    """
    last = last_seq(conn)
    if changes:
        conn.execute(
            insert(CHANGES),
            [
                {"seq": last + i, "kind": int(kind), "result_id": result_id, "at": at}
                for i, (kind, result_id) in enumerate(changes, start=1)
            ],
        )
    return last + len(changes)
