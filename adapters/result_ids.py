"""Deterministic, content-addressed result ids.

A result id names one content forever, because peers keep signed copies under it: the same
published content always gets the same id (re-importing a file changes nothing), and any change
to it (a re-evaluation, a correction of the same day) gets a new id that supersedes the old.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence

from node.model import CreditLevel, SubjectRef, SubjectType

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
) -> str:
    """`<issuer node>:<32 hex>`: SHA-256 of the canonical JSON of what the issuer asserts.

    Flags count as a set and indicators as a map, so a re-export that merely reorders them
    keeps its ids. 128 bits keep ids short while collisions stay out of reach.
    """
    content = {
        "v": _ID_VERSION,
        "issuer_node": issuer_node,
        "id_type": subject.id_type.name,
        "subject_id": subject.id,
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
