"""Credit repair as operators and `serve` run it (floor 4): the rules of node.repair applied to
the penalty records in the store, with the clock. A repair or an expiry re-issues the subject's
results without the record's flag (node.store.penalties); the notifier then tells every peer
that received the old result (node.revocation).
"""

from __future__ import annotations

import asyncio
import logging

from node import repair
from node.clock import Clock
from node.errors import InvalidInput
from node.public_records import PenaltyRecord, RecordKind
from node.store import Store
from node.store.penalties import Reissued

log = logging.getLogger(__name__)
EXPIRY_CHECK_S = 60.0  # how often `serve` expires records past their maximum publicity


def repair_record(store: Store, record_id: str, reason: str, clock: Clock) -> Reissued:
    """Repair a record now; RepairTooEarly names the earliest allowed date."""
    text = repair.check_reason(reason)
    now = clock.now()

    def check(record: PenaltyRecord) -> None:
        if record.kind is not RecordKind.PENALTY:
            raise InvalidInput(
                f"record {record.record_id} is an entry of the serious-dishonesty list: it "
                "leaves the list by a removal (移出) in the list's file, not by repair"
            )
        repair.check_repair(
            record.record_id,
            record.severity,
            record.decided_on,
            record.status,
            repair.china_day(now),
        )

    return store.penalties.close(record_id, repair.PenaltyStatus.REPAIRED, text, now, check)


def expire_due(store: Store, clock: Clock) -> list[str]:
    """Expire every record in force whose maximum publicity has run out; their ids."""
    now = clock.now()
    today = repair.china_day(now)
    expired: list[str] = []
    for record in store.penalties.in_force():
        expires_on = repair.publicity(
            record.severity, record.decided_on, record.publicity_ends_on
        ).expires_on
        if today < expires_on:
            continue

        def check(held: PenaltyRecord) -> None:
            if held.status is not repair.PenaltyStatus.IN_FORCE:  # closed meanwhile
                raise repair.RecordClosed(f"record {held.record_id} is closed already")

        try:
            store.penalties.close(
                record.record_id,
                repair.PenaltyStatus.EXPIRED,
                f"maximum publicity ended {expires_on}",
                now,
                check,
            )
        except repair.RecordClosed:
            continue
        expired.append(record.record_id)
    return expired


def due(store: Store, clock: Clock, days: int) -> list[repair.DueItem]:
    """Records in force that become repairable or expire within `days` (到期修复提醒)."""
    today = repair.china_day(clock.now())
    return repair.due_within(
        (
            (r.record_id, r.severity, r.decided_on, r.publicity_ends_on)
            for r in store.penalties.in_force()
        ),
        today,
        days,
    )


async def run_expiry(store: Store, clock: Clock, interval_s: float = EXPIRY_CHECK_S) -> None:
    """`serve`'s scheduled task: expire what is due, then again every `interval_s`."""
    while True:
        try:
            for record_id in await asyncio.to_thread(expire_due, store, clock):
                log.info(
                    "penalty record %s expired: its flag left the subject's results", record_id
                )
        except Exception:
            log.exception("expiring penalty records failed; retrying")
        await asyncio.sleep(interval_s)
