"""The exchange log's storage (DESIGN.md §7): the only code that reads or writes its tables
(node/store/log_tables.py) — entries, tree nodes, the tree state, signed checkpoints, stored
answers, cosignatures we received, and the logs we witness.

Two kinds of callers: the sequencer and the answer path, inside the batch's transaction, use
the functions that take a connection (the batch's statements go straight to the driver, with
the dialect's parameter style: SQLAlchemy's per-row work cost more than the database's own);
everyone else uses a `LogStore`, which opens its own connections.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from node.clock import SYSTEM, Clock
from node.errors import Conflict
from node.log import merkle
from node.store import log_tables as t
from node.store.engine import Database

StoredAnswer = tuple[int, bytes, bytes]  # (log index, stored wire answer, its log entry)
AnswerKey = tuple[str, str]  # (requester, request id)

_TAKE_LOCK = "UPDATE log_state SET epoch = epoch + 1 WHERE id = 1"
_READ_STATE = "SELECT size, frontier FROM log_state WHERE id = 1"
# A stored answer comes with its log entry: whether it may be replayed depends on what was
# asked and decided then (DESIGN.md §6).
_ANSWER_SQLITE = (
    "SELECT a.log_index, a.response, e.data FROM log_answers a "
    "JOIN log_entries e ON e.idx = a.log_index "
    "WHERE a.requester = ? AND a.request_id = ?"
)
_ANSWERS_PG = (
    "SELECT a.request_id, a.log_index, a.response, e.data FROM log_answers a "
    "JOIN log_entries e ON e.idx = a.log_index "
    "WHERE a.requester = %s AND a.request_id = ANY(%s)"
)


class AnswerReplaced(Exception):
    """The stored answer a write was to replace had been replaced already."""


# --- inside the sequencer's batch transaction ---------------------------------------------------


@dataclasses.dataclass(slots=True)
class Batch:
    """What one committed batch writes, in the order the sequencer built it."""

    entries: list[tuple[int, bytes, bytes]] = dataclasses.field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = dataclasses.field(default_factory=list)
    answers: list[tuple[str, str, int, bytes]] = dataclasses.field(default_factory=list)
    # (new index, answer, requester, request id, the index it replaces)
    replaced: list[tuple[int, bytes, str, str, int]] = dataclasses.field(default_factory=list)


class BatchWriter:
    """The log's write lock and state for one batch, on the sequencer's connection (in its
    transaction, on the driver's cursor)."""

    def __init__(self, conn: sa.Connection) -> None:
        driver = conn.connection.driver_connection
        assert driver is not None, "the connection is open"
        self._conn = conn
        self._cursor = driver.cursor()
        self._sqlite = conn.dialect.name == "sqlite"
        self._mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"

    def lock(self) -> tuple[int, bytes]:
        """Take the log's write lock (the row lock on PostgreSQL, the database's write lock on
        SQLite: docs/adr/0002), so one process sequences at a time; the tree's size and
        frontier as committed."""
        if self._sqlite:
            self._cursor.execute("BEGIN IMMEDIATE")  # the caller's connection leaves BEGIN to us
        self._cursor.execute(_TAKE_LOCK)
        self._cursor.execute(_READ_STATE)
        size, frontier = self._cursor.fetchone()
        return int(size), bytes(frontier or b"")  # the initial row may hold an empty TEXT

    def write(
        self, batch: Batch, now: dt.datetime, size: int, frontier: bytes, root: bytes, note: str
    ) -> None:
        """The batch's entries, nodes and answers, the new tree state and its checkpoint."""
        mark, cursor = self._mark, self._cursor
        to_db = t.log_entries.c.created_at.type.bind_processor(self._conn.dialect)
        stamp: object = to_db(now) if to_db else now
        if mark == "?" and isinstance(stamp, dt.datetime):
            stamp = stamp.isoformat(" ")  # what sqlite3's adapter would store, done once
        cursor.executemany(
            "INSERT INTO log_entries (idx, data, leaf_hash, created_at) "
            f"VALUES ({mark}, {mark}, {mark}, {mark})",
            [(index, data, leaf, stamp) for index, data, leaf in batch.entries],
        )
        if batch.nodes:
            cursor.executemany(
                f"INSERT INTO log_nodes (level, idx, hash) VALUES ({mark}, {mark}, {mark})",
                batch.nodes,
            )
        if batch.answers:
            cursor.executemany(
                "INSERT INTO log_answers (requester, request_id, log_index, response) "
                f"VALUES ({mark}, {mark}, {mark}, {mark})",
                batch.answers,
            )
        for row in batch.replaced:
            cursor.execute(
                f"UPDATE log_answers SET log_index = {mark}, response = {mark} "
                f"WHERE requester = {mark} AND request_id = {mark} AND log_index = {mark}",
                row,
            )
            if cursor.rowcount != 1:  # answered again meanwhile: like a repeated insert
                raise AnswerReplaced(row[3])
        cursor.execute(
            f"UPDATE log_state SET size = {mark}, frontier = {mark} WHERE id = 1",
            (size, frontier),
        )
        cursor.execute(
            "INSERT INTO log_checkpoints (size, root, note, created_at) "
            f"VALUES ({mark}, {mark}, {mark}, {mark})",
            (size, root, note, stamp),
        )

    def close(self) -> None:
        self._cursor.close()


def leaf_hashes_from(conn: sa.Connection, start: int) -> Iterator[bytes]:
    """The leaf hashes of the entries from index `start` on, in order."""
    return iter(
        conn.execute(
            sa.select(t.log_entries.c.leaf_hash)
            .where(t.log_entries.c.idx >= start)
            .order_by(t.log_entries.c.idx)
        ).scalars()
    )


def latest_checkpoint(conn: sa.Connection) -> tuple[int, str] | None:
    """(size, note) of the latest checkpoint this log signed."""
    row = conn.execute(
        sa.select(t.log_checkpoints.c.size, t.log_checkpoints.c.note)
        .order_by(t.log_checkpoints.c.size.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.size), str(row.note))


def stored_answers(conn: sa.Connection, keys: Sequence[AnswerKey]) -> dict[AnswerKey, StoredAnswer]:
    """The stored answer (with its entry) of each (requester, request id) that has one."""
    answers: dict[AnswerKey, StoredAnswer] = {}
    driver = conn.connection.driver_connection
    assert driver is not None, "the connection is open"
    cursor = driver.cursor()
    try:
        if conn.dialect.name == "postgresql":  # one round trip per requester
            by_requester: dict[str, list[str]] = {}
            for requester, request_id in keys:
                by_requester.setdefault(requester, []).append(request_id)
            for requester, request_ids in by_requester.items():
                cursor.execute(_ANSWERS_PG, (requester, request_ids))
                for request_id, log_index, response, entry in cursor.fetchall():
                    answers[(requester, request_id)] = (
                        int(log_index),
                        bytes(response),
                        bytes(entry),
                    )
        else:  # SQLite: point lookups in process cost microseconds
            for requester, request_id in keys:
                cursor.execute(_ANSWER_SQLITE, (requester, request_id))
                row = cursor.fetchone()
                if row is not None:
                    answers[(requester, request_id)] = (int(row[0]), bytes(row[1]), bytes(row[2]))
    finally:
        cursor.close()
    return answers


# --- everyone else ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """The latest checkpoint a witness cosigned for one log: its size and root."""

    size: int
    root: bytes


NOTHING_HELD = Held(0, merkle.EMPTY_ROOT)


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole log as stored, in order: for verification and export."""

    entries: list[tuple[int, bytes, bytes]]  # (index, data, leaf hash)
    nodes: list[tuple[int, int, bytes]]  # (level, index, hash)
    checkpoints: list[tuple[int, str, bytes]]  # (size, note, root)
    cosignatures: list[tuple[int, str, str]]  # (size, witness, line)


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """Where the log stands, for an operator (`creditnode status`): its size, its latest
    checkpoint, and per witness the largest checkpoint it cosigned and when that arrived."""

    size: int
    checkpoint: tuple[int, dt.datetime] | None  # (size, signed at)
    cosigned: dict[str, tuple[int, dt.datetime]]  # witness name -> (size, received at)


@dataclasses.dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint as this log signed it (without the cosignatures it gathered since)."""

    size: int
    root: bytes
    note: str
    created_at: dt.datetime


class LogStore:
    def __init__(self, db: Database, clock: Clock = SYSTEM) -> None:
        self._db = db
        self._clock = clock

    # --- reading our log

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """(index, data) of the entries in [start, end)."""
        with self._db.connect() as conn:
            rows = conn.execute(
                sa.select(t.log_entries.c.idx, t.log_entries.c.data)
                .where(t.log_entries.c.idx >= start, t.log_entries.c.idx < end)
                .order_by(t.log_entries.c.idx)
            ).all()
        return [(int(r.idx), bytes(r.data)) for r in rows]

    def entries_at(self, indices: Sequence[int]) -> dict[int, bytes]:
        """The data of each entry in `indices` that exists (a page of search results)."""
        found: dict[int, bytes] = {}
        with self._db.connect() as conn:
            for start in range(0, len(indices), 500):
                chunk = indices[start : start + 500]
                found.update(
                    (int(r.idx), bytes(r.data))
                    for r in conn.execute(
                        sa.select(t.log_entries.c.idx, t.log_entries.c.data).where(
                            t.log_entries.c.idx.in_(chunk)
                        )
                    )
                )
        return found

    def checkpoints(self, before: int | None, limit: int) -> list[SignedCheckpoint]:
        """The newest `limit` checkpoints this log signed below size `before` (None: any)."""
        c = t.log_checkpoints.c
        stmt = sa.select(c.size, c.root, c.note, c.created_at).order_by(c.size.desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(c.size < before)
        with self._db.connect() as conn:
            return [
                SignedCheckpoint(int(r.size), bytes(r.root), str(r.note), r.created_at)
                for r in conn.execute(stmt)
            ]

    def cosignature_lines(self, size: int) -> list[str]:
        """The witnesses' cosignature lines on our checkpoint of `size`, by witness name."""
        with self._db.connect() as conn:
            return [
                str(line)
                for line in conn.execute(
                    sa.select(t.log_cosignatures.c.line)
                    .where(t.log_cosignatures.c.size == size)
                    .order_by(t.log_cosignatures.c.witness)
                ).scalars()
            ]

    def snapshot(self) -> Snapshot:
        with self._db.connect() as conn:
            entries = [
                (int(r.idx), bytes(r.data), bytes(r.leaf_hash))
                for r in conn.execute(
                    sa.select(
                        t.log_entries.c.idx, t.log_entries.c.data, t.log_entries.c.leaf_hash
                    ).order_by(t.log_entries.c.idx)
                )
            ]
            nodes = [
                (int(r.level), int(r.idx), bytes(r.hash))
                for r in conn.execute(
                    sa.select(t.log_nodes).order_by(t.log_nodes.c.level, t.log_nodes.c.idx)
                )
            ]
            checkpoints = [
                (int(r.size), str(r.note), bytes(r.root))
                for r in conn.execute(
                    sa.select(
                        t.log_checkpoints.c.size, t.log_checkpoints.c.note, t.log_checkpoints.c.root
                    ).order_by(t.log_checkpoints.c.size)
                )
            ]
            cosignatures = [
                (int(r.size), str(r.witness), str(r.line))
                for r in conn.execute(
                    sa.select(
                        t.log_cosignatures.c.size,
                        t.log_cosignatures.c.witness,
                        t.log_cosignatures.c.line,
                    ).order_by(t.log_cosignatures.c.size, t.log_cosignatures.c.witness)
                )
            ]
        return Snapshot(entries, nodes, checkpoints, cosignatures)

    def summary(self) -> Summary:
        with self._db.connect() as conn:
            size = conn.execute(sa.select(t.log_state.c.size)).scalar()
            latest = conn.execute(
                sa.select(t.log_checkpoints.c.size, t.log_checkpoints.c.created_at)
                .order_by(t.log_checkpoints.c.size.desc())
                .limit(1)
            ).first()
            cosigned = conn.execute(
                sa.select(
                    t.log_cosignatures.c.witness,
                    sa.func.max(t.log_cosignatures.c.size),
                    sa.func.max(t.log_cosignatures.c.received_at),
                ).group_by(t.log_cosignatures.c.witness)
            ).all()
        return Summary(
            int(size or 0),
            None if latest is None else (int(latest.size), latest.created_at),
            {str(w): (int(n), at) for w, n, at in cosigned},
        )

    # --- cosignatures our witnesses sent

    def confirmed_size(self, witness: str) -> int:
        """The largest of our checkpoint sizes that `witness` has cosigned (0 if none)."""
        with self._db.connect() as conn:
            size = conn.execute(
                sa.select(sa.func.max(t.log_cosignatures.c.size)).where(
                    t.log_cosignatures.c.witness == witness
                )
            ).scalar()
        return int(size or 0)

    def store_cosignature(self, size: int, witness: str, line: str) -> None:
        with self._db.begin() as conn:
            conn.execute(
                sa.delete(t.log_cosignatures).where(
                    t.log_cosignatures.c.size == size, t.log_cosignatures.c.witness == witness
                )
            )
            conn.execute(
                sa.insert(t.log_cosignatures).values(
                    size=size,
                    witness=witness,
                    line=line.removesuffix("\n"),
                    received_at=self._clock.now(),
                )
            )

    # --- the logs we witness

    def witnessed(self, origin: str) -> Held:
        with self._db.connect() as conn:
            return _witnessed(conn, origin)

    def advance_witnessed(
        self, origin: str, check: Callable[[Held], None], size: int, root: bytes, note: str
    ) -> None:
        """Compare and swap what we hold for `origin`: `check` (raising if the new
        checkpoint does not follow from what is held) and the write share one transaction;
        Conflict if another writer moved it meanwhile."""
        with self._db.begin() as conn:
            held = _witnessed(conn, origin)
            check(held)
            values: dict[str, Any] = {
                "size": size,
                "root": root,
                "checkpoint": note,
                "updated_at": self._clock.now(),
            }
            exists = (
                held != NOTHING_HELD
                or conn.execute(
                    sa.select(t.witnessed_logs.c.origin).where(t.witnessed_logs.c.origin == origin)
                ).first()
                is not None
            )
            if not exists:
                conn.execute(sa.insert(t.witnessed_logs).values(origin=origin, **values))
                return
            updated = conn.execute(
                sa.update(t.witnessed_logs)
                .where(
                    t.witnessed_logs.c.origin == origin,
                    t.witnessed_logs.c.size == held.size,
                    t.witnessed_logs.c.root == held.root,
                )
                .values(**values)
            ).rowcount
            if updated != 1:
                raise Conflict(f"the witnessed size of {origin} changed meanwhile; ask again")


def _witnessed(conn: sa.Connection, origin: str) -> Held:
    row = conn.execute(
        sa.select(t.witnessed_logs.c.size, t.witnessed_logs.c.root).where(
            t.witnessed_logs.c.origin == origin
        )
    ).first()
    return Held(int(row.size), bytes(row.root)) if row else NOTHING_HELD
