"""What a serving node reads from node.toml besides `[node]`, `[keys]` and the zone policy
(floor 3): `[witness]` (node.config.WitnessConfig) and `[audit] readers` (node.disclosure),
parsed once, so that the runtime is handed values. Also the example `[zones.*]` tables of the
first deployment, shipped as package data (`creditnode policy example`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Mapping
from typing import Any

from node.config import WitnessConfig
from node.disclosure import EntryScope, audit_readers_from_document


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    witness: WitnessConfig = dataclasses.field(default_factory=WitnessConfig)
    # node id -> the entries of our log it may read (docs/adr/0007), beyond what witnessing gives
    audit_readers: Mapping[str, EntryScope] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], source: str = "node.toml") -> ServingConfig:
        """From a parsed node.toml; every ConfigError names the table at fault."""
        return cls(WitnessConfig.from_document(doc), audit_readers_from_document(doc, source))


def example_zones_toml() -> str:
    return importlib.resources.files("node.data").joinpath("zones.example.toml").read_text()
