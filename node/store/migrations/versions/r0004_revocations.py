"""Revocation notices (DESIGN.md §6 SubscribeRevocations): why and when a result was revoked,
who received which result, the signed notices per recipient; on the asking side, the results
received from peers and how far each peer's notices were applied.

Revision ID: 0004_revocations
Revises: 0003_trust_list_floors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_revocations"
down_revision: str | None = "0003_trust_list_floors"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("credit_results") as batch:
        batch.add_column(sa.Column("revoked_reason", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("revoked_at", _utc(), nullable=True))
    op.create_table(
        "deliveries",
        sa.Column("result_id", sa.String(), nullable=False),
        sa.Column("audience", sa.String(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("result_id", "audience", name="pk_deliveries"),
    )
    op.create_table(
        "revocation_notices",
        sa.Column("audience", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("result_id", sa.String(), nullable=False),
        sa.Column("reason", sa.SmallInteger(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("audience", "seq", name="pk_revocation_notices"),
        sa.UniqueConstraint("audience", "result_id", name="uq_revocation_notices_audience"),
    )
    op.create_table(
        "notifier_state",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("log_size", sa.BigInteger(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notifier_state"),
    )
    op.create_table(
        "received_results",
        sa.Column("issuer_node", sa.String(), nullable=False),
        sa.Column("result_id", sa.String(), nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("revoked_reason", sa.SmallInteger(), nullable=True),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("superseded_by", sa.String(), nullable=True),
        sa.Column("notice_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("issuer_node", "result_id", name="pk_received_results"),
    )
    op.create_table(
        "revocation_cursors",
        sa.Column("peer", sa.String(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("peer", name="pk_revocation_cursors"),
    )


def downgrade() -> None:
    for table in (
        "revocation_cursors",
        "received_results",
        "notifier_state",
        "revocation_notices",
        "deliveries",
    ):
        op.drop_table(table)
    with op.batch_alter_table("credit_results") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("revoked_reason")
