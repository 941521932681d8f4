"""Crosswalks are configuration (issue 11 §3): the shipped ones load and map peer results as
their vectors say (tests/vectors/crosswalks/); a table that leaves a level of its source scheme
unmapped, or is otherwise broken, is refused when loaded."""

from __future__ import annotations

import pathlib
import tomllib
from typing import Any

import pytest

from adapters.crosswalks import (
    Crosswalk,
    CrosswalkRegistry,
    NotRecognised,
    RecognisedView,
    builtin_crosswalks,
    load_crosswalks,
    parse_crosswalk,
    recognise,
)
from adapters.schemes import builtin_schemes
from node.errors import ConfigError
from node.model import CreditLevel

CASES: list[dict[str, Any]] = tomllib.loads(
    (pathlib.Path(__file__).parent.parent / "vectors" / "crosswalks" / "vectors.toml").read_text(
        encoding="utf-8"
    )
)["case"]

SH_TO_ZJ = """
zone = "yrd"
from = "sh-public-credit@2022"
to = "zj-public-credit@2023"
version = 2
provenance = "illustrative"
[levels]
"优" = "A"
"良" = "B"
"中" = "C"
"较差" = "D"
"差" = "D"
[[bands]]
min_score = 80
level = "A"
[[bands]]
min_score = 0
level = "C"
[flags]
unlisted = "drop"
drop = ["UNDER_REPAIR"]
cap = { SERIOUS_DISHONESTY = "C" }
"""


def _parse(text: str) -> Crosswalk:
    return parse_crosswalk(text, "test.toml", builtin_schemes())


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c['crosswalk']}:{c['result'].get('level')}" for c in CASES]
)
def test_shipped_crosswalk_maps_as_its_vector(case: dict[str, Any]) -> None:
    crosswalk = builtin_crosswalks().version(case["crosswalk"])
    assert crosswalk is not None, case["crosswalk"]
    peer = case["result"]
    view = recognise(
        crosswalk,
        scheme=peer["scheme"],
        native_level=peer["level"],
        native_score=peer.get("score"),
        flags=peer["flags"],
    )
    if "not_recognised" in case:
        assert isinstance(view, NotRecognised)
        assert case["not_recognised"] in view.reason
        return
    want = case["expect"]
    assert view == RecognisedView(
        scheme=crosswalk.target.id,
        native_level=want["level"],
        level=CreditLevel[want["canonical"]],
        flags=tuple(want["flags"]),
        crosswalk=case["crosswalk"],
    )


def test_every_shipped_crosswalk_is_pinned_by_a_vector_and_marked() -> None:
    shipped = builtin_crosswalks().all()
    assert len(shipped) == 22
    assert {c.id for c in shipped} == {case["crosswalk"] for case in CASES}
    for crosswalk in shipped:
        assert crosswalk.provenance == "illustrative" and crosswalk.agreed_by, crosswalk.id
        # what §4 relies on: a zone's crosswalk is found by its schemes
        found = builtin_crosswalks().find(crosswalk.zone, crosswalk.source.id, crosswalk.target.id)
        assert found is crosswalk


def test_yrd_recognises_every_member_scheme_on_every_other() -> None:
    """Shanghai, Jiangsu, Anhui and Zhejiang each read the others' results (and Huzhou's local
    enterprise scheme) in the Yangtze River Delta zone."""
    local = ["zj-public-credit@2023", "sh-public-credit@2022", "js-public-credit@2021",
             "ah-public-credit@2022"]  # fmt: skip
    for target in local:
        for source in [*local, "hz-enterprise-credit@2021"]:
            if source != target:
                assert builtin_crosswalks().find("yrd", source, target) is not None
    assert builtin_crosswalks().find("hjjw", "sh-public-credit@2022", local[0]) is None


def test_newest_version_is_found_and_old_versions_stay_readable() -> None:
    first = builtin_crosswalks().version("yrd/sh-public-credit@2022→zj-public-credit@2023@1")
    assert first is not None
    second = _parse(SH_TO_ZJ)
    registry = CrosswalkRegistry([first, second])
    assert registry.find("yrd", "sh-public-credit@2022", "zj-public-credit@2023") is second
    assert registry.version(first.id) is first
    assert second.id == "yrd/sh-public-credit@2022→zj-public-credit@2023@2"
    with pytest.raises(ConfigError, match="given twice"):
        CrosswalkRegistry([first, first])


def test_flag_rules_drop_keep_and_cap() -> None:
    crosswalk = _parse(SH_TO_ZJ)
    view = recognise(
        crosswalk,
        scheme="sh-public-credit@2022",
        native_level="优",
        native_score=None,
        flags=["RED_LIST", "UNDER_REPAIR", "SERIOUS_DISHONESTY"],
    )
    # RED_LIST dropped as unlisted, UNDER_REPAIR dropped by name, the capping flag kept
    assert view == RecognisedView("zj-public-credit@2023", "C", CreditLevel.C,
                                  ("SERIOUS_DISHONESTY",), crosswalk.id)  # fmt: skip
    score_only = recognise(
        crosswalk, scheme="sh-public-credit@2022", native_level="", native_score=79.9, flags=()
    )
    assert isinstance(score_only, RecognisedView) and score_only.native_level == "C"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            SH_TO_ZJ.replace('"差" = "D"\n', ""),
            "does not cover every level of sh-public-credit@2022: 差 unmapped",
        ),
        (
            SH_TO_ZJ.replace('"较差" = "D"\n"差" = "D"\n', ""),
            "较差, 差 unmapped",
        ),
        (SH_TO_ZJ.replace('"优" = "A"', '"A" = "A"'), "names 'A', which is no level of sh-"),
        (SH_TO_ZJ.replace('"优" = "A"', '"优" = "优"'), "maps to '优', which is no level of zj-"),
        (
            SH_TO_ZJ.replace('from = "sh-public-credit@2022"', 'from = "sh-public-credit@2099"'),
            "unknown scheme 'sh-public-credit@2099'",
        ),
        (
            SH_TO_ZJ.replace('to = "zj-public-credit@2023"', 'to = "sh-public-credit@2022"'),
            "onto itself",
        ),
        (SH_TO_ZJ.replace("version = 2", 'version = "2"'), "version must be a positive integer"),
        (SH_TO_ZJ.replace('provenance = "illustrative"', ""), "provenance"),
        (SH_TO_ZJ.replace('zone = "yrd"', 'zone = "YRD"'), "lower-case slug"),
        (SH_TO_ZJ.replace("min_score = 0\n", "min_score = 10\n"), "do not cover"),
        (SH_TO_ZJ.replace("min_score = 80", "min_score = -5"), "descending"),
        (SH_TO_ZJ.replace('unlisted = "drop"', 'unlisted = "maybe"'), "flags.unlisted"),
        (
            SH_TO_ZJ.replace('SERIOUS_DISHONESTY = "C"', 'SERIOUS_DISHONESTY = "E"'),
            "the cap of SERIOUS_DISHONESTY maps to 'E'",
        ),
        (
            SH_TO_ZJ.replace('drop = ["UNDER_REPAIR"]', 'drop = ["SERIOUS_DISHONESTY"]'),
            "both dropped and a cap",
        ),
        (SH_TO_ZJ.split("[levels]")[0], "needs a [levels] table"),
        ("zone = ", "not valid TOML"),
    ],
)
def test_broken_crosswalk_is_refused_when_loaded(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _parse(text)


def test_incomplete_crosswalk_file_refuses_the_whole_directory(tmp_path: pathlib.Path) -> None:
    """A file shipped (or dropped in) with a level missing stops the load: nothing half-mapped."""
    (tmp_path / "yrd").mkdir()
    name = "yrd/sh-public-credit@2022→zj-public-credit@2023@2.toml"
    (tmp_path / name).write_text(SH_TO_ZJ, encoding="utf-8")
    assert len(load_crosswalks(tmp_path, builtin_schemes()).all()) == 1
    (tmp_path / name).write_text(SH_TO_ZJ.replace('"中" = "C"\n', ""), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"does not cover every level .* 中 unmapped"):
        load_crosswalks(tmp_path, builtin_schemes())
    (tmp_path / name).rename(tmp_path / "yrd" / "sh-to-zj.toml")
    (tmp_path / "yrd" / "sh-to-zj.toml").write_text(SH_TO_ZJ, encoding="utf-8")
    with pytest.raises(ConfigError, match="must be named yrd/sh-public-credit@2022→zj-"):
        load_crosswalks(tmp_path, builtin_schemes())
