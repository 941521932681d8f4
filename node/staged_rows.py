"""A public record as a row of the store's staged_records table (node.store.record_import),
made without the store: a reader process (node.reader_process) makes the rows of its part of
a file, and imports neither the store nor its driver.

The order of a row's values is that of staged_records' columns.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from node.public_records import ListChange, ListRemoval, PenaltyRecord, RecordKind
from node.repair import publicity

ADD, REMOVE = 1, 2  # a row's action
_DAYS_REMEMBERED = 16_384  # combinations of kind, class and days (StagedRows.row)
_QUOTE = json.encoder.encode_basestring


def _content_json(content: Mapping[str, str]) -> str:
    """A record's content as node.store.penalties stores it (json.dumps, keys sorted, not
    ASCII-escaped), written directly: json.dumps sets an encoder up per call."""
    return "{" + ", ".join(f"{_QUOTE(k)}: {_QUOTE(content[k])}" for k in sorted(content)) + "}"


class StagedRows:
    """Records made into staged_records rows, as a store of one dialect keeps them (SQLite:
    days as text). Picklable: a process that reads a part of a file makes its rows."""

    def __init__(self, *, sqlite: bool) -> None:
        self._day: Callable[[dt.date], Any] = _day_text if sqlite else _same
        self._days: dict[tuple[Any, ...], tuple[Any, Any, Any, str]] = {}

    def row(self, row: int, change: ListChange) -> tuple[Any, ...]:
        """The staged row of the record in `row`."""
        content = _content_json(change.content)
        subject = change.subject
        if isinstance(change, ListRemoval):
            return (
                row, REMOVE, change.record_id, int(RecordKind.SERIOUS_DISHONESTY_LIST),
                int(subject.id_type), subject.id, change.subject_name, 0,
                self._day(change.removed_on), None, None, "", content, int(change.reason), 0,
            )  # fmt: skip
        key = (change.kind, change.severity, change.decided_on, change.publicity_ends_on)
        staged = self._days.get(key)
        if staged is None:  # a file repeats few combinations: each is worked out once
            staged = self._days_and_flag(change)
            if len(self._days) < _DAYS_REMEMBERED:
                self._days[key] = staged
        return (
            row, ADD, change.record_id, int(change.kind), int(subject.id_type), subject.id,
            change.subject_name, int(change.severity), *staged, content, None, 0,
        )  # fmt: skip

    def _days_and_flag(self, record: PenaltyRecord) -> tuple[Any, Any, Any, str]:
        """decided_on, publicity_ends_on and expires_on as staged (a list entry leaves by
        removal: no expiry), and the flag."""
        day = self._day
        ends = record.publicity_ends_on
        expires = None
        if record.kind is RecordKind.PENALTY:
            expires = publicity(record.severity, record.decided_on, ends).expires_on
        return (
            day(record.decided_on),
            None if ends is None else day(ends),
            None if expires is None else day(expires),
            record.flag,
        )


def _day_text(day: dt.date) -> str:
    return day.isoformat()  # how SQLAlchemy's Date keeps a day in SQLite


def _same(day: dt.date) -> dt.date:
    return day


__all__ = ["ADD", "REMOVE", "StagedRows"]
