"""Regional evaluation schemes as configuration: level names, aliases, score bands, validity.

Each `<scheme id>.toml` in this package is one scheme version; `parse_scheme` checks a table once
and returns a frozen `Scheme`, so adapters look levels up without re-validating. A scheme names
the region whose nodes issue it (GB/T 2260; none for the national reference scale) and whether
its table is an illustrative default or confirmed with that region.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import re
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from node.errors import ConfigError
from node.model import CreditLevel

PROVENANCES = ("illustrative", "confirmed")
_REGION_RE = re.compile(r"^[1-8]\d{5}\Z")


@dataclasses.dataclass(frozen=True, slots=True)
class SchemeLevel:
    name: str  # the scheme's own spelling, stored as CreditResult.native_level
    canonical: CreditLevel
    aliases: tuple[str, ...] = ()
    min_score: float | None = None  # lowest score of the band, inclusive


@dataclasses.dataclass(frozen=True, slots=True)
class Scheme:
    """One scheme version. Levels are ordered best first; bands, when given, descend."""

    id: str
    title: str
    validity_days: int
    levels: tuple[SchemeLevel, ...]
    score_min: float | None = None
    score_max: float | None = None
    region: str | None = None  # GB/T 2260 code of the issuing region; None: national
    provenance: str = "illustrative"  # or "confirmed" with the region (PROVENANCES)
    confirm_with: str = ""  # who confirms the table
    _by_spelling: Mapping[str, SchemeLevel] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        by_spelling: dict[str, SchemeLevel] = {}
        for level in self.levels:
            for spelling in (level.name, *level.aliases):
                key = spelling.strip().casefold()
                if key in by_spelling:
                    raise ConfigError(
                        f"scheme {self.id}: level spelling {spelling!r} is used twice"
                    )
                by_spelling[key] = level
        object.__setattr__(self, "_by_spelling", MappingProxyType(by_spelling))

    @property
    def spellings(self) -> tuple[str, ...]:
        return tuple(s for level in self.levels for s in (level.name, *level.aliases))

    @property
    def has_bands(self) -> bool:
        return all(level.min_score is not None for level in self.levels)

    def level_named(self, spelling: str) -> SchemeLevel | None:
        """The level for a name or alias (case-insensitive), or None."""
        return self._by_spelling.get(spelling.strip().casefold())

    def score_in_range(self, score: float) -> bool:
        low = -math.inf if self.score_min is None else self.score_min
        high = math.inf if self.score_max is None else self.score_max
        return low <= score <= high

    def level_for_score(self, score: float) -> SchemeLevel | None:
        """The band holding `score` (bands descend, so the first whose floor it reaches)."""
        for level in self.levels:
            if level.min_score is not None and score >= level.min_score:
                return level
        return None

    def issued_in(self, division_code: str) -> bool:
        """Whether a node of `division_code` issues this scheme: the scheme's region is that
        division or holds it (330000 Zhejiang holds 330500 Huzhou)."""
        if self.region is None:
            return False
        prefix = self.region
        while prefix.endswith("00"):
            prefix = prefix[:-2]
        return division_code.startswith(prefix)


def issued_schemes(division_code: str, schemes: Mapping[str, Scheme] | None = None) -> list[str]:
    """The ids of the schemes a node of `division_code` issues results under, sorted: those of
    its province, city and county among `schemes` (the shipped tables by default)."""
    table = builtin_schemes() if schemes is None else schemes
    return sorted(scheme.id for scheme in table.values() if scheme.issued_in(division_code))


def parse_scheme(text: str, source: str) -> Scheme:
    """Check one scheme table (TOML text) and build it; `source` names it in errors."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scheme file {source} is not valid TOML: {exc}") from None
    scheme_id = _string(table, "id", source)
    if "@" not in scheme_id:
        raise ConfigError(f"scheme file {source}: id {scheme_id!r} must name a version (x@2023)")
    validity = table.get("validity_days")
    if not isinstance(validity, int) or validity < 1:
        raise ConfigError(f"scheme file {source}: validity_days must be a positive integer")
    raw_levels = table.get("levels")
    if not isinstance(raw_levels, list) or not raw_levels:
        raise ConfigError(f"scheme file {source}: needs at least one [[levels]] table")
    levels = tuple(_level(raw, source) for raw in raw_levels)
    floors = [level.min_score for level in levels if level.min_score is not None]
    if floors:
        if len(floors) != len(levels):
            raise ConfigError(f"scheme file {source}: give min_score for every level or none")
        if floors != sorted(floors, reverse=True) or len(set(floors)) != len(floors):
            raise ConfigError(f"scheme file {source}: levels go best first, min_score descending")
    region = table.get("region")
    if region is not None and not (isinstance(region, str) and _REGION_RE.match(region)):
        raise ConfigError(f"scheme file {source}: region must be a GB/T 2260 code like 330000")
    provenance = table.get("provenance")
    if provenance not in PROVENANCES:
        raise ConfigError(
            f"scheme file {source}: provenance must be one of {', '.join(PROVENANCES)}"
        )
    return Scheme(
        id=scheme_id,
        title=str(table.get("title", scheme_id)),
        validity_days=validity,
        levels=levels,
        score_min=_number(table, "score_min", source),
        score_max=_number(table, "score_max", source),
        region=region,
        provenance=provenance,
        confirm_with=str(table.get("confirm_with", "")),
    )


@functools.cache
def builtin_schemes() -> Mapping[str, Scheme]:
    """The scheme tables shipped in this package, by id (file name must be `<id>.toml`)."""
    schemes: dict[str, Scheme] = {}
    for entry in importlib.resources.files(__name__).iterdir():
        if not entry.name.endswith(".toml"):
            continue
        scheme = parse_scheme(entry.read_text(encoding="utf-8"), entry.name)
        if entry.name != f"{scheme.id}.toml":
            raise ConfigError(f"scheme file {entry.name} must be named {scheme.id}.toml")
        schemes[scheme.id] = scheme
    return MappingProxyType(schemes)


def _level(raw: Any, source: str) -> SchemeLevel:
    if not isinstance(raw, dict):
        raise ConfigError(f"scheme file {source}: each [[levels]] entry must be a table")
    name = _string(raw, "name", source)
    canonical = _string(raw, "canonical", source)
    try:
        level = CreditLevel[canonical]
    except KeyError:
        raise ConfigError(
            f"scheme file {source}: level {name} maps to {canonical!r}; use one of A, B, C, D"
        ) from None
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ConfigError(f"scheme file {source}: aliases of level {name} must be strings")
    return SchemeLevel(name, level, tuple(aliases), _number(raw, "min_score", source))


def _string(table: dict[str, Any], key: str, source: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"scheme file {source}: {key} must be a non-empty string")
    return value.strip()


def _number(table: dict[str, Any], key: str, source: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"scheme file {source}: {key} must be a number")
    return float(value)
