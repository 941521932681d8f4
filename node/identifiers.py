"""Subject identifiers: the unified social credit code (USCC, GB 32100-2015) and the resident
identity number (GB 11643-1999). Pure functions: normalise, then validate; every failure says
exactly what is wrong and what was expected.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
from collections.abc import Set as AbstractSet

from node import divisions
from node.errors import InvalidIdentifier

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015: no I, O, Z, S, V
_USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARSET)}
# The same as bytes.translate table: a character of the set -> its value (others: 255).
_USCC_VALUE_BYTES = bytes(_USCC_VALUE.get(chr(b), 255) for b in range(256))
# Every rule but the check character, in one match: characters of the set, a numeric division.
_USCC_SHAPE = re.compile(r"[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}")
# GB 32100-2015 §4.2: weight of position i (1-based) is 3^(i-1) mod 31.
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
# GB 11643-1999: weight of position i is 2^(18-i) mod 11; check by ISO 7064 MOD 11-2.
_RESIDENT_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_RESIDENT_CHECK = "10X98765432"

_SPACES = {ord(" "): None, ord("\t"): None, ord("\u3000"): None}  # ASCII and full-width


def normalise(raw: str) -> str:
    """Upper-case and strip ASCII and full-width (U+3000) spaces anywhere in the value."""
    return raw.translate(_SPACES).upper()


def uscc_check_character(first17: str) -> str:
    """The check character for the first 17 characters of a USCC (GB 32100-2015 §4.2)."""
    if len(first17) != 17:
        raise ValueError("a USCC check character is computed over 17 characters")
    values = first17.encode("ascii").translate(_USCC_VALUE_BYTES)
    if 255 in values:
        raise ValueError("a USCC check character is computed over characters of the set")
    total = sum(map(operator.mul, values, _USCC_WEIGHTS))
    return USCC_CHARSET[(31 - total % 31) % 31]


def validate_uscc_shape(raw: str) -> str:
    """Return the normalised code if it has every property of a USCC except perhaps a right
    check character (the shape of a legacy register code, DESIGN.md §9); else raise
    InvalidIdentifier naming the problem without quoting more than one character or the
    division."""
    if _USCC_SHAPE.fullmatch(raw):  # as written, it has no space or lower-case letter
        return raw
    code = normalise(raw)
    if _USCC_SHAPE.fullmatch(code):
        return code
    if len(code) != 18:
        raise InvalidIdentifier(f"USCC must have 18 characters, got {len(code):,}")
    for position, char in enumerate(code, start=1):
        if char not in _USCC_VALUE:
            raise InvalidIdentifier(
                f"USCC character {position} is {char!r}, which GB 32100-2015 does not allow "
                f"(allowed: digits and {USCC_CHARSET[10:]}; never I, O, Z, S, V)"
            )
    raise InvalidIdentifier(
        f"USCC positions 3-8 must be a six-digit division code, got {code[2:8]!r}"
    )


def is_uscc_shape(raw: str) -> bool:
    """Whether validate_uscc_shape accepts `raw`."""
    return _USCC_SHAPE.fullmatch(normalise(raw)) is not None


def validate_uscc(
    raw: str, *, legacy_codes: AbstractSet[str] = frozenset(), admitted: bool = False
) -> str:
    """Return the normalised USCC or raise InvalidIdentifier naming the problem.

    A wrong check character passes only for a known legacy register code (DESIGN.md §9): one
    in `legacy_codes` (the node's list, node.legacy_uscc), or one `admitted` already by
    whoever vouches for it (our store, the issuer that signed it). Every other rule holds.
    """
    code = validate_uscc_shape(raw)
    expected = uscc_check_character(code[:17])
    if code[17] != expected and not admitted and code not in legacy_codes:
        raise InvalidIdentifier(f"USCC check character should be {expected}, got {code[17]}")
    return code


def make_uscc(first17: str) -> str:
    """Append the check character; used to generate valid codes."""
    return first17 + uscc_check_character(first17)


def uscc_division(code: str) -> str:
    """The GB/T 2260 division code in positions 3-8 of a (valid) USCC."""
    return code[2:8]


def resident_check_character(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _RESIDENT_WEIGHTS, strict=True))
    return _RESIDENT_CHECK[total % 11]


def validate_resident_id(raw: str) -> str:
    """Return the normalised 18-character resident id or raise InvalidIdentifier."""
    code = normalise(raw)
    if len(code) != 18:
        raise InvalidIdentifier(f"resident id must have 18 characters, got {len(code)}")
    if not code[:17].isdigit() or not code[:17].isascii():
        bad = next(i for i, c in enumerate(code[:17], start=1) if not ("0" <= c <= "9"))
        raise InvalidIdentifier(
            f"resident id character {bad} must be a digit, got {code[bad - 1]!r}"
        )
    if not (code[17].isdigit() or code[17] == "X"):
        raise InvalidIdentifier(
            f"resident id check character must be a digit or X, got {code[17]!r}"
        )
    if not divisions.is_plausible_division(code[:6]):
        raise InvalidIdentifier(f"resident id starts with {code[:6]}, not a division code")
    birth = code[6:14]
    if not _is_date(birth):
        raise InvalidIdentifier("resident id positions 7-14 are not a valid birth date")
    expected = resident_check_character(code[:17])
    if code[17] != expected:
        raise InvalidIdentifier(f"resident id check character should be {expected}, got {code[17]}")
    return code


def make_resident_id(first17: str) -> str:
    return first17 + resident_check_character(first17)


def mask_resident_id(code: str) -> str:
    """A resident id as a message may show it: the first 6 (the division) and last 4
    characters, the birth date and sequence between them as `*`: 330500********0387.
    A value too short to keep both ends is masked whole."""
    hidden = len(code) - 10
    if hidden <= 0:
        return "*" * len(code)
    return code[:6] + "*" * hidden + code[-4:]


def normalise_subject_id(
    id_type: str,
    raw: str,
    *,
    legacy_codes: AbstractSet[str] = frozenset(),
    admitted: bool = False,
) -> str:
    """Validate an identifier of the named SubjectIdType ("USCC" or "RESIDENT_ID");
    `legacy_codes` and `admitted` as for validate_uscc."""
    if legacy_codes and not admitted and id_type == "USCC":
        # Listed or not, the code must still have the USCC shape: only the check is waived.
        admitted = normalise(raw) in legacy_codes
    return _normalise_subject_id(id_type, raw, admitted)


@functools.lru_cache(maxsize=1 << 16)
def _normalise_subject_id(id_type: str, raw: str, admitted: bool) -> str:
    """Pure, so remembered for the most recent identifiers (a refusal raises and is not kept):
    the same companies are asked about again and again."""
    if id_type == "USCC":
        return validate_uscc(raw, admitted=admitted)
    if id_type == "RESIDENT_ID":
        return validate_resident_id(raw)
    raise InvalidIdentifier(f"unknown subject id type {id_type!r}; use USCC or RESIDENT_ID")


def _is_date(yyyymmdd: str) -> bool:
    try:
        dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return int(yyyymmdd[:4]) >= 1900
