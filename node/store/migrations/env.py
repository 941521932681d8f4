"""Alembic environment: migrates the connection that `node.store.migrate` hands over.

Generic on purpose: every revision runs in the caller's transaction, SQLite gets batch mode
(ALTER TABLE there is limited), and autogenerate compares against `Base.metadata`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from node.store import (
    audit,  # noqa: F401 - registers the auditor's index and access log
    log_tables,  # noqa: F401 - registers the exchange log tables
    penalties,  # noqa: F401 - registers the penalty records
    received,  # noqa: F401 - registers the received results and revocation cursors
    revocations,  # noqa: F401 - registers deliveries, notices and the notifier's state
    trust_floors,  # noqa: F401 - registers the trust-list floors table
)
from node.store.schema import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the store's migrations run through node.store.migrate(), which passes a connection; "
        "there is no alembic.ini for offline use"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
