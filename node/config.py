"""A node's identity configuration: frozen dataclasses checked on construction (floor 1).

`NodeConfig` is the `[node]` table of node.toml and `KeyPaths` its `[keys]` table; both convert
from and to plain mappings. `WitnessConfig` is its `[witness]` table. Files are read and written
by `node.home`; other tables of node.toml (zones, audit readers, …) belong to the modules that own
them (node.serving_config gathers what a serving node reads) and are left untouched here.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from node import divisions
from node.errors import ConfigError

log = logging.getLogger(__name__)
DEFAULT_LISTEN = "127.0.0.1:7443"
DEFAULT_AUDIT_LISTEN = "127.0.0.1:8080"

_NODE_ID = re.compile(r"cn-(\d{6})")
# host:port, where host is a name, an IPv4 address or a bracketed IPv6 address.
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})")


def division_of(node_id: str) -> str:
    """The GB/T 2260 division code in a node id `cn-<code>`, or ConfigError."""
    match = _NODE_ID.fullmatch(node_id)
    if match is None:
        raise ConfigError(f"node_id must look like cn-330500 (cn- and six digits), got {node_id!r}")
    return match.group(1)


def _check_address(value: str, field: str) -> None:
    match = _ADDRESS.fullmatch(value)
    if match is None or int(match.group(2)) > 65535:
        raise ConfigError(f"{field} must be host:port (e.g. {DEFAULT_LISTEN}), got {value!r}")


@dataclasses.dataclass(frozen=True)
class KeyPaths:
    """Where key material lives; relative paths are relative to the node home.

    Signing keys (several, for rotation) are listed in the manifest and stored beside it.
    """

    manifest: str = "keys/keys.json"
    log_key: str = "keys/log.key"
    witness_key: str = "keys/witness.key"
    tls_key: str = "keys/tls.key"
    tls_cert: str = "keys/tls.crt"
    subject_hmac_key: str = "keys/subject-hmac.key"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{field.name} must be a non-empty path, got {value!r}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> KeyPaths:
        return cls(**_known_fields(cls, table))

    def to_mapping(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Who this node is and where it listens. Add a field with a default to extend it."""

    node_id: str
    name: str
    division_code: str
    listen: str = DEFAULT_LISTEN
    audit_listen: str = DEFAULT_AUDIT_LISTEN
    db_url: str | None = None  # CREDITNODE_DB_URL overrides it; None means SQLite under data/
    # Sign and log answers in a worker process beside the gRPC server (node.answer.worker).
    answer_worker: bool = True
    keys: KeyPaths = dataclasses.field(default_factory=KeyPaths)

    def __post_init__(self) -> None:
        division = division_of(self.node_id)
        if self.division_code != division:
            raise ConfigError(
                f"division_code {self.division_code!r} does not match node_id {self.node_id} "
                f"(expected {division})"
            )
        if not divisions.is_plausible_division(division):
            raise ConfigError(f"node_id {self.node_id}: {division} is not a GB/T 2260 code")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("name must be a non-empty string, e.g. 湖州")
        _check_address(self.listen, "listen")
        _check_address(self.audit_listen, "audit_listen")
        if self.db_url is not None and (
            not isinstance(self.db_url, str) or "://" not in self.db_url
        ):
            raise ConfigError(
                f"db_url must be a database URL like sqlite:///… , got {self.db_url!r}"
            )
        if not isinstance(self.answer_worker, bool):
            raise ConfigError(f"answer_worker must be true or false, got {self.answer_worker!r}")
        if not isinstance(self.keys, KeyPaths):
            raise ConfigError("keys must be a KeyPaths")

    @classmethod
    def for_node(cls, node_id: str, name: str, **fields: Any) -> NodeConfig:
        """A config for `node_id` with its division code derived from it."""
        return cls(node_id=node_id, name=name, division_code=division_of(node_id), **fields)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, source: str = "node.toml") -> NodeConfig:
        """Build from a parsed node.toml: the `[node]` and optional `[keys]` tables.

        Every ConfigError names the file, the table and the key that is wrong.
        """
        node = doc.get("node")
        if not isinstance(node, Mapping):
            raise ConfigError(f"{source}: missing [node] table (node_id, name, division_code)")
        keys_table = doc.get("keys", {})
        if not isinstance(keys_table, Mapping):
            raise ConfigError(f"{source}: keys must be a table [keys]")
        try:
            keys = KeyPaths.from_mapping(keys_table)
        except ConfigError as exc:
            raise ConfigError(f"{source}: [keys] {exc.message}") from None
        try:
            node = _without_legacy_switch(node, source)
            fields = _known_fields(cls, node, exclude={"keys"})
            for required in ("node_id", "name", "division_code"):
                if required not in fields:
                    raise ConfigError(f"{required} is missing")
            for key in ("node_id", "name", "division_code", "listen", "audit_listen"):
                if key in fields and not isinstance(fields[key], str):
                    raise ConfigError(f"{key} must be a string, got {fields[key]!r}")
            return cls(keys=keys, **fields)
        except ConfigError as exc:
            raise ConfigError(f"{source}: [node] {exc.message}") from None

    def to_document(self) -> dict[str, Any]:
        """The `[node]` and `[keys]` tables (db_url omitted when unset: TOML has no null)."""
        node = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "keys"}
        if node["db_url"] is None:
            del node["db_url"]
        return {"node": node, "keys": self.keys.to_mapping()}


@dataclasses.dataclass(frozen=True)
class WitnessConfig:
    """node.toml's `[witness]` table: `peers`, the nodes that witness our log, and
    `[witness.logs]`, origin → verifier key of the logs we witness."""

    peers: tuple[str, ...] = ()  # node ids that witness our log
    logs: Mapping[str, str] = dataclasses.field(default_factory=dict)  # origin -> verifier key

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> WitnessConfig:
        table = doc.get("witness", {})
        if not isinstance(table, Mapping):
            raise ConfigError("node.toml [witness] must be a table")
        peers = table.get("peers", [])
        logs = table.get("logs", {})
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise ConfigError("node.toml [witness] peers must be a list of node ids")
        if not isinstance(logs, Mapping) or not all(isinstance(v, str) for v in logs.values()):
            raise ConfigError("node.toml [witness.logs] maps a log origin to its verifier key")
        return cls(tuple(peers), dict(logs))


def _without_legacy_switch(node: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """The [node] table without the retired `legacy_uscc_allowed` (DESIGN.md §9). Every
    node.toml `creditnode init` wrote holds `= false`: ignored, with a warning. `= true`
    admitted any wrong check character, typos too: refused, as its codes must now be listed."""
    if "legacy_uscc_allowed" not in node:
        return node
    if node["legacy_uscc_allowed"] is not False:
        raise ConfigError(
            "legacy_uscc_allowed = true is no longer supported: it admitted every USCC with a "
            "wrong check character, typos too. List the known legacy register codes, one per "
            "line, in legacy-uscc.txt in the node home, and remove the key"
        )
    log.warning(
        "%s: [node] legacy_uscc_allowed = false is no longer read; remove it "
        "(legacy register codes are listed in legacy-uscc.txt)",
        source,
    )
    return {key: value for key, value in node.items() if key != "legacy_uscc_allowed"}


def _known_fields(
    cls: type[Any], table: Mapping[str, Any], exclude: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (known keys: {', '.join(sorted(names))})")
    return dict(table)
