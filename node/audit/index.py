"""Keeps the auditor's index (node.store.audit `audit_entries`) up with the exchange log.

The sequencer's batch transaction stays as lean as the answer path needs (docs/adr/0003):
the index follows the log instead, in index order, a chunk per transaction, from wherever it
stands — on start, before each search, and in the background. Several processes may follow
the same log: a chunk another one indexed first is simply skipped (`add_entries` is
compare-and-set on the indexed size).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from node.audit.records import indexed
from node.log.store import LogStore
from node.store.audit import AuditRepository

log = logging.getLogger(__name__)

CHUNK = 2000  # entries read, decoded and indexed per transaction
FOLLOW_INTERVAL_S = 1.0


class LogIndexer:
    def __init__(self, log_store: LogStore, repository: AuditRepository) -> None:
        self._log = log_store
        self._repository = repository
        self._lock = threading.Lock()  # one catch-up at a time in this process
        self.size = 0  # entries known indexed

    def catch_up(self, most: int | None = None) -> int:
        """Index what the log committed beyond the index, `most` entries at most (None: all);
        returns the indexed size. Runs on a worker thread: it reads and writes the store."""
        with self._lock:
            start = self._repository.indexed_size()
            done = 0
            while most is None or done < most:
                want = CHUNK if most is None else min(CHUNK, most - done)
                entries = self._log.entries(start, start + want)
                if not entries:
                    break
                rows = [indexed(index, data) for index, data in entries]
                if not self._repository.add_entries(rows):
                    start = self._repository.indexed_size()  # another process was first
                    continue
                start += len(rows)
                done += len(rows)
            self.size = start
            return start

    async def follow(self, interval_s: float = FOLLOW_INTERVAL_S) -> None:
        """Catch up now and then, until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.catch_up)
            except Exception:
                log.exception("indexing the exchange log for auditors failed; will retry")
            await asyncio.sleep(interval_s)
