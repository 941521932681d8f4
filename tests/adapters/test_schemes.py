"""Scheme tables are configuration: the shipped ones load and read as their vectors say
(tests/vectors/schemes/), each is marked illustrative or confirmed, and a broken table is
refused."""

from __future__ import annotations

import pathlib
import tomllib
from typing import Any

import pytest

from adapters.schemes import builtin_schemes, issued_schemes, parse_scheme
from node.errors import ConfigError
from node.model import CreditLevel

VECTORS: dict[str, Any] = tomllib.loads(
    (pathlib.Path(__file__).parent.parent / "vectors" / "schemes" / "vectors.toml").read_text(
        encoding="utf-8"
    )
)

GOOD = """
id = "x-credit@2024"
provenance = "illustrative"
validity_days = 365
score_min = 0
score_max = 100
[[levels]]
name = "优"
canonical = "A"
aliases = ["A"]
min_score = 80
[[levels]]
name = "差"
canonical = "D"
min_score = 0
"""


def test_shipped_schemes_load() -> None:
    schemes = builtin_schemes()
    assert set(schemes) == {
        "cn-public-credit@2022",
        "zj-public-credit@2023",
        "hz-enterprise-credit@2021",
        "sh-public-credit@2022",
        "js-public-credit@2021",
        "ah-public-credit@2022",
    }
    assert set(schemes) == set(VECTORS), "every shipped scheme has its vector, and only those"
    zj = schemes["zj-public-credit@2023"]
    assert [(lv.name, lv.canonical) for lv in zj.levels] == [
        ("A", CreditLevel.A), ("B", CreditLevel.B), ("C", CreditLevel.C), ("D", CreditLevel.D)
    ]  # fmt: skip
    assert zj.level_named(" 良好 ") is zj.levels[1]


def test_level_lookup_by_alias_and_by_score() -> None:
    scheme = parse_scheme(GOOD, "x.toml")
    assert scheme.level_named("a") is scheme.levels[0]
    assert scheme.level_for_score(80) is scheme.levels[0]
    assert scheme.level_for_score(79.9) is scheme.levels[1]
    assert not scheme.score_in_range(100.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id = ", "not valid TOML"),
        (GOOD.replace('"x-credit@2024"', '"x-credit"'), "must name a version"),
        (GOOD.replace("validity_days = 365", "validity_days = 0"), "validity_days"),
        (GOOD.replace('canonical = "D"', 'canonical = "E"'), "use one of A, B, C, D"),
        (GOOD.replace('aliases = ["A"]', 'aliases = ["差"]'), "used twice"),
        (GOOD.replace("min_score = 80", "min_score = -1"), "min_score descending"),
        (GOOD.replace("min_score = 0", ""), "every level or none"),
        (GOOD.split("[[levels]]")[0], "at least one"),
    ],
)
def test_broken_scheme_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scheme(text, "x.toml")


@pytest.mark.parametrize("scheme_id", sorted(VECTORS))
def test_shipped_scheme_reads_as_its_vector(scheme_id: str) -> None:
    scheme = builtin_schemes()[scheme_id]
    vector = VECTORS[scheme_id]
    for spelling, name, canonical in vector["spellings"]:
        level = scheme.level_named(spelling)
        assert level is not None, spelling
        assert (level.name, level.canonical) == (name, CreditLevel[canonical]), spelling
    for score, name in vector["scores"]:
        level = scheme.level_for_score(score)
        assert (level.name if level is not None else "") == name, score
    for spelling in vector["unknown"]:
        assert scheme.level_named(spelling) is None, spelling
    for division in vector["issued_by"]:
        assert scheme_id in issued_schemes(division), division
    for division in vector["not_issued_by"]:
        assert scheme_id not in issued_schemes(division), division


@pytest.mark.parametrize("scheme_id", sorted(VECTORS))
def test_shipped_scheme_says_who_confirms_it(scheme_id: str) -> None:
    """Every table is an illustrative default until its region confirms it, and says whom to ask."""
    scheme = builtin_schemes()[scheme_id]
    assert scheme.provenance == "illustrative"
    assert scheme.confirm_with
    assert {level.canonical for level in scheme.levels} == set(CreditLevel)


def test_a_node_issues_its_province_and_city_schemes() -> None:
    assert issued_schemes("330500") == ["hz-enterprise-credit@2021", "zj-public-credit@2023"]
    assert issued_schemes("310000") == ["sh-public-credit@2022"]
    assert issued_schemes("320100") == ["js-public-credit@2021"]
    assert issued_schemes("340100") == ["ah-public-credit@2022"]
    assert issued_schemes("110000") == []  # Beijing: no table shipped


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace('provenance = "illustrative"', ""), "provenance must be one of"),
        (GOOD.replace('provenance = "illustrative"', 'provenance = "agreed"'), "provenance"),
        (GOOD.replace("validity_days", 'region = "33"\nvalidity_days'), "GB/T 2260"),
    ],
)
def test_unmarked_or_misplaced_scheme_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scheme(text, "x.toml")
