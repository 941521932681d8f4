"""USCC (GB 32100-2015) and resident id (GB 11643-1999) validation and normalisation."""

from __future__ import annotations

import pytest

from node import divisions, identifiers
from node.errors import InvalidIdentifier

# Published codes from real registers (public notices), with their check characters.
REAL_USCCS = ["91350100M000100Y43", "91110000600037341L"]


@pytest.mark.parametrize("code", REAL_USCCS)
def test_real_uscc_validates(code: str) -> None:
    assert identifiers.validate_uscc(code) == code


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("91350100m000100y43", "91350100M000100Y43"),
        (" 91350100M000100Y43 ", "91350100M000100Y43"),
        ("\u300091350100 M000100Y43\u3000", "91350100M000100Y43"),
        ("\t91350100M000100Y43", "91350100M000100Y43"),
    ],
)
def test_uscc_is_normalised(raw: str, expected: str) -> None:
    assert identifiers.validate_uscc(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("91350100M000100Y4", "must have 18 characters, got 17"),
        ("91350100M000100Y433", "must have 18 characters, got 19"),
        ("91350100M000100Y44", "check character should be 3, got 4"),
        ("91350100I000100Y43", "character 9 is 'I'"),
        ("91350100O000100Y43", "character 9 is 'O'"),
        ("9135010ZM000100Y43", "character 8 is 'Z'"),
        ("91350100S000100Y43", "character 9 is 'S'"),
        ("91350100V000100Y43", "character 9 is 'V'"),
        ("913501A0M000100Y43", "positions 3-8 must be a six-digit division code"),
    ],
)
def test_bad_uscc_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message):
        identifiers.validate_uscc(raw)


def test_legacy_uscc_with_bad_check_only_when_listed_or_admitted() -> None:
    """issue 9 §6: a wrong check character passes for a listed legacy code, not for another."""
    bad = "91350100M000100Y44"
    with pytest.raises(InvalidIdentifier):
        identifiers.validate_uscc(bad)
    with pytest.raises(InvalidIdentifier, match="check character"):
        identifiers.validate_uscc(bad, legacy_codes={"91350100M000100Y45"})
    assert identifiers.validate_uscc(bad.lower(), legacy_codes={bad}) == bad
    assert identifiers.validate_uscc(bad, admitted=True) == bad
    # Every other rule still holds for a legacy code.
    with pytest.raises(InvalidIdentifier, match="'I'"):
        identifiers.validate_uscc("91350100I000100Y44", admitted=True)
    with pytest.raises(InvalidIdentifier, match="'I'"):
        identifiers.validate_uscc("91350100I000100Y44", legacy_codes={"91350100I000100Y44"})


def test_make_uscc_round_trips_every_check_value() -> None:
    seen = set()
    for n in range(2000):
        body = f"91330500MA{n:07d}"
        code = identifiers.make_uscc(body)
        assert identifiers.validate_uscc(code) == code
        assert identifiers.uscc_division(code) == "330500"
        seen.add(code[-1])
    assert len(seen) == 31  # every character of the charset occurs as a check character


@pytest.mark.parametrize(
    "code", ["11010519491231002X", identifiers.make_resident_id("33050219900307123")]
)
def test_resident_id_validates(code: str) -> None:
    assert identifiers.validate_resident_id(code.lower()) == code


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("110105194912310021", "check character should be X, got 1"),
        ("11010519491231002", "must have 18 characters, got 17"),
        ("1101051949123100AX", "character 17 must be a digit"),
        ("110105194913310020", "positions 7-14 are not a valid birth date"),
        ("990105194912310020", "not a division code"),
    ],
)
def test_bad_resident_id_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message) as info:
        identifiers.validate_resident_id(raw)
    assert raw[6:14] not in str(info.value)  # issue 9 §6: never a birth date in a message


def test_an_overlong_uscc_is_not_echoed() -> None:
    """issue 9 §2: a 3.9 MiB USCC was echoed whole in the refusal."""
    with pytest.raises(InvalidIdentifier) as info:
        identifiers.validate_uscc("9" * 100_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    "code",
    [
        "310000",
        "320100",
        "320500",
        "330100",
        "330500",
        "340100",
        "330400",
        "330600",
        "330800",
        "341000",
        "330700",
        "330300",
        "330200",
        "330900",
        "331000",
    ],
)
def test_every_city_of_the_first_deployment_is_in_the_division_table(code: str) -> None:
    assert divisions.name_of(code)
    assert divisions.node_id_for(code) == f"cn-{code}"


def test_unknown_division_is_refused() -> None:
    with pytest.raises(InvalidIdentifier, match="999999 is not in the GB/T 2260 table"):
        divisions.name_of("999999")


def test_unknown_id_type_is_refused() -> None:
    with pytest.raises(InvalidIdentifier, match="unknown subject id type"):
        identifiers.normalise_subject_id("PASSPORT", "E12345678")


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("330500199001010387", "330500********0387"),  # the birth date and sequence hidden
        ("33052219850314203X", "330522********203X"),
        ("33050019900101", "330500****0101"),  # a short value keeps the same two ends
        ("3305001990", "**********"),  # too short to show both ends: masked whole
        ("", ""),
    ],
)
def test_mask_resident_id_keeps_first_six_and_last_four(code: str, shown: str) -> None:
    """issue 9 §6: the one mask every message uses for a resident id."""
    assert identifiers.mask_resident_id(code) == shown
