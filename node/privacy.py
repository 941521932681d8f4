"""What an operator's command line may show of a person (floor 1): node.toml's `[privacy]`.

Resident ids (which hold a birth date) are masked in every CLI message unless the operator asks
with `--show-personal` and this node allows it; the default allows it to no one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from node.errors import ConfigError

TABLE = "privacy"


@dataclasses.dataclass(frozen=True, slots=True)
class PrivacyConfig:
    """The `[privacy]` table of node.toml."""

    # Whether `--show-personal` may print a resident id in clear on this node's command line.
    operator_may_show_personal: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.operator_may_show_personal, bool):
            raise ConfigError(
                "operator_may_show_personal must be true or false, got "
                f"{self.operator_may_show_personal!r}"
            )

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, source: str = "node.toml") -> PrivacyConfig:
        """From a parsed node.toml; no `[privacy]` table means the defaults."""
        table = doc.get(TABLE, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: {TABLE} must be a table [{TABLE}]")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"{source}: [{TABLE}] unknown key {unknown[0]!r} (known keys: "
                f"{', '.join(sorted(known))})"
            )
        try:
            return cls(**table)
        except ConfigError as exc:
            raise ConfigError(f"{source}: [{TABLE}] {exc.message}") from None
