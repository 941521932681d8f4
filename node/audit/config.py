"""node.toml's `[auditor_web]` table: whether `creditnode serve` starts the auditor service
and where it listens (default: `[node] audit_listen`). Off unless `enabled = true`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from node.errors import ConfigError

TABLE = "auditor_web"


@dataclasses.dataclass(frozen=True, slots=True)
class AuditWebConfig:
    enabled: bool = False
    listen: str | None = None  # host:port; None: [node] audit_listen

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], source: str = "node.toml") -> AuditWebConfig:
        table = doc.get(TABLE, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: {TABLE} must be a table [{TABLE}]")
        unknown = sorted(set(table) - {"enabled", "listen"})
        if unknown:
            raise ConfigError(
                f"{source}: [{TABLE}] unknown key {unknown[0][:64]!r} (known keys: enabled, listen)"
            )
        enabled = table.get("enabled", False)
        listen = table.get("listen")
        if not isinstance(enabled, bool):
            raise ConfigError(f"{source}: [{TABLE}] enabled must be true or false")
        if listen is not None and (not isinstance(listen, str) or ":" not in listen):
            raise ConfigError(f"{source}: [{TABLE}] listen must be host:port, e.g. 127.0.0.1:8080")
        return cls(enabled, listen)
