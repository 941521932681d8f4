"""Which of this node's exchange-log entries a reader may see (DESIGN.md §6 GetEntries,
docs/adr/0007-log-entry-disclosure.md).

Pure rules: a reader's `EntryScope` is the zones whose entries it may read, or all of them;
`disclose` gives an entry's bytes or withholds them. A withheld entry keeps its index and has
empty `data`, which no real entry has (an ExchangeRecord always carries its time), so a reader
pages on and knows exactly what it was not shown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from node import model, wire
from node.errors import ConfigError, InvalidInput

EVERY_ZONE = "*"  # in [audit] readers: every entry, including those of no zone
WITHHELD = b""


@dataclasses.dataclass(frozen=True)
class EntryScope:
    """What a reader may read: the entries of `zones`, or every entry when `every_zone`."""

    zones: frozenset[str] = frozenset()
    every_zone: bool = False

    @classmethod
    def everything(cls) -> EntryScope:
        return cls(every_zone=True)

    def __or__(self, other: EntryScope) -> EntryScope:
        return EntryScope(self.zones | other.zones, self.every_zone or other.every_zone)

    @property
    def is_empty(self) -> bool:
        return not self.every_zone and not self.zones

    def allows(self, zone: str | None) -> bool:
        """Whether an entry of `zone` (None: no zone, or not readable as a record) is shown."""
        return self.every_zone or (zone is not None and zone in self.zones)


def entry_zone(data: bytes) -> str | None:
    """The zone of a serialized ExchangeRecord; None when it names none or does not parse."""
    try:
        zone = wire.record_zone(data)
    except InvalidInput:
        return None
    return zone or None


def disclose(scope: EntryScope, data: bytes) -> bytes:
    """The entry's bytes when `scope` allows them, else WITHHELD (its index is still sent)."""
    if scope.every_zone or scope.allows(entry_zone(data)):
        return data
    return WITHHELD


def audit_readers_from_document(
    doc: Mapping[str, Any], source: str = "node.toml"
) -> dict[str, EntryScope]:
    """node.toml's `[audit] readers`: node id -> the zones whose entries it may read, "*" for
    every entry, e.g. `readers = { "cn-310000" = ["*"], "cn-330100" = ["yrd", "hz-metro"] }`."""
    table = doc.get("audit", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [audit] must be a table")
    readers = table.get("readers", {})
    if not isinstance(readers, Mapping):
        raise ConfigError(
            f'{source}: [audit] readers maps a node id to zones, e.g. {{ "cn-310000" = ["*"] }}'
        )
    scopes: dict[str, EntryScope] = {}
    for node_id, zones in readers.items():
        where = f"{source}: [audit] readers.{node_id}"
        try:
            model.require_node_id(node_id, "an auditor's node id")
        except InvalidInput as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
        if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
            raise ConfigError(f'{where} must be a list of zone ids, or ["*"] for every entry')
        bad = [z for z in zones if z != EVERY_ZONE and not model.SLUG_RE.match(z)]
        if bad:
            raise ConfigError(f"{where}: {bad[0]!r} is neither a zone id nor {EVERY_ZONE!r}")
        scopes[node_id] = EntryScope(
            frozenset(z for z in zones if z != EVERY_ZONE), EVERY_ZONE in zones
        )
    return scopes
