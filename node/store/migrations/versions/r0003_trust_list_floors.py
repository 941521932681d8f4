"""The highest trust-list version accepted per zone (rollback protection across restarts).

Revision ID: 0003_trust_list_floors
Revises: 0002_exchange_log
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_trust_list_floors"
down_revision: str | None = "0002_exchange_log"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "trust_list_floors",
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", name="pk_trust_list_floors"),
    )


def downgrade() -> None:
    op.drop_table("trust_list_floors")
