"""Tables of the exchange log (DESIGN.md §7): entries, completed tree nodes, the tree state,
signed checkpoints, idempotent answers, cosignatures we received, and what we witnessed.

Written only by the sequencer (entries, nodes, state, checkpoints, answers) and the witness
code; mirrored by migration 0002_exchange_log.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from node.store.schema import Base, UtcDateTime


class LogEntryRow(Base):
    """One log entry: the exact bytes that were hashed (a serialized ExchangeRecord)."""

    __tablename__ = "log_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class LogNodeRow(Base):
    """A completed subtree above the leaves: MTH of leaves [idx*2^level, (idx+1)*2^level)."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LogStateRow(Base):
    """The single row (id = 1) of the tree state; its row lock is the sequencer's lock."""

    __tablename__ = "log_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)  # right-edge subtree hashes, largest first
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped to take the lock


class LogCheckpointRow(Base):
    """Every checkpoint this node signed: one per committed batch."""

    __tablename__ = "log_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class LogAnswerRow(Base):
    """The answer given to (requester, request_id), replayed for a repeated request id."""

    __tablename__ = "log_answers"

    requester: Mapped[str] = mapped_column(String, primary_key=True)
    request_id: Mapped[str] = mapped_column(String, primary_key=True)
    log_index: Mapped[int] = mapped_column(BigInteger)
    response: Mapped[bytes] = mapped_column(LargeBinary)


class CosignatureRow(Base):
    """A witness's cosignature line on one of our checkpoints."""

    __tablename__ = "log_cosignatures"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String, primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class WitnessedLogRow(Base):
    """As a witness: the latest checkpoint we cosigned for another node's log."""

    __tablename__ = "witnessed_logs"

    origin: Mapped[str] = mapped_column(String, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    checkpoint: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


# Core tables, for the sequencer's bulk statements.
log_entries: Table = LogEntryRow.__table__  # type: ignore[assignment]
log_nodes: Table = LogNodeRow.__table__  # type: ignore[assignment]
log_state: Table = LogStateRow.__table__  # type: ignore[assignment]
log_checkpoints: Table = LogCheckpointRow.__table__  # type: ignore[assignment]
log_answers: Table = LogAnswerRow.__table__  # type: ignore[assignment]
log_cosignatures: Table = CosignatureRow.__table__  # type: ignore[assignment]
witnessed_logs: Table = WitnessedLogRow.__table__  # type: ignore[assignment]
