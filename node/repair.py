"""Credit repair rules (NDRC Order No. 36, in force 2026-04-01; DESIGN.md §9), without I/O.

Administrative-penalty information is published for a period counted from the decision date:
minor at most 3 months; general at least 3 months and at most 1 year; serious at least 1 year and
at most 3 years. Repair before the minimum is refused with the earliest allowed date; from the
maximum on the record expires by itself. Both end publication and sharing (DESIGN.md §1.5):
a closed record's flag leaves the subject's results. Dates are China calendar days.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable

from node.errors import Conflict, InvalidInput

CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


class Severity(enum.IntEnum):
    MINOR = 1  # 轻微
    GENERAL = 2  # 一般
    SERIOUS = 3  # 严重


class PenaltyStatus(enum.IntEnum):
    IN_FORCE = 1
    REPAIRED = 2
    EXPIRED = 3
    REMOVED = 4  # taken off the serious-dishonesty list (移出)


# (minimum, maximum) publicity in months, by class (Order No. 36).
PUBLICITY_MONTHS: dict[Severity, tuple[int, int]] = {
    Severity.MINOR: (0, 3),
    Severity.GENERAL: (3, 12),
    Severity.SERIOUS: (12, 36),
}
# The flag an in-force record adds to its subject's results.
FLAG_BY_SEVERITY: dict[Severity, str] = {
    Severity.MINOR: "ADMINISTRATIVE_PENALTY",
    Severity.GENERAL: "ADMINISTRATIVE_PENALTY",
    Severity.SERIOUS: "SERIOUS_ADMINISTRATIVE_PENALTY",
}
MAX_REASON_CHARS = 500
MAX_RECORD_ID_CHARS = 128


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` plus calendar months; a day the target month lacks becomes its last day
    (30 November + 3 months = 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def china_day(at: dt.datetime) -> dt.date:
    """The calendar day in China at the instant `at`."""
    return at.astimezone(CHINA).date()


@dataclasses.dataclass(frozen=True, slots=True)
class Publicity:
    """When a record may be repaired, and when it expires by itself."""

    earliest_repair: dt.date
    expires_on: dt.date


def publicity(
    severity: Severity, decided_on: dt.date, announced_end: dt.date | None = None
) -> Publicity:
    """`announced_end`: the last day of publicity the deciding authority announced (双公示
    CF_GSJZQ). The record expires the day after it, but never later than the class's maximum:
    Order No. 36's maximum wins over a longer announcement."""
    low, high = PUBLICITY_MONTHS[severity]
    expires_on = add_months(decided_on, high)
    if announced_end is not None:
        expires_on = min(expires_on, announced_end + dt.timedelta(days=1))
    return Publicity(add_months(decided_on, low), expires_on)


class RepairTooEarly(Conflict):
    """The record's minimum publicity has not run out: a precondition, not bad input (HTTP
    409, gRPC FAILED_PRECONDITION); `earliest` is the first day it may be repaired."""

    reason = "REPAIR_TOO_EARLY"

    def __init__(self, message: str, earliest: dt.date) -> None:
        super().__init__(message)
        self.earliest = earliest


class RecordClosed(Conflict):
    reason = "RECORD_CLOSED"


def check_repair(
    record_id: str, severity: Severity, decided_on: dt.date, status: PenaltyStatus, today: dt.date
) -> None:
    """Raise RepairTooEarly (naming the earliest allowed date) or RecordClosed; else the record
    may be repaired `today`."""
    if status is not PenaltyStatus.IN_FORCE:
        raise RecordClosed(
            f"record {record_id} is already {status.name.lower()}; nothing to repair"
        )
    earliest = publicity(severity, decided_on).earliest_repair
    if today < earliest:
        raise RepairTooEarly(
            f"record {record_id} ({severity.name.lower()} penalty decided {decided_on}) may be "
            f"repaired from {earliest} on (minimum publicity "
            f"{PUBLICITY_MONTHS[severity][0]} months, NDRC Order No. 36)",
            earliest,
        )


def check_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InvalidInput("a repair needs a reason (--reason), e.g. the decision that allows it")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"the reason is {len(text):,} characters; at most {MAX_REASON_CHARS}")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class DueItem:
    """A record that becomes repairable or expires within the window asked about."""

    record_id: str
    event: str  # "repairable" | "expires"
    on: dt.date


def due_within(
    records: Iterable[
        tuple[str, Severity, dt.date] | tuple[str, Severity, dt.date, dt.date | None]
    ],
    today: dt.date,
    days: int,
) -> list[DueItem]:
    """The 到期修复提醒: records (id, class, decision date[, announced publicity end]) in force
    that become repairable or expire from today to `days` days ahead, by date."""
    end = today + dt.timedelta(days=days)
    found: list[DueItem] = []
    for record_id, severity, decided_on, *announced in records:
        when = publicity(severity, decided_on, announced[0] if announced else None)
        if severity is not Severity.MINOR and today <= when.earliest_repair <= end:
            found.append(DueItem(record_id, "repairable", when.earliest_repair))
        if when.expires_on <= end:
            found.append(DueItem(record_id, "expires", max(when.expires_on, today)))
    return sorted(found, key=lambda item: (item.on, item.record_id, item.event))
