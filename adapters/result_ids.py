"""Deterministic, content-addressed result ids.

A result id names one content forever, because peers keep signed copies under it: the same
published content always gets the same id (re-importing a file changes nothing), and any change
to it (a re-evaluation, a correction of the same day) gets a new id that supersedes the old.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence

from node.model import (
    HMAC_SUBJECT_PREFIX,
    CreditLevel,
    SubjectIdType,
    SubjectRef,
    SubjectType,
)

_ID_VERSION = 1


def result_id_for(
    *,
    issuer_node: str,
    subject: SubjectRef,
    subject_name: str,
    subject_type: SubjectType,
    scheme: str,
    native_level: str,
    native_score: float | None,
    level: CreditLevel,
    flags: Sequence[str],
    indicators: Mapping[str, str],
    evaluated_at: dt.datetime,
    valid_until: dt.datetime,
    subject_key: bytes | None = None,
) -> str:
    """`<issuer node>:<32 hex>`: SHA-256 of the canonical JSON of what the issuer asserts.

    Flags count as a set and indicators as a map, so a re-export that merely reorders them
    keeps its ids. 128 bits keep ids short while collisions stay out of reach.

    Result ids travel to peers and into the exchange log, so a resident id enters the hash
    only as its keyed pseudonym (HMAC-SHA256 under the node's `subject_key`, the same form the
    log uses): nobody without the key can test guessed resident ids against a result id.
    """
    subject_id = subject.id
    if subject.id_type is SubjectIdType.RESIDENT_ID and subject_key is not None:
        digest = hmac.new(subject_key, subject.id.encode("ascii"), hashlib.sha256).hexdigest()
        subject_id = HMAC_SUBJECT_PREFIX + digest
    content = {
        "v": _ID_VERSION,
        "issuer_node": issuer_node,
        "id_type": subject.id_type.name,
        "subject_id": subject_id,
        "subject_name": subject_name,
        "subject_type": subject_type.name,
        "scheme": scheme,
        "native_level": native_level,
        "native_score": native_score,
        "level": level.name,
        "flags": sorted(set(flags)),
        "indicators": dict(indicators),
        "evaluated_at": evaluated_at.astimezone(dt.UTC).isoformat(),
        "valid_until": valid_until.astimezone(dt.UTC).isoformat(),
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{issuer_node}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:32]}"
