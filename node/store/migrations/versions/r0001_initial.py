"""Initial schema: credit results, import batches and the changefeed journal.

Revision ID: 0001_initial
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_ACTIVE = "status = 1"  # model.ResultStatus.ACTIVE, frozen here as the migration was written


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "credit_results",
        sa.Column("result_id", sa.String(), nullable=False),
        sa.Column("id_type", sa.SmallInteger(), nullable=False),
        sa.Column("subject_id", sa.String(), nullable=False),
        sa.Column("subject_name", sa.Text(), nullable=False),
        sa.Column("subject_type", sa.SmallInteger(), nullable=False),
        sa.Column("issuer_node", sa.String(), nullable=False),
        sa.Column("scheme", sa.String(), nullable=False),
        sa.Column("native_level", sa.String(), nullable=False),
        sa.Column("native_score", sa.Double(), nullable=True),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("indicators", sa.Text(), nullable=False),
        sa.Column("evaluated_at", _utc(), nullable=False),
        sa.Column("valid_until", _utc(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("supersedes", sa.String(), nullable=True),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("result_id", name="pk_credit_results"),
        sa.ForeignKeyConstraint(
            ["supersedes"], ["credit_results.result_id"], name="fk_credit_results_supersedes"
        ),
    )
    op.create_index(
        "uq_credit_results_current",
        "credit_results",
        ["id_type", "subject_id", "scheme"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    op.create_index("ix_credit_results_subject", "credit_results", ["subject_id", "id_type"])

    op.create_table(
        "import_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("imported_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_import_batches"),
    )

    op.create_table(
        "changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("result_id", sa.String(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_changes"),
        sa.ForeignKeyConstraint(
            ["result_id"], ["credit_results.result_id"], name="fk_changes_result_id"
        ),
        sqlite_autoincrement=True,  # never reuse a seq: changefeed readers resume after one
    )
    op.create_index("ix_changes_result_id", "changes", ["result_id"])


def downgrade() -> None:
    op.drop_index("ix_changes_result_id", table_name="changes")
    op.drop_table("changes")
    op.drop_table("import_batches")
    op.drop_index("ix_credit_results_subject", table_name="credit_results")
    op.drop_index("uq_credit_results_current", table_name="credit_results")
    op.drop_table("credit_results")
