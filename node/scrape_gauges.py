"""The gauges `/metrics` sets when it is scraped (floor 4), from the store and the node's clock:
the exchange log's size and its latest checkpoint's age, each witness's largest cosigned size
and the age of its last cosignature, and the seconds until each zone's trust list expires.

Read from the store rather than counted in a process, they hold for a city whose several
processes share one log, and an age grows between two commits as an alert needs it to.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from node import metrics
from node.clock import Clock
from node.log.store import LogStore, Summary
from node.store.engine import Database
from node.trust import TrustStore


def observe_log(summary: Summary, now: dt.datetime) -> None:
    metrics.LOG_SIZE.set(summary.size)
    if summary.checkpoint is not None:
        metrics.CHECKPOINT_AGE.set(_age(summary.checkpoint[1], now))
    for witness, (size, received_at) in summary.cosigned.items():
        metrics.WITNESS_COSIGNED_SIZE.labels(witness).set(size)
        metrics.WITNESS_COSIGNATURE_AGE.labels(witness).set(_age(received_at, now))


def observe_trust(trust: TrustStore, now: dt.datetime) -> None:
    for zone in trust.zones():
        held = trust.trust_list(zone)
        if held is not None:
            metrics.TRUST_LIST_EXPIRES_IN.labels(zone).set((held.expires_at - now).total_seconds())


async def refresh(db: Database, trust: TrustStore, clock: Clock) -> None:
    """Set every gauge of this module (the store is read off the event loop)."""
    summary = await asyncio.to_thread(LogStore(db, clock).summary)
    now = clock.now()
    observe_log(summary, now)
    observe_trust(trust, now)


def _age(then: dt.datetime, now: dt.datetime) -> float:
    return max(0.0, (now - then).total_seconds())  # a clock stepped back reads as 0, not < 0
