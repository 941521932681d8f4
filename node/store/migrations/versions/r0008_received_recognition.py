"""Results received from peers keep their recognised view beside the peer's envelope (issue 11
§4): our scheme's level, its canonical level, the flags kept and the crosswalk id@version used,
or why the result was not recognised. Rows kept before have none (all NULL).

Revision ID: 0008_received_recognition
Revises: 0007_public_records
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_received_recognition"
down_revision: str | None = "0007_public_records"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

COLUMNS = (
    ("recognised_scheme", sa.String),
    ("recognised_level", sa.String),
    ("recognised_canonical", sa.SmallInteger),
    ("recognised_flags", sa.Text),
    ("crosswalk", sa.String),
    ("not_recognised", sa.Text),
)


def upgrade() -> None:
    with op.batch_alter_table("received_results") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("received_results") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
