"""node.toml's tables a serving node reads besides [node] and [keys]: `[witness]`
(node.config.WitnessConfig) and `[audit] readers`, parsed into values (node.serving_config)."""

from __future__ import annotations

from typing import Any

import pytest

from node.config import WitnessConfig
from node.disclosure import EntryScope
from node.errors import ConfigError
from node.serving_config import ServingConfig

HUZHOU_LOG = "creditx/cn-330500/log"


def test_no_tables_means_no_witnesses_and_no_readers() -> None:
    assert ServingConfig.from_document({}) == ServingConfig(WitnessConfig(), {})


def test_witness_and_audit_tables_are_read() -> None:
    doc = {
        "witness": {"peers": ["cn-330400"], "logs": {HUZHOU_LOG: "vkey"}},
        "audit": {"readers": {"cn-310000": ["*"], "cn-330100": ["yrd"]}},
    }
    config = ServingConfig.from_document(doc)
    assert config.witness == WitnessConfig(("cn-330400",), {HUZHOU_LOG: "vkey"})
    assert config.audit_readers == {
        "cn-310000": EntryScope(frozenset(), every_zone=True),
        "cn-330100": EntryScope(frozenset({"yrd"})),
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"witness": ["cn-330400"]}, "[witness] must be a table"),
        ({"witness": {"peers": "cn-330400"}}, "[witness] peers must be a list of node ids"),
        ({"witness": {"peers": [330400]}}, "[witness] peers must be a list of node ids"),
        ({"witness": {"logs": {HUZHOU_LOG: 1}}}, "[witness.logs] maps a log origin"),
        ({"audit": {"readers": {"cn-310000": "*"}}}, "[audit] readers.cn-310000 must be a list"),
        ({"audit": {"readers": {"shanghai": ["*"]}}}, "[audit] readers.shanghai"),
    ],
)
def test_a_wrong_table_names_itself(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServingConfig.from_document(doc, "home/node.toml")
    assert message in info.value.message
