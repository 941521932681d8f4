"""`creditnode adapters` (issue 11 §3): every import format, scheme and crosswalk shipped, each
with its version, as text and as JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner

from adapters.crosswalks import builtin_crosswalks
from adapters.registry import ADAPTERS
from adapters.schemes import builtin_schemes
from adapters.shuanggongshi import RECORD_FORMATS
from node.cli import main


def test_adapters_lists_formats_schemes_and_crosswalks_with_versions() -> None:
    result = CliRunner().invoke(main, ["adapters"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  huzhou-csv v1  " in "\n".join(lines)
    for scheme_id in builtin_schemes():
        assert any(line.startswith(f"  {scheme_id}  ") for line in lines), scheme_id
    assert "  sh-public-credit@2022  310000  illustrative  " in result.stdout
    for crosswalk in builtin_crosswalks().all():
        assert f"  {crosswalk.id}  illustrative" in lines


def test_adapters_json_carries_the_same_listing() -> None:
    result = CliRunner().invoke(main, ["adapters", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert [a["name"] for a in listing["adapters"]] == [*ADAPTERS, *RECORD_FORMATS]
    assert {s["id"] for s in listing["schemes"]} == set(builtin_schemes())
    cn = next(s for s in listing["schemes"] if s["id"] == "cn-public-credit@2022")
    assert cn["region"] is None and cn["levels"] == ["A", "B", "C", "D"]
    walk = next(c for c in listing["crosswalks"] if c["zone"] == "hjjw")
    assert walk == {
        "id": "hjjw/hz-enterprise-credit@2021→zj-public-credit@2023@1",
        "zone": "hjjw",
        "from": "hz-enterprise-credit@2021",
        "to": "zj-public-credit@2023",
        "version": 1,
        "provenance": "illustrative",
    }
