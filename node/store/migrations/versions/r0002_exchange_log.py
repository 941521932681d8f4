"""The exchange log: entries, tree nodes, tree state, checkpoints, answers, witnessing.

Revision ID: 0002_exchange_log
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_exchange_log"
down_revision: str | None = "0001_initial"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "log_entries",
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name="pk_log_entries"),
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_log_nodes"),
    )
    op.create_table(
        "log_state",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_state"),
    )
    op.execute("INSERT INTO log_state (id, size, frontier, epoch) VALUES (1, 0, '', 0)")
    op.create_table(
        "log_checkpoints",
        sa.Column("size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_log_checkpoints"),
    )
    op.create_table(
        "log_answers",
        sa.Column("requester", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("requester", "request_id", name="pk_log_answers"),
    )
    op.create_table(
        "log_cosignatures",
        sa.Column("size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("witness", sa.String(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("size", "witness", name="pk_log_cosignatures"),
    )
    op.create_table(
        "witnessed_logs",
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("origin", name="pk_witnessed_logs"),
    )


def downgrade() -> None:
    for table in (
        "witnessed_logs",
        "log_cosignatures",
        "log_answers",
        "log_checkpoints",
        "log_state",
        "log_nodes",
        "log_entries",
    ):
        op.drop_table(table)
