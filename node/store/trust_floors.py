"""The highest trust-list version accepted per zone (DESIGN.md §3 rollback protection), kept in
the store so that a restart never takes back an older list. This module owns the table: the
only one that reads or writes it; mirrored by migration 0003_trust_list_floors.

A floor only rises: several processes of one node may record at once, and the highest wins.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import BigInteger, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from node.store.engine import Database
from node.store.schema import Base, UtcDateTime


class TrustListFloorRow(Base):
    """A zone's highest accepted trust-list version and the SHA-256 of that list's payload."""

    __tablename__ = "trust_list_floors"

    zone: Mapped[str] = mapped_column(String, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    payload_sha256: Mapped[str] = mapped_column(String(64))  # hex
    accepted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


trust_list_floors: Table = TrustListFloorRow.__table__  # type: ignore[assignment]


class TrustFloorRepository:
    """`store.trust_floors`: read every zone's floor, raise one."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def recorded(self) -> dict[str, tuple[int, str]]:
        """zone -> (version, payload SHA-256 hex) of every floor recorded."""
        with self._store.connect() as conn:
            rows = conn.execute(
                sa.select(
                    trust_list_floors.c.zone,
                    trust_list_floors.c.version,
                    trust_list_floors.c.payload_sha256,
                )
            ).all()
        return {row.zone: (row.version, row.payload_sha256) for row in rows}

    def record(self, zone: str, version: int, payload_sha256: str, at: dt.datetime) -> None:
        """Raise `zone`'s floor to `version`; a floor already at or above it stays as it is."""
        insert = postgresql.insert if self._store.dialect == "postgresql" else sqlite.insert
        statement = insert(trust_list_floors).values(
            zone=zone, version=version, payload_sha256=payload_sha256, accepted_at=at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[trust_list_floors.c.zone],
            set_={
                "version": statement.excluded.version,
                "payload_sha256": statement.excluded.payload_sha256,
                "accepted_at": statement.excluded.accepted_at,
            },
            where=trust_list_floors.c.version < statement.excluded.version,
        )
        with self._store.begin() as conn:
            conn.execute(statement)
