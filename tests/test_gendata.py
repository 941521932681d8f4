"""Synthetic exports: deterministic per seed, every identifier valid for the city, a plausible
mix of subjects, levels, flags and indicators, and importable by the named adapter."""

from __future__ import annotations

import collections
import datetime as dt
import pathlib

import pytest
from click.testing import CliRunner

from adapters.registry import ADAPTERS, get_adapter
from adapters.schemes import builtin_schemes, issued_schemes
from node import divisions, identifiers
from node.cli import main
from node.clock import CHINA_TZ, SYSTEM, china_date
from node.errors import InvalidIdentifier, InvalidInput
from node.gendata import (
    VALIDITY_MARGIN_DAYS,
    generate_export,
    generate_results,
    organisation_code_check,
)
from node.model import CreditLevel, CreditResult, SubjectIdType, SubjectType

AS_OF = dt.date(2031, 2, 28)  # any date: the data move with it
CITY = "cn-330500"
HUZHOU_CODES = {"330500", "330502", "330503", "330521", "330522", "330523"}


@pytest.fixture(scope="module")
def results() -> list[CreditResult]:
    return generate_results(CITY, 3000, 42, AS_OF)


@pytest.mark.parametrize("fmt", sorted(ADAPTERS))
def test_same_seed_same_bytes_other_seed_other_bytes(fmt: str) -> None:
    first = generate_export(CITY, 200, 7, AS_OF, fmt)
    assert generate_export(CITY, 200, 7, AS_OF, fmt) == first
    assert generate_export(CITY, 200, 8, AS_OF, fmt) != first


@pytest.mark.parametrize("fmt", sorted(ADAPTERS))
def test_export_imports_as_the_generated_results(fmt: str) -> None:
    data = generate_export(CITY, 300, 3, AS_OF, fmt)
    assert get_adapter(fmt).parse(data, issuer_node=CITY) == generate_results(CITY, 300, 3, AS_OF)


def test_identifiers_are_valid_distinct_and_of_the_city(results: list[CreditResult]) -> None:
    assert len({r.subject for r in results}) == len(results)
    for r in results:
        if r.subject.id_type is SubjectIdType.USCC:
            code = identifiers.validate_uscc(r.subject.id)
            assert identifiers.uscc_division(code) in HUZHOU_CODES
            assert organisation_code_check(code[8:16]) == code[16]  # GB 11714 inside the USCC
        else:
            code = identifiers.validate_resident_id(r.subject.id)
            assert code[:6] in HUZHOU_CODES
            assert r.subject_type is SubjectType.NATURAL_PERSON


@pytest.mark.parametrize(
    ("subject_type", "prefixes"),
    [
        (SubjectType.ENTERPRISE, {"91", "93"}),
        (SubjectType.INDIVIDUAL_BUSINESS, {"92"}),
        (SubjectType.SOCIAL_ORGANIZATION, {"51", "52", "53"}),
        (SubjectType.PUBLIC_INSTITUTION, {"12"}),
        (SubjectType.GOVERNMENT_AGENCY, {"11"}),
    ],
)
def test_uscc_prefix_matches_the_subject_type(
    results: list[CreditResult], subject_type: SubjectType, prefixes: set[str]
) -> None:
    seen = {r.subject.id[:2] for r in results if r.subject_type is subject_type}
    assert seen and seen <= prefixes


def test_mix_is_mostly_good_enterprises_with_some_bad_and_a_few_people(
    results: list[CreditResult],
) -> None:
    levels = collections.Counter(r.level for r in results)
    share = {level: levels[level] / len(results) for level in CreditLevel}
    assert share[CreditLevel.A] + share[CreditLevel.B] > 0.75
    assert 0.05 < share[CreditLevel.C] < 0.2
    assert 0 < share[CreditLevel.D] < 0.1
    types = collections.Counter(r.subject_type for r in results)
    assert types.most_common(1)[0][0] is SubjectType.ENTERPRISE
    assert 0 < types[SubjectType.NATURAL_PERSON] < 0.1 * len(results)
    assert set(types) == set(SubjectType)


def test_flags_fit_the_level(results: list[CreditResult]) -> None:
    flagged = collections.defaultdict(set)
    for r in results:
        for flag in r.flags:
            flagged[flag].add(r.level)
    assert flagged["RED_LIST"] == {CreditLevel.A}
    assert flagged["SERIOUS_DISHONESTY"] <= {CreditLevel.C, CreditLevel.D}
    assert flagged["UNDER_REPAIR"] <= {CreditLevel.C, CreditLevel.D}


def test_scores_fall_in_their_level_band(results: list[CreditResult]) -> None:
    schemes = builtin_schemes()
    scored = [r for r in results if r.native_score is not None]
    assert 0.7 * len(results) < len(scored) < len(results)  # the score column is optional
    for r in scored:
        assert r.native_score is not None
        band = schemes[r.scheme].level_for_score(r.native_score)
        assert band is not None and band.name == r.native_level and band.canonical is r.level
    assert {r.scheme for r in results} == set(issued_schemes(CITY.removeprefix("cn-")))


def test_green_indicators_only_for_some_enterprises(results: list[CreditResult]) -> None:
    with_indicators = [r for r in results if r.indicators]
    assert with_indicators
    assert all(r.subject_type is SubjectType.ENTERPRISE for r in with_indicators)
    assert all(
        set(r.indicators) == {"green_rating", "carbon_intensity", "esg_score"}
        for r in with_indicators
    )


def test_names_read_like_the_subject_type(results: list[CreditResult]) -> None:
    for r in results:
        if r.subject_type is SubjectType.ENTERPRISE:
            assert r.subject_name.endswith("公司")
        elif r.subject_type is SubjectType.NATURAL_PERSON:
            assert 2 <= len(r.subject_name) <= 3


def test_another_city_uses_its_own_division() -> None:
    codes = {identifiers.uscc_division(r.subject.id)
             for r in generate_results("cn-320100", 200, 1, AS_OF)
             if r.subject.id_type is SubjectIdType.USCC}  # fmt: skip
    assert codes == {"320100"}  # the division table knows no Nanjing districts
    assert divisions.name_of("320100") == "南京市"


@pytest.mark.parametrize(
    ("city", "error"),
    [("330500", InvalidInput), ("cn-449900", InvalidIdentifier)],
    ids=["not-a-node-id", "unknown-division"],
)
def test_city_must_be_a_known_node(city: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        generate_results(city, 1, 0, AS_OF)


def test_cli_writes_the_same_file(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "export.json"
    args = [
        "gen-data",
        "--city",
        CITY,
        "--subjects",
        "50",
        "--seed",
        "9",
        "--as-of",
        AS_OF.isoformat(),
    ]
    result = CliRunner().invoke(main, [*args, "--format", "huzhou-json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == generate_export(CITY, 50, 9, AS_OF, "huzhou-json")


@pytest.mark.parametrize("as_of", [dt.date(2026, 12, 2), dt.date(2030, 6, 1), dt.date(2027, 1, 1)])
def test_every_result_is_current_on_its_as_of_date(as_of: dt.date) -> None:
    """issue 9 §1: generated data no longer expires with the calendar (a fixed evaluation
    window starting 2025-12-01 made results expire one by one from 2026-12-02 on)."""
    start_of_day = dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=CHINA_TZ)
    end_of_day = start_of_day + dt.timedelta(days=1)
    for r in generate_results(CITY, 2000, 5, as_of):
        assert r.evaluated_at < start_of_day
        assert r.valid_until >= end_of_day + dt.timedelta(days=VALIDITY_MARGIN_DAYS - 1)


def test_only_the_dates_move_with_as_of() -> None:
    """issue 9 §1: deterministic for a seed and as_of; another as_of shifts every date alike."""
    shift = dt.timedelta(days=400)
    earlier = generate_results(CITY, 300, 6, AS_OF)
    later = generate_results(CITY, 300, 6, AS_OF + shift)
    assert [r.subject for r in earlier] == [r.subject for r in later]
    assert [r.evaluated_at + shift for r in earlier] == [r.evaluated_at for r in later]
    assert generate_results(CITY, 300, 6, AS_OF) == earlier


def test_expired_results_only_when_asked() -> None:
    """issue 9 §1: a generated result is valid at as_of unless expired ones are asked for."""
    as_of_start = dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=CHINA_TZ)
    mixed = generate_results(CITY, 1000, 3, AS_OF, expired_share=0.25)
    expired = [r for r in mixed if r.valid_until <= as_of_start]
    assert 180 < len(expired) < 320
    with pytest.raises(InvalidInput):
        generate_results(CITY, 1, 0, AS_OF, expired_share=1.5)


def test_cli_default_as_of_is_today_in_china(tmp_path: pathlib.Path) -> None:
    """issue 9 §1: without --as-of the export is current today (China time), every time."""
    out = tmp_path / "export.csv"
    result = CliRunner().invoke(
        main, ["gen-data", "--city", CITY, "--subjects", "20", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    today = china_date(SYSTEM.now())
    assert f"current on {today.isoformat()}" in result.output or (
        f"current on {(today + dt.timedelta(days=1)).isoformat()}" in result.output
    )
    parsed = get_adapter("huzhou-csv").parse(out.read_bytes(), issuer_node=CITY)
    assert all(r.valid_until > SYSTEM.now() for r in parsed)
