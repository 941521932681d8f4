"""The one source of time (floor 1): every decision that reads the time takes it from a Clock.

Expiry of results, trust lists and keys, rate buckets, log timestamps and generated data all
ask a `Clock`, so tests and simulations inject one (`ManualClock`) and nothing passes or fails
with the calendar. China Standard Time (UTC+8, no daylight saving) names the local date.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "CST")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals only: rate buckets, timeouts)."""
        ...


class SystemClock:
    """The host's clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM = SystemClock()


class ManualClock:
    """A clock that moves only when told: `advance(seconds)` or `set(moment)`."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = _aware_utc(start)
        self._monotonic = 0.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back; use set() to jump")
        self._now += dt.timedelta(seconds=seconds)
        self._monotonic += seconds

    def set(self, moment: dt.datetime) -> None:
        """Jump the wall clock (as an operator's NTP step would); monotonic time stays."""
        self._now = _aware_utc(moment)


def china_date(moment: dt.datetime) -> dt.date:
    """The calendar date in China at `moment` (16:00-24:00 UTC is already the next day)."""
    return moment.astimezone(CHINA_TZ).date()


def _aware_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("a clock's time must carry a time zone")
    return moment.astimezone(dt.UTC)
