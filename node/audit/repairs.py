"""An operator's credit repair over HTTP (`POST api/records/{record_id}/repair`), checked
without I/O: the record id from the path and the JSON body `{"reason": …}`, each bounded.
A refusal names what is wrong and never quotes what was sent.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata

from node import repair
from node.errors import InvalidInput

MAX_BODY_BYTES = 8192  # a 500-character reason, each character \u-escaped, fits with room


@dataclasses.dataclass(frozen=True, slots=True)
class RepairRequest:
    record_id: str
    reason: str  # stripped, 1..repair.MAX_REASON_CHARS characters


def check_record_id(record_id: str) -> str:
    """A penalty record's id as a path names it (a decision number such as 湖环罚〔2026〕12号)."""
    if not record_id or len(record_id) > repair.MAX_RECORD_ID_CHARS:
        raise InvalidInput(
            f"a record id is 1 to {repair.MAX_RECORD_ID_CHARS} characters", reason="BAD_RECORD_ID"
        )
    if any(_unstorable(c) for c in record_id):
        raise InvalidInput("a record id holds no control characters", reason="BAD_RECORD_ID")
    return record_id


def parse_repair(record_id: str, body: bytes) -> RepairRequest:
    """The repair a request asks for: its path's record id and its body's reason."""
    checked = check_record_id(record_id)
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput(f"the body is larger than {MAX_BODY_BYTES} bytes", reason="BAD_BODY")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput(
            'the body must be a JSON object in UTF-8: {"reason": "..."}', reason="BAD_BODY"
        ) from None
    if not isinstance(doc, dict) or set(doc) != {"reason"}:
        raise InvalidInput(
            'the body must be a JSON object with one key, reason: {"reason": "..."}',
            reason="BAD_BODY",
        )
    reason = doc["reason"]
    if not isinstance(reason, str):
        raise InvalidInput("reason must be a string", reason="BAD_BODY")
    if any(_unstorable(c) and c not in "\n\t" for c in reason):
        raise InvalidInput("reason holds a control character", reason="BAD_BODY")
    return RepairRequest(checked, repair.check_reason(reason))


def _unstorable(c: str) -> bool:
    # A control character (NUL: PostgreSQL's text refuses it) or a lone surrogate, which JSON's
    # \ud800 can carry and UTF-8 cannot encode. Other characters are kept, U+3000 included.
    return unicodedata.category(c) in ("Cc", "Cs")
