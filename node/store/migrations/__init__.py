"""Alembic migrations of the store, run programmatically by `node.store.migrate` (no ini file)."""
