"""The auditor API's OpenAPI 3.1 description, served at `api/openapi.json` (a test checks
that it names every route the application serves, with its parameters)."""

from __future__ import annotations

from typing import Any

from node import repair
from node.audit.query import MAX_LIMIT, MAX_VALUE

_TEXT = {"type": "string", "maxLength": MAX_VALUE}


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or _TEXT,
    }


FILTER_PARAMS = [
    _param("peer", "The other node of the exchange (cn-330400)."),
    _param("zone", "Cooperation zone id (yrd); refused (403) outside the auditor's zones."),
    _param("purpose", "Declared purpose (xinyi-dai)."),
    _param(
        "subject",
        "A USCC, a resident id (turned into the node's HMAC pseudonym: the log never holds "
        "it in clear), or a pseudonym hmac-sha256:<hex>.",
    ),
    _param(
        "subject_type",
        "How to read subject when its shape is ambiguous.",
        {"enum": ["uscc", "resident_id", "pseudonym"]},
    ),
    _param("decision", "GRANTED, REFUSED, NOT_FOUND or FAILED."),
    _param("direction", "ANSWERED (a peer asked us) or ASKED (we asked a peer)."),
    _param("since", "From this time on (ISO 8601 with zone, or a date: midnight in China)."),
    _param("until", "Before this time (same forms as since)."),
]
PAGING_PARAMS = [
    _param(
        "cursor", "next_cursor of the previous page.", {"type": "string", "pattern": "^[0-9]+$"}
    ),
    _param("limit", "Entries per page.", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    _param("order", "desc (newest first, the default) or asc.", {"enum": ["asc", "desc"]}),
]
_ERROR = {
    "description": "Refused: `error.reason` (UPPER_SNAKE) and `error.message`.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"reason": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            }
        }
    },
}
_REFUSALS = {
    "400": _ERROR,
    "401": {**_ERROR, "description": "No token, or a token not known here."},
    "403": {**_ERROR, "description": "A role or a zone this auditor does not have."},
}


def _get(summary: str, params: list[dict[str, Any]], ok: str, **extra: Any) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"token": []}],
            "parameters": params,
            "responses": {"200": {"description": ok, **extra}, **_REFUSALS},
        }
    }


_REPAIR = {
    "summary": (
        "Credit repair (信用修复, NDRC Order No. 36) of one penalty record, by the local "
        "platform (operators only): the record is closed as repaired and its subject's results "
        "are re-issued without its flag; every peer that received an old result is sent a "
        "signed revocation notice. Recorded in the access log with the record and the reason."
    ),
    "security": [{"token": []}],
    "parameters": [
        {
            "name": "record_id",
            "in": "path",
            "required": True,
            "description": "The penalty record's id (its decision number), URL-encoded.",
            "schema": {"type": "string", "minLength": 1, "maxLength": repair.MAX_RECORD_ID_CHARS},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["reason"],
                    "additionalProperties": False,
                    "properties": {
                        "reason": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": repair.MAX_REASON_CHARS,
                            "description": "Why: e.g. the repair decision's number.",
                        }
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": (
                "Repaired: record_id, status REPAIRED, reissued (each {old, new} result id)."
            )
        },
        **_REFUSALS,
        "400": {**_ERROR, "description": "A malformed body, reason or record id."},
        "403": {**_ERROR, "description": "Not an operator (ROLE_NOT_ALLOWED)."},
        "404": {**_ERROR, "description": "No such penalty record here (NO_RECORD)."},
        "409": {
            **_ERROR,
            "description": (
                "Too early (REPAIR_TOO_EARLY: error.earliest is the first day, YYYY-MM-DD, "
                "the record may be repaired), or closed already (RECORD_CLOSED)."
            ),
        },
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "credit-interchange-node auditor API",
            "version": "1",
            "description": (
                "Search, prove and export this node's exchange log (DESIGN.md §7-§8). Every "
                "request is recorded in an access log that operators read. Resident ids are "
                "masked unless the token may see them."
            ),
        },
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/info": _get(
                "The node, its log key and witnesses' keys (to pin), and who you are.",
                [],
                "Node facts.",
            ),
            "/api/entries": _get(
                "Entries matching the filters, a page at a time (stable while the log grows).",
                FILTER_PARAMS + PAGING_PARAMS,
                "entries, next_cursor (null on the last page), indexed_size.",
            ),
            "/api/entries/{index}": {
                "get": {
                    **_get(
                        "One entry: the decoded record, its bytes (unless withheld), its leaf "
                        "hash and inclusion proof against the latest checkpoint, cosigned.",
                        [],
                        "entry, data, leaf_hash, proof, checkpoint.",
                    )["get"],
                    "parameters": [
                        {
                            "name": "index",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 0},
                        }
                    ],
                }
            },
            "/api/checkpoints": _get(
                "Signed checkpoints, newest first, with the cosignatures they gathered.",
                [
                    _param("before", "Only checkpoints of a smaller tree size."),
                    _param("limit", "At most this many (1-200).", {"type": "integer"}),
                ],
                "latest, checkpoints, next_before.",
            ),
            "/api/consistency": _get(
                "RFC 9162 consistency proof between two tree sizes.",
                [
                    _param("from", "The older size (at least 1).", {"type": "integer"}),
                    _param(
                        "to",
                        "The newer size (at most the latest checkpoint's).",
                        {"type": "integer"},
                    ),
                ],
                "from, to, hashes (base64).",
            ),
            "/api/stats": _get(
                "Exchange volume by peer and day and refusals by reason, for the filters "
                "(unless since is given, the 31 days up to the newest entry).",
                FILTER_PARAMS,
                "volume, refusals.",
            ),
            "/api/export": _get(
                "The matching entries as CSV (UTF-8 with BOM, or GB18030) or NDJSON, streamed.",
                [
                    *FILTER_PARAMS,
                    _param("order", "asc or desc (the default).", {"enum": ["asc", "desc"]}),
                    _param("format", "csv (the default) or ndjson.", {"enum": ["csv", "ndjson"]}),
                    _param(
                        "encoding",
                        "For csv: utf-8 (with BOM, the default) or gb18030.",
                        {"enum": ["utf-8", "gb18030"]},
                    ),
                ],
                "The file, as an attachment.",
            ),
            "/api/access-log": _get(
                "Every auditor request, newest first (operators only).",
                [
                    _param("before", "Only records with a smaller id."),
                    _param("limit", "At most this many (1-1000).", {"type": "integer"}),
                ],
                "records, next_before.",
            ),
            "/api/records/{record_id}/repair": {"post": _REPAIR},
            "/api/openapi.json": {
                "get": {
                    "summary": "This description.",
                    "responses": {"200": {"description": "OpenAPI 3.1 JSON."}},
                }
            },
        },
    }
