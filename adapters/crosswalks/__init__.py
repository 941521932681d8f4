"""Crosswalks as configuration: how a peer scheme's results read on a local scheme, per zone.

Each `<zone>/<from scheme>→<to scheme>@<version>.toml` in this package is one agreed table
(DESIGN.md §8): every level of the source scheme onto a level of the target scheme, score bands
for a result that names no level, and what happens to flags. `parse_crosswalk` refuses a table
that leaves a source level (or a score of the source range) unmapped; `recognise` is the pure
mapping of one peer result through a crosswalk, and never guesses: a scheme or level the table
does not name is reported as not recognised.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any

from adapters.schemes import PROVENANCES, Scheme, builtin_schemes
from node.errors import ConfigError
from node.model import CreditLevel

ARROW = "→"
_ZONE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")  # a zone id as on the wire (DESIGN.md §1)
_FLAG_RE = re.compile(r"^[A-Z][A-Z0-9_]*\Z")
FLAG_RULES = ("keep", "drop")
# How much of a peer's level name a reason quotes: enough to find it, never a huge string.
_QUOTED_CHARS = 40


@dataclasses.dataclass(frozen=True, slots=True)
class ScoreBand:
    """Scores from `min_score` (inclusive) up to the next band's floor read as `level`."""

    min_score: float
    level: str  # a level name of the target scheme


@dataclasses.dataclass(frozen=True, slots=True)
class Crosswalk:
    """One agreed table `<zone>/<from>→<to>@<version>`. Built by `parse_crosswalk`, which
    checks it against both schemes once."""

    zone: str
    source: Scheme
    target: Scheme
    version: int
    levels: Mapping[str, str]  # source level name -> target level name, every source level
    bands: tuple[ScoreBand, ...]  # descending; empty: a result without a level is not mapped
    keep_unlisted_flags: bool
    dropped_flags: frozenset[str]
    flag_caps: Mapping[str, str]  # flag -> the best target level a subject with it may have
    provenance: str = "illustrative"
    agreed_by: str = ""

    @property
    def name(self) -> str:
        """`yrd/sh-public-credit@2022→zj-public-credit@2023`: the table, any version."""
        return f"{self.zone}/{self.source.id}{ARROW}{self.target.id}"

    @property
    def id(self) -> str:
        """`yrd/sh-public-credit@2022→zj-public-credit@2023@1`: this version of the table."""
        return f"{self.name}@{self.version}"


@dataclasses.dataclass(frozen=True, slots=True)
class RecognisedView:
    """A peer's result read on the local scheme; the peer's own envelope stays beside it."""

    scheme: str  # the local scheme (the crosswalk's target)
    native_level: str  # the level in the local scheme
    level: CreditLevel  # its canonical national level
    flags: tuple[str, ...]  # the peer's flags the crosswalk keeps, in the peer's order
    crosswalk: str  # the crosswalk's id@version


@dataclasses.dataclass(frozen=True, slots=True)
class NotRecognised:
    """Why a peer's result has no recognised view (shown as such, never mapped by guess)."""

    reason: str


def recognise(
    crosswalk: Crosswalk,
    *,
    scheme: str,
    native_level: str,
    native_score: float | None,
    flags: Sequence[str],
) -> RecognisedView | NotRecognised:
    """A peer result (its scheme, level in that scheme, score, flags) through `crosswalk`.

    1. The result must be under the crosswalk's source scheme.
    2. Its level (a name or alias of that scheme) maps through the table; a result that names
       no level is placed by score in the crosswalk's bands.
    3. A flag with a cap lowers the level to the cap when the cap is worse.
    4. Flags the crosswalk drops are left out; the rest keep the peer's order.
    """
    source, target = crosswalk.source, crosswalk.target
    if scheme != source.id:  # 1
        return NotRecognised(
            f"result is under scheme {_quoted(scheme)}, crosswalk {crosswalk.id} maps {source.id}"
        )
    if native_level:  # 2
        level = source.level_named(native_level)
        if level is None:
            return NotRecognised(
                f"unknown level {_quoted(native_level)} of scheme {source.id} "
                f"(known: {', '.join(lv.name for lv in source.levels)})"
            )
        mapped = crosswalk.levels[level.name]
    elif native_score is not None and math.isfinite(native_score):
        if not source.score_in_range(native_score):
            return NotRecognised(f"score {native_score:g} is outside {source.id}'s score range")
        band = next((b for b in crosswalk.bands if native_score >= b.min_score), None)
        if band is None:
            return NotRecognised(f"crosswalk {crosswalk.id} has no band for score {native_score:g}")
        mapped = band.level
    else:
        return NotRecognised("result names neither a level nor a score")
    rank = _ranks(target)
    for flag in flags:  # 3
        cap = crosswalk.flag_caps.get(flag)
        if cap is not None and rank[cap] > rank[mapped]:
            mapped = cap
    kept = tuple(  # 4
        flag
        for flag in dict.fromkeys(flags)
        if flag not in crosswalk.dropped_flags
        and (crosswalk.keep_unlisted_flags or flag in crosswalk.flag_caps)
    )
    mapped_level = target.level_named(mapped)
    assert mapped_level is not None  # parse_crosswalk checked every target name
    return RecognisedView(target.id, mapped_level.name, mapped_level.canonical, kept, crosswalk.id)


class CrosswalkRegistry:
    """Crosswalks by zone and schemes, every version; the newest version is the one in use."""

    def __init__(self, crosswalks: Iterable[Crosswalk]) -> None:
        by_name: dict[str, dict[int, Crosswalk]] = {}
        for crosswalk in crosswalks:
            versions = by_name.setdefault(crosswalk.name, {})
            if crosswalk.version in versions:
                raise ConfigError(f"crosswalk {crosswalk.id} is given twice")
            versions[crosswalk.version] = crosswalk
        self._by_name = {
            name: tuple(versions[v] for v in sorted(versions)) for name, versions in by_name.items()
        }

    def all(self) -> list[Crosswalk]:
        """Every crosswalk, every version, by id."""
        return sorted((c for vs in self._by_name.values() for c in vs), key=lambda c: c.id)

    def find(self, zone: str, source: str, target: str) -> Crosswalk | None:
        """The newest crosswalk of `zone` from scheme `source` to scheme `target`, or None."""
        versions = self._by_name.get(f"{zone}/{source}{ARROW}{target}")
        return versions[-1] if versions else None

    def version(self, crosswalk_id: str) -> Crosswalk | None:
        """The crosswalk with exactly this id@version (to read an old recognition again)."""
        name, _, version = crosswalk_id.rpartition("@")
        return next((c for c in self._by_name.get(name, ()) if str(c.version) == version), None)


def parse_crosswalk(text: str, source: str, schemes: Mapping[str, Scheme]) -> Crosswalk:
    """Check one crosswalk table (TOML text) against `schemes`; `source` names it in errors.

    Refused (ConfigError): a table that leaves a level of its source scheme unmapped, maps to a
    level its target scheme does not have, or whose bands miss part of the source score range.
    """
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"crosswalk file {source} is not valid TOML: {exc}") from None
    where = f"crosswalk file {source}"
    zone = _string(table, "zone", where)
    if not _ZONE_RE.match(zone):
        raise ConfigError(f"{where}: zone must be a lower-case slug like yrd")
    source_scheme = _scheme(table, "from", schemes, where)
    target = _scheme(table, "to", schemes, where)
    if source_scheme.id == target.id:
        raise ConfigError(f"{where}: maps {source_scheme.id} onto itself; that needs no crosswalk")
    version = table.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{where}: version must be a positive integer")
    where = f"crosswalk {zone}/{source_scheme.id}{ARROW}{target.id}@{version} ({source})"
    provenance = table.get("provenance")
    if provenance not in PROVENANCES:
        raise ConfigError(f"{where}: provenance must be one of {', '.join(PROVENANCES)}")
    levels = _levels(table.get("levels"), source_scheme, target, where)
    bands = _bands(table.get("bands", []), source_scheme, target, where)
    keep, dropped, caps = _flag_rules(table.get("flags", {}), target, where)
    return Crosswalk(
        zone=zone,
        source=source_scheme,
        target=target,
        version=version,
        levels=MappingProxyType(levels),
        bands=bands,
        keep_unlisted_flags=keep,
        dropped_flags=dropped,
        flag_caps=MappingProxyType(caps),
        provenance=str(provenance),
        agreed_by=str(table.get("agreed_by", "")),
    )


def load_crosswalks(root: Traversable, schemes: Mapping[str, Scheme]) -> CrosswalkRegistry:
    """Every `<zone>/<id>.toml` under `root`; a file's path must spell its id."""
    crosswalks = []
    for zone_dir in sorted(root.iterdir(), key=lambda e: e.name):
        if not zone_dir.is_dir() or zone_dir.name.startswith(("_", ".")):
            continue
        for entry in sorted(zone_dir.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".toml"):
                continue
            path = f"{zone_dir.name}/{entry.name}"
            crosswalk = parse_crosswalk(entry.read_text(encoding="utf-8"), path, schemes)
            if path != f"{crosswalk.id}.toml":
                raise ConfigError(f"crosswalk file {path} must be named {crosswalk.id}.toml")
            crosswalks.append(crosswalk)
    return CrosswalkRegistry(crosswalks)


@functools.cache
def builtin_crosswalks() -> CrosswalkRegistry:
    """The crosswalks shipped in this package, checked against the shipped schemes."""
    return load_crosswalks(importlib.resources.files(__name__), builtin_schemes())


# --- checking a table -----------------------------------------------------------------------


def _levels(raw: Any, source: Scheme, target: Scheme, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: needs a [levels] table mapping {source.id}'s levels")
    levels: dict[str, str] = {}
    for name, to in raw.items():
        level = source.level_named(name)
        if level is None or level.name != name:
            raise ConfigError(
                f"{where}: [levels] names {name!r}, which is no level of {source.id} "
                f"(its levels: {', '.join(lv.name for lv in source.levels)})"
            )
        levels[name] = _target_level(to, target, where, f"level {name}")
    missing = [lv.name for lv in source.levels if lv.name not in levels]
    if missing:
        raise ConfigError(
            f"{where} does not cover every level of {source.id}: {', '.join(missing)} "
            "unmapped; a crosswalk maps each level of its source scheme"
        )
    return levels


def _bands(raw: Any, source: Scheme, target: Scheme, where: str) -> tuple[ScoreBand, ...]:
    if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
        raise ConfigError(f"{where}: bands must be [[bands]] tables")
    bands = []
    for entry in raw:
        floor = entry.get("min_score")
        if isinstance(floor, bool) or not isinstance(floor, int | float):
            raise ConfigError(f"{where}: each band needs a numeric min_score")
        bands.append(
            ScoreBand(float(floor), _target_level(entry.get("level"), target, where, "a band"))
        )
    floors = [b.min_score for b in bands]
    if floors != sorted(floors, reverse=True) or len(set(floors)) != len(floors):
        raise ConfigError(f"{where}: bands go best first, min_score descending")
    if bands and source.score_min is not None and bands[-1].min_score > source.score_min:
        raise ConfigError(
            f"{where}: bands do not cover {source.id}'s scores from {source.score_min:g}; "
            f"the lowest band starts at {bands[-1].min_score:g}"
        )
    return tuple(bands)


def _flag_rules(
    raw: Any, target: Scheme, where: str
) -> tuple[bool, frozenset[str], dict[str, str]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [flags] must be a table")
    unlisted = raw.get("unlisted", "keep")
    if unlisted not in FLAG_RULES:
        raise ConfigError(f"{where}: flags.unlisted must be one of {', '.join(FLAG_RULES)}")
    dropped = raw.get("drop", [])
    if not isinstance(dropped, list) or not all(
        isinstance(f, str) and _FLAG_RE.match(f) for f in dropped
    ):
        raise ConfigError(f"{where}: flags.drop must list UPPER_SNAKE flag names")
    caps_raw = raw.get("cap", {})
    if not isinstance(caps_raw, dict):
        raise ConfigError(f"{where}: flags.cap must map flags to levels of {target.id}")
    caps = {}
    for flag, level in caps_raw.items():
        if not _FLAG_RE.match(flag):
            raise ConfigError(f"{where}: flags.cap names {flag!r}, not an UPPER_SNAKE flag")
        if flag in dropped:
            raise ConfigError(f"{where}: flag {flag} is both dropped and a cap")
        caps[flag] = _target_level(level, target, where, f"the cap of {flag}")
    return unlisted == "keep", frozenset(dropped), caps


def _target_level(raw: Any, target: Scheme, where: str, what: str) -> str:
    level = target.level_named(raw) if isinstance(raw, str) else None
    if level is None or level.name != raw:
        raise ConfigError(
            f"{where}: {what} maps to {raw!r}, which is no level of {target.id} "
            f"(its levels: {', '.join(lv.name for lv in target.levels)})"
        )
    return level.name


def _scheme(table: dict[str, Any], key: str, schemes: Mapping[str, Scheme], where: str) -> Scheme:
    scheme_id = _string(table, key, where)
    scheme = schemes.get(scheme_id)
    if scheme is None:
        raise ConfigError(f"{where}: {key} names unknown scheme {scheme_id!r}")
    return scheme


def _string(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()


@functools.cache
def _ranks_cached(levels: tuple[str, ...]) -> Mapping[str, int]:
    return MappingProxyType({name: rank for rank, name in enumerate(levels)})


def _ranks(scheme: Scheme) -> Mapping[str, int]:
    """A level name's rank in `scheme`, 0 the best."""
    return _ranks_cached(tuple(level.name for level in scheme.levels))


def _quoted(raw: str) -> str:
    if len(raw) <= _QUOTED_CHARS:
        return repr(raw)
    return f"{raw[:_QUOTED_CHARS]!r}... ({len(raw):,} characters)"
