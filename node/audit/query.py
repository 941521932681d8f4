"""An auditor's search as parameters (pure): which entries, in which order, after which
cursor — checked and bounded, turned into a `node.store.audit.EntryQuery`.

A subject is searched as the log holds it: a USCC as it is, a resident id as the HMAC
pseudonym the node logs (the auditor gives the clear id; it never reaches the log, the access
record or a message). Every refusal names the parameter, never more than a few characters of
its value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping

from node import model
from node.audit.records import micros
from node.disclosure import EntryScope
from node.errors import InvalidInput, PermissionDenied
from node.identifiers import normalise, validate_resident_id, validate_uscc, validate_uscc_shape
from node.store.audit import EntryQuery

MAX_VALUE = 128  # characters of any one parameter
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTERS = (
    "peer",
    "zone",
    "purpose",
    "subject",
    "subject_type",
    "decision",
    "direction",
    "since",
    "until",
)
PAGING = ("cursor", "limit", "order")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_CURSOR = re.compile(r"[0-9]{1,19}")
_HMAC = re.compile(r"hmac-sha256:[0-9a-f]{64}")
_RESIDENT_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
SUBJECT_TYPES = ("uscc", "resident_id", "pseudonym")

Pseudonymise = Callable[[model.SubjectRef], model.SubjectRef]


@dataclasses.dataclass(frozen=True, slots=True)
class Search:
    """A checked search: the store query, its page size, and the filter as the access log
    records it (a resident id only as its pseudonym)."""

    query: EntryQuery
    limit: int
    recorded: dict[str, str]


def value(params: Mapping[str, str], name: str) -> str | None:
    """Parameter `name`, stripped; None when absent or empty; refused when over MAX_VALUE."""
    raw = params.get(name)
    if raw is None:
        return None
    if len(raw) > MAX_VALUE:
        raise InvalidInput(f"parameter {name} is longer than {MAX_VALUE} characters")
    raw = raw.strip()
    return raw or None


def check_known(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    for name in params:
        if name not in known:
            shown = name[:32] if name.isascii() and name.isprintable() else "?"
            raise InvalidInput(f"unknown parameter {shown!r}; known parameters: {', '.join(known)}")


def parse_search(
    params: Mapping[str, str],
    scope: EntryScope,
    pseudonymise: Pseudonymise,
    *,
    extra: tuple[str, ...] = PAGING,
) -> Search:
    """The search `params` ask for, within what `scope` may read: asking for a zone outside
    it is refused (PermissionDenied), not answered with nothing."""
    check_known(params, FILTERS + extra)
    recorded: dict[str, str] = {}
    fields: dict[str, object] = {}
    for name in ("peer", "zone", "purpose"):
        text = value(params, name)
        if text is None:
            continue
        if name == "peer":
            try:
                model.require_node_id(text, "peer")
            except InvalidInput:
                raise InvalidInput("peer must look like cn-330500 (cn- and six digits)") from None
        elif not _SLUG.fullmatch(text):
            raise InvalidInput(f"{name} must be a slug: a-z, 0-9 and '-', at most 64")
        fields[name] = recorded[name] = text
    zone = fields.get("zone")
    if isinstance(zone, str) and not scope.allows(zone):
        raise PermissionDenied(
            f"zone {zone} is not among the zones this auditor may read",
            reason="ZONE_NOT_ALLOWED",
        )
    subject = _subject(value(params, "subject"), value(params, "subject_type"), pseudonymise)
    if subject is not None:
        fields["subject"] = recorded["subject"] = subject
    for name, enum in (("decision", model.Decision), ("direction", model.Direction)):
        text = value(params, name)
        if text is None:
            continue
        try:
            fields[name] = int(enum[text.upper()])
        except KeyError:
            raise InvalidInput(f"{name} must be one of {', '.join(m.name for m in enum)}") from None
        recorded[name] = text.upper()
    for name in ("since", "until"):
        text = value(params, name)
        if text is not None:
            moment = parse_time(text, name)
            if name == "until" and _DATE.fullmatch(text):
                moment += dt.timedelta(days=1)  # a date `until` includes that day
            fields[f"{name}_us"] = micros(moment)
            recorded[name] = text
    order = value(params, "order") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidInput("order must be asc or desc")
    if order != "desc":
        recorded["order"] = order
    cursor = value(params, "cursor")
    if cursor is not None:
        if not _CURSOR.fullmatch(cursor):
            raise InvalidInput("cursor must be the next_cursor of a previous page")
        fields["after"] = int(cursor)
        recorded["cursor"] = cursor
    limit = parse_limit(value(params, "limit"))
    query = EntryQuery(
        zones=None if scope.every_zone else scope.zones,
        descending=order == "desc",
        **fields,  # type: ignore[arg-type]
    )
    return Search(query, limit, recorded)


def parse_limit(text: str | None, default: int = DEFAULT_LIMIT, most: int = MAX_LIMIT) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise InvalidInput(f"limit must be a whole number from 1 to {most}")
    return int(text)


def parse_time(text: str, name: str) -> dt.datetime:
    """ISO 8601 with a time zone, or a date (midnight in China, where the log's days are)."""
    try:
        if _DATE.fullmatch(text):
            day = dt.date.fromisoformat(text)
            return dt.datetime(
                day.year, day.month, day.day, tzinfo=dt.timezone(dt.timedelta(hours=8))
            )
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name} must be a date (2026-01-31) or a time with its zone "
            "(2026-01-31T08:00:00+08:00)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} must carry a time zone, e.g. +08:00 or Z")
    return moment.astimezone(dt.UTC)


def _subject(text: str | None, kind: str | None, pseudonymise: Pseudonymise) -> str | None:
    """The subject as the log holds it."""
    if kind is not None and kind not in SUBJECT_TYPES:
        raise InvalidInput(f"subject_type must be one of {', '.join(SUBJECT_TYPES)}")
    if text is None:
        if kind is not None:
            raise InvalidInput("subject_type is given without a subject")
        return None
    if kind == "pseudonym" or (kind is None and text.startswith(model.HMAC_SUBJECT_PREFIX)):
        if not _HMAC.fullmatch(text):
            raise InvalidInput("a pseudonymous subject is hmac-sha256: and 64 hex digits")
        return text
    if kind == "resident_id" or (kind is None and _looks_resident(text)):
        # The messages of validate_resident_id quote one character at most.
        ref = model.SubjectRef(model.SubjectIdType.RESIDENT_ID, validate_resident_id(text))
        return pseudonymise(ref).id
    # A legacy register code may be searched as it is: only its shape is checked here.
    return validate_uscc_shape(text)


def _looks_resident(text: str) -> bool:
    """Digits with a digit or X at the end: a resident id, unless it is a valid USCC (one
    with a wrong check character is searched with subject_type=uscc)."""
    if not _RESIDENT_SHAPE.fullmatch(normalise(text)):
        return False
    try:
        validate_uscc(text)
    except InvalidInput:
        return True
    try:
        validate_resident_id(text)
    except InvalidInput:
        return False
    return True
