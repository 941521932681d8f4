"""Persistent state of the node (floor 3): results, import batches and the changes journal.

`Store.open(url)` connects to SQLite or PostgreSQL and migrates to head; repositories hang off
the store (`store.results`) and speak `node.model` types only, never ORM rows.
"""

from node.store.results import ImportSummary, ResultRepository, content_digest
from node.store.schema import Base
from node.store.store import Store, head_revisions

__all__ = [
    "Base",
    "ImportSummary",
    "ResultRepository",
    "Store",
    "content_digest",
    "head_revisions",
]
