"""Deterministic result ids: the same subject, scheme and evaluation date from the same issuer
always get the same id, so importing a file twice updates rows instead of duplicating them.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from node.model import SubjectRef


def result_id_for(
    issuer_node: str, subject: SubjectRef, scheme: str, evaluated_at: dt.datetime
) -> str:
    """`<issuer node>:<32 hex>` from SHA-256 over the identifying fields.

    The fields are joined with a unit separator (0x1f), which none of them may contain, so two
    different tuples can never hash the same input.
    """
    key = "\x1f".join(
        (
            issuer_node,
            subject.id_type.name,
            subject.id,
            scheme,
            evaluated_at.astimezone(dt.UTC).isoformat(),
        )
    )
    return f"{issuer_node}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"
