"""The auditor service (issue 13): the exchange log's searchable fields (`audit_entries`,
filled from the log by node.audit.index) and the append-only record of auditor requests
(`audit_access`), whose rows the database itself refuses to change or delete.

Revision ID: 0006_audit
Revises: 0005_penalties
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_audit"
down_revision: str | None = "0005_penalties"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_APPEND_ONLY = "the auditor access log is append-only"


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("direction", sa.SmallInteger(), nullable=False),
        sa.Column("peer", sa.String(), nullable=False),
        sa.Column("zone", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("decision", sa.SmallInteger(), nullable=False),
        sa.Column("reason_code", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name="pk_audit_entries"),
    )
    for name, columns in (
        ("peer", ["peer", "idx"]),
        ("zone", ["zone", "idx"]),
        ("purpose", ["purpose", "idx"]),
        ("subject", ["subject", "idx"]),
        ("decision", ["decision", "idx"]),
        ("time", ["time_us"]),
        ("day", ["day", "peer"]),
    ):
        op.create_index(f"ix_audit_entries_{name}", "audit_entries", columns)
    op.create_table(
        "audit_access",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("who", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("filter", sa.String(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_access"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_access_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_access_append_only BEFORE UPDATE OR DELETE ON audit_access "
            "FOR EACH ROW EXECUTE FUNCTION audit_access_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_access_no_{event.lower()} BEFORE {event} ON audit_access "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_access_append_only ON audit_access")
        op.execute("DROP FUNCTION audit_access_append_only()")
    op.drop_table("audit_access")
    for name in ("peer", "zone", "purpose", "subject", "decision", "time", "day"):
        op.drop_index(f"ix_audit_entries_{name}", "audit_entries")
    op.drop_table("audit_entries")
