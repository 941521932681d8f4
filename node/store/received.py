"""Results received from peers, on the asking side (floor 3): each kept with the peer's signed
envelope as received (verifiable again, offline) and its recognised view on our scheme with the
crosswalk id@version used (or why it was not recognised), and marked when the peer's revocation
notice says it is no longer current; and per peer, the last notice applied. This module owns
`received_results` and `revocation_cursors`; mirrored by migrations 0004_revocations and
0008_received_recognition.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, LargeBinary, SmallInteger, String, Table, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from adapters.crosswalks import NotRecognised, RecognisedView
from node.errors import Conflict
from node.model import CreditLevel, RevocationNotice, RevocationReason
from node.store.engine import Database
from node.store.schema import Base, UtcDateTime


class ReceivedResultRow(Base):
    """A result a peer issued to us, with its envelope (serialized wire Envelope)."""

    __tablename__ = "received_results"

    issuer_node: Mapped[str] = mapped_column(String, primary_key=True)
    result_id: Mapped[str] = mapped_column(String, primary_key=True)
    zone: Mapped[str] = mapped_column(String)
    purpose: Mapped[str] = mapped_column(String)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_reason: Mapped[int | None] = mapped_column(SmallInteger)  # model.RevocationReason
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    superseded_by: Mapped[str | None] = mapped_column(String)
    notice_seq: Mapped[int | None] = mapped_column(BigInteger)
    # The recognised view (adapters.crosswalks.RecognisedView); all None when not recognised.
    recognised_scheme: Mapped[str | None] = mapped_column(String)
    recognised_level: Mapped[str | None] = mapped_column(String)  # in recognised_scheme
    recognised_canonical: Mapped[int | None] = mapped_column(SmallInteger)  # model.CreditLevel
    recognised_flags: Mapped[str | None] = mapped_column(Text)  # space-separated, in order
    crosswalk: Mapped[str | None] = mapped_column(String)  # id@version; "": our own scheme
    not_recognised: Mapped[str | None] = mapped_column(Text)  # why, when not recognised


class RevocationCursorRow(Base):
    """The last notice of `peer` applied here."""

    __tablename__ = "revocation_cursors"

    peer: Mapped[str] = mapped_column(String, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


RECEIVED: Table = ReceivedResultRow.__table__  # type: ignore[assignment]
CURSORS: Table = RevocationCursorRow.__table__  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """A received result as held here."""

    issuer_node: str
    result_id: str
    zone: str
    purpose: str
    envelope: bytes
    received_at: dt.datetime
    revoked_reason: RevocationReason | None
    revoked_at: dt.datetime | None
    superseded_by: str
    recognised: RecognisedView | NotRecognised | None  # None: kept before recognition existed

    @property
    def current(self) -> bool:
        return self.revoked_reason is None


def _recognition_values(recognised: RecognisedView | NotRecognised | None) -> dict[str, object]:
    if isinstance(recognised, RecognisedView):
        return {
            "recognised_scheme": recognised.scheme,
            "recognised_level": recognised.native_level,
            "recognised_canonical": int(recognised.level),
            "recognised_flags": " ".join(recognised.flags),
            "crosswalk": recognised.crosswalk,
            "not_recognised": None,
        }
    return {
        "recognised_scheme": None,
        "recognised_level": None,
        "recognised_canonical": None,
        "recognised_flags": None,
        "crosswalk": None,
        "not_recognised": None if recognised is None else recognised.reason,
    }


def _recognition_of(row: Any) -> RecognisedView | NotRecognised | None:
    if row.recognised_scheme is not None:
        return RecognisedView(
            row.recognised_scheme,
            row.recognised_level,
            CreditLevel(row.recognised_canonical),
            tuple(row.recognised_flags.split()),
            row.crosswalk or "",
        )
    return None if row.not_recognised is None else NotRecognised(row.not_recognised)


def _received_of(row: Any) -> Received:
    return Received(
        row.issuer_node,
        row.result_id,
        row.zone,
        row.purpose,
        bytes(row.envelope),
        row.received_at,
        None if row.revoked_reason is None else RevocationReason(row.revoked_reason),
        row.revoked_at,
        row.superseded_by or "",
        _recognition_of(row),
    )


class ReceivedRepository:
    """`store.received`."""

    def __init__(self, store: Database) -> None:
        self._store = store

    def keep(
        self,
        *,
        issuer_node: str,
        result_id: str,
        zone: str,
        purpose: str,
        envelope: bytes,
        at: dt.datetime,
        recognised: RecognisedView | NotRecognised | None = None,
    ) -> None:
        """Keep a verified result a peer issued to us (the latest envelope of a result id),
        with its recognised view and the crosswalk used, or why it was not recognised."""
        recognition = _recognition_values(recognised)
        values = {
            "issuer_node": issuer_node,
            "result_id": result_id,
            "zone": zone,
            "purpose": purpose,
            "envelope": envelope,
            "received_at": at,
            **recognition,
        }
        with self._store.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(RECEIVED).values(values)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[RECEIVED.c.issuer_node, RECEIVED.c.result_id],
                    set_={
                        "envelope": envelope,
                        "received_at": at,
                        "zone": zone,
                        "purpose": purpose,
                        **recognition,
                    },
                )
            )

    def get(self, issuer_node: str, result_id: str) -> Received | None:
        with self._store.connect() as conn:
            row = conn.execute(
                select(RECEIVED).where(
                    RECEIVED.c.issuer_node == issuer_node, RECEIVED.c.result_id == result_id
                )
            ).first()
        return None if row is None else _received_of(row)

    def with_result_id(self, result_id: str) -> list[Received]:
        """Every result of that id we hold, whoever issued it (result ids are the issuer's)."""
        with self._store.connect() as conn:
            rows = conn.execute(
                select(RECEIVED)
                .where(RECEIVED.c.result_id == result_id)
                .order_by(RECEIVED.c.issuer_node)
            ).all()
        return [_received_of(row) for row in rows]

    def issuers(self) -> list[str]:
        """The peers we hold results of: whose notices concern us."""
        with self._store.connect() as conn:
            query = select(RECEIVED.c.issuer_node).distinct().order_by(RECEIVED.c.issuer_node)
            return [r.issuer_node for r in conn.execute(query)]

    def cursor(self, peer: str) -> int:
        """The last notice of `peer` applied here; 0 before the first."""
        with self._store.connect() as conn:
            found = conn.execute(
                select(CURSORS.c.last_seq).where(CURSORS.c.peer == peer)
            ).scalar_one_or_none()
        return int(found or 0)

    def apply_notice(self, notice: RevocationNotice, now: dt.datetime) -> bool:
        """Mark the result `notice` revokes and move the peer's cursor to its seq, together.
        Returns whether we held that result. Raises Conflict when the cursor is not just
        before the notice (another process applied it): nothing is marked then."""
        with self._store.begin() as conn:
            self._move_cursor(conn, notice.issuer_node, notice.seq, now)
            marked = conn.execute(
                update(RECEIVED)
                .where(
                    RECEIVED.c.issuer_node == notice.issuer_node,
                    RECEIVED.c.result_id == notice.result_id,
                )
                .values(
                    revoked_reason=int(notice.reason),
                    revoked_at=notice.revoked_at,
                    superseded_by=notice.superseded_by or None,
                    notice_seq=notice.seq,
                )
            ).rowcount
        return bool(marked)

    def _move_cursor(self, conn: Connection, peer: str, seq: int, now: dt.datetime) -> None:
        moved = conn.execute(
            update(CURSORS)
            .where(CURSORS.c.peer == peer, CURSORS.c.last_seq == seq - 1)
            .values(last_seq=seq, updated_at=now)
        ).rowcount
        if moved:
            return
        held = conn.execute(
            select(CURSORS.c.last_seq).where(CURSORS.c.peer == peer)
        ).scalar_one_or_none()
        if held is None and seq == 1:
            conn.execute(CURSORS.insert().values(peer=peer, last_seq=seq, updated_at=now))
            return
        raise Conflict(
            f"notice {seq} of {peer} does not follow the last applied ({held or 0}): another "
            "process applied notices meanwhile; nothing was marked"
        )
