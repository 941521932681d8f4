"""Exchange-log entries as an auditor sees them (pure): the fields the index keeps of an
entry, and an entry's view — the decoded record with every personal identifier masked unless
the reader may see it.

The log never holds a resident id in clear (DESIGN.md §5: `hmac-sha256:<hex>`), but that
pseudonym still links a person's exchanges together: a reader without the personal grant sees
its first eight hex digits only, and any 18-digit resident-id shape in free text (a peer's
refusal message, a request id) is masked like the command line masks one.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from node import model, wire
from node.errors import InvalidInput
from node.identifiers import mask_resident_id
from node.store.audit import IndexedEntry

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ORDINAL_1970 = dt.date(1970, 1, 1).toordinal()
_CHINA_OFFSET_S = 8 * 3600  # the log's days are China's (UTC+8, no daylight saving)
_REASON_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_RESIDENT_SHAPE = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
PSEUDONYM_SHOWN = 8  # hex digits of a resident's pseudonym shown without the personal grant
FIELDS = (
    "index",
    "time",
    "direction",
    "requester",
    "responder",
    "peer",
    "zone",
    "purpose",
    "subject_type",
    "subject",
    "request_id",
    "request_digest",
    "decision",
    "reason_code",
    "reason",
    "result_id",
    "result_digest",
)


def micros(moment: dt.datetime) -> int:
    """Microseconds since 1970 UTC, exactly (no float rounding)."""
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def from_micros(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def reason_code(reason: str) -> str:
    """The UPPER_SNAKE code a logged reason starts with: "NOT_IN_ZONE: …" on the answering
    side, "PERMISSION_DENIED NOT_IN_ZONE: …" on the asking side (the last word before the
    colon), "OTHER" for text of another shape, "" for none."""
    if not reason:
        return ""
    head = reason.partition(":")[0].split()
    code = head[-1] if head else ""
    return code if _REASON_CODE.fullmatch(code) else "OTHER"


def peer_of(record: model.ExchangeRecord) -> str:
    """The other node of an exchange: who asked us, or whom we asked."""
    if record.direction is model.Direction.ANSWERED:
        return record.requester_node
    return record.responder_node


def decode(data: bytes) -> model.ExchangeRecord | None:
    """The record an entry holds; None for bytes that are not one."""
    try:
        return wire.record_from_bytes(data)
    except InvalidInput:
        return None


def indexed(index: int, data: bytes) -> IndexedEntry:
    """The index row of entry `index` (read from its bytes as they are: an entry that does not
    decode, or names values outside the contract, is found only by readers of every zone)."""
    try:
        f = wire.record_fields(data)
    except InvalidInput:
        return IndexedEntry(index, 0, 19700101, 0, "", "", "", "", 0, "OTHER")
    day = dt.date.fromordinal(_ORDINAL_1970 + (f.seconds + _CHINA_OFFSET_S) // 86400)
    return IndexedEntry(
        idx=index,
        time_us=f.seconds * 1_000_000 + f.nanos // 1000,
        day=day.year * 10000 + day.month * 100 + day.day,
        direction=f.direction,
        # The other node: who asked us (ANSWERED = 1), or whom we asked.
        peer=f.requester_node if f.direction == model.Direction.ANSWERED else f.responder_node,
        zone=f.zone,
        purpose=f.purpose,
        subject=f.subject_id,
        decision=f.decision,
        reason_code=reason_code(f.reason),
    )


def mask_text(text: str) -> str:
    """`text` with every resident-id shape in it masked (330500********0387)."""
    return _RESIDENT_SHAPE.sub(lambda m: mask_resident_id(m.group(0)), text)


def shown_subject(subject: model.SubjectRef | None, personal: bool) -> str:
    if subject is None:
        return ""
    if subject.id_type is not model.SubjectIdType.RESIDENT_ID or personal:
        return subject.id
    if subject.is_pseudonymous:
        prefix = len(model.HMAC_SUBJECT_PREFIX)
        return subject.id[: prefix + PSEUDONYM_SHOWN] + "…"
    return mask_resident_id(subject.id)  # never logged in clear; masked all the same


def is_personal(record: model.ExchangeRecord | None) -> bool:
    """Whether an entry concerns a natural person (its bytes hold the person's pseudonym)."""
    return (
        record is not None
        and record.subject is not None
        and record.subject.id_type is model.SubjectIdType.RESIDENT_ID
    )


def view(index: int, record: model.ExchangeRecord | None, personal: bool) -> dict[str, Any]:
    """Entry `index` for a reader (`personal`: may see residents' pseudonyms whole)."""
    if record is None:
        return {name: "" for name in FIELDS} | {"index": index, "decision": "UNREADABLE"}
    subject = record.subject
    return {
        "index": index,
        "time": record.time.isoformat().replace("+00:00", "Z"),
        "direction": record.direction.name,
        "requester": record.requester_node,
        "responder": record.responder_node,
        "peer": peer_of(record),
        "zone": record.zone,
        "purpose": record.purpose,
        "subject_type": subject.id_type.name if subject is not None else "",
        "subject": shown_subject(subject, personal),
        "request_id": record.request_id if personal else mask_text(record.request_id),
        "request_digest": record.request_digest.hex(),
        "decision": record.decision.name,
        "reason_code": reason_code(record.reason),
        "reason": record.reason if personal else mask_text(record.reason),
        "result_id": record.result_id,
        "result_digest": record.result_digest.hex(),
    }
