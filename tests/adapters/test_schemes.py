"""Scheme tables are configuration: the shipped ones load, and a broken table is refused."""

from __future__ import annotations

import pytest

from adapters.schemes import builtin_schemes, parse_scheme
from node.errors import ConfigError
from node.model import CreditLevel

GOOD = """
id = "x-credit@2024"
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
    assert set(schemes) == {"zj-public-credit@2023", "hz-enterprise-credit@2021"}
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
