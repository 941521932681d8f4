"""Public records of two kinds in `penalty_records`: administrative penalties (as before) and
serious-dishonesty list entries (严重失信主体名单), told apart by `kind` (1 penalty, 2 list
entry); and a penalty's announced last day of publicity (双公示 CF_GSJZQ), which may end it
before its class's maximum.

Revision ID: 0007_public_records
Revises: 0006_audit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_public_records"
down_revision: str | None = "0006_audit"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("penalty_records") as batch:
        batch.add_column(sa.Column("kind", sa.SmallInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("publicity_ends_on", sa.Date(), nullable=True))
    op.create_index("ix_penalty_records_kind", "penalty_records", ["kind", "status"])


def downgrade() -> None:
    op.drop_index("ix_penalty_records_kind", "penalty_records")
    with op.batch_alter_table("penalty_records") as batch:
        batch.drop_column("publicity_ends_on")
        batch.drop_column("kind")
