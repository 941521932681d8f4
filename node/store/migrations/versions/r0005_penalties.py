"""Penalty records (行政处罚, DESIGN.md §9): the publicity that credit repair ends. Each record
belongs to one subject, has a class (minor, general, serious) and a decision date, adds its flag
to the subject's results while in force, and is closed by repair or expiry.

Revision ID: 0005_penalties
Revises: 0004_revocations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_penalties"
down_revision: str | None = "0004_revocations"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "penalty_records",
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("id_type", sa.SmallInteger(), nullable=False),
        sa.Column("subject_id", sa.String(), nullable=False),
        sa.Column("subject_name", sa.Text(), nullable=False),
        sa.Column("severity", sa.SmallInteger(), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("flag", sa.String(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("closed_at", _utc(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name="pk_penalty_records"),
    )
    op.create_index("ix_penalty_records_subject", "penalty_records", ["subject_id", "id_type"])
    op.create_index("ix_penalty_records_status", "penalty_records", ["status", "decided_on"])


def downgrade() -> None:
    op.drop_table("penalty_records")
