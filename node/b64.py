"""Base64 text for the JSON files the node reads and writes (identity exports, key manifests,
trust-list drafts, log exports): standard alphabet, padded, and strict on reading."""

from __future__ import annotations

import base64
import binascii

from node.errors import CreditNodeError, InvalidInput


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(value: object, what: str, error: type[CreditNodeError] = InvalidInput) -> bytes:
    """Decode strict base64 or raise `error` naming `what`."""
    if not isinstance(value, str):
        raise error(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what} is not valid base64") from None
