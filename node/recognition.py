"""Mutual recognition on the asking side (floor 3, DESIGN.md §1.2, §8): a peer's verified result
read on this node's local scheme through the zone's crosswalk (adapters.crosswalks.recognise).

Pure: handed the schemes, crosswalks and node.toml's document, it decides and returns values.
It never guesses: an unknown scheme or level, a zone without a crosswalk from the peer's scheme
to ours, or a node without one local scheme comes back as NotRecognised with the reason.

The local scheme is `[recognition] scheme` in node.toml when given; otherwise the scheme this
node issues (GetNodeInfo.schemes) for the widest region, its province's (docs/adr/0012).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from adapters.crosswalks import (
    ARROW,
    Crosswalk,
    CrosswalkRegistry,
    NotRecognised,
    RecognisedView,
    builtin_crosswalks,
    recognise,
)
from adapters.schemes import Scheme, builtin_schemes
from node import model
from node.errors import ConfigError

TABLE = "recognition"  # node.toml's table
NOT_RECOGNISED = "not recognised"  # how a person reads a NotRecognised: "not recognised: why"
# How much of a peer's scheme id a reason quotes: enough to find it, never a huge string.
_QUOTED_CHARS = 40

__all__ = ["NOT_RECOGNISED", "NotRecognised", "RecognisedView", "Recognition"]


def _region_width(scheme: Scheme) -> int:
    """How many trailing zero pairs the scheme's region has: 2 a province, 1 a city, 0 a county."""
    region = scheme.region or ""
    width = 0
    while region.endswith("00"):
        region, width = region[:-2], width + 1
    return width


def choose_local_scheme(
    division_code: str, configured: str | None, schemes: Mapping[str, Scheme]
) -> tuple[str | None, str]:
    """(the local scheme, "") or (None, why there is none).

    `configured` (node.toml's `[recognition] scheme`) wins and must name a known scheme
    (ConfigError otherwise). Else: of the schemes a node of `division_code` issues, the one of
    the widest region (Huzhou issues zj-public-credit@2023 of 330000 and its own
    hz-enterprise-credit@2021 of 330500: the province's), when exactly one is that wide.
    """
    if configured is not None:
        if configured not in schemes:
            raise ConfigError(
                f"[{TABLE}] scheme names unknown scheme {configured!r}; "
                f"known schemes: {', '.join(sorted(schemes))}"
            )
        return configured, ""
    issued = [s for s in schemes.values() if s.issued_in(division_code)]
    if not issued:
        return None, (
            f"this node (division {division_code}) issues no scheme to recognise results onto; "
            f"set [{TABLE}] scheme in node.toml"
        )
    widest = max(_region_width(s) for s in issued)
    candidates = sorted(s.id for s in issued if _region_width(s) == widest)
    if len(candidates) > 1:
        return None, (
            f"this node issues {', '.join(candidates)}; set [{TABLE}] scheme in node.toml to "
            "the one to recognise results onto"
        )
    return candidates[0], ""


@dataclasses.dataclass(frozen=True, slots=True)
class Recognition:
    """This node's recognition: its local scheme (or why it has none) and the crosswalks."""

    local_scheme: str | None
    undecided: str  # why local_scheme is None
    schemes: Mapping[str, Scheme]
    crosswalks: CrosswalkRegistry

    @classmethod
    def for_node(
        cls,
        division_code: str,
        document: Mapping[str, Any],
        source: str = "node.toml",
        *,
        schemes: Mapping[str, Scheme] | None = None,
        crosswalks: CrosswalkRegistry | None = None,
    ) -> Recognition:
        """From node.toml's parsed `document` (its `[recognition]` table, optional) and the
        shipped schemes and crosswalks unless given."""
        table = document.get(TABLE, {})
        if not isinstance(table, Mapping) or set(table) - {"scheme"}:
            raise ConfigError(f"{source}: [{TABLE}] takes one key, scheme (a scheme id)")
        configured = table.get("scheme")
        if configured is not None and not isinstance(configured, str):
            raise ConfigError(f"{source}: [{TABLE}] scheme must be a scheme id string")
        known = builtin_schemes() if schemes is None else schemes
        try:
            local, undecided = choose_local_scheme(division_code, configured, known)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc.message}") from None
        registry = builtin_crosswalks() if crosswalks is None else crosswalks
        return cls(local, undecided, known, registry)

    def recognise(self, result: model.CreditResult, zone: str) -> RecognisedView | NotRecognised:
        """`result` (verified, issued under `zone`) on the local scheme, through the newest
        crosswalk of `zone` from its scheme; never a guess."""
        if self.local_scheme is None:
            return NotRecognised(self.undecided)
        source = self.schemes.get(result.scheme)
        if source is None:
            return NotRecognised(f"unknown scheme {_quoted(result.scheme)}")
        if source.id == self.local_scheme:
            return _same_scheme(source, result)
        crosswalk = self.crosswalks.find(zone, source.id, self.local_scheme)
        if crosswalk is None:
            return NotRecognised(f"no crosswalk {source.id} {ARROW} {self.local_scheme} in {zone}")
        return _through(crosswalk, result)

    def again(
        self, result: model.CreditResult, stored: RecognisedView
    ) -> RecognisedView | NotRecognised:
        """`result` recognised again exactly as `stored` was: through the same crosswalk
        version (or, for a result under the stored scheme itself, without one), whatever
        the local scheme and newest crosswalks are today."""
        if not stored.crosswalk:
            scheme = self.schemes.get(stored.scheme)
            if scheme is None or scheme.id != result.scheme:
                return NotRecognised(f"unknown scheme {_quoted(result.scheme)}")
            return _same_scheme(scheme, result)
        crosswalk = self.crosswalks.version(stored.crosswalk)
        if crosswalk is None:
            return NotRecognised(f"crosswalk {_quoted(stored.crosswalk)} is not held here")
        return _through(crosswalk, result)


def _through(crosswalk: Crosswalk, result: model.CreditResult) -> RecognisedView | NotRecognised:
    return recognise(
        crosswalk,
        scheme=result.scheme,
        native_level=result.native_level,
        native_score=result.native_score,
        flags=result.flags,
    )


def _same_scheme(scheme: Scheme, result: model.CreditResult) -> RecognisedView | NotRecognised:
    """A result under our own scheme needs no table: its level (or its score's band) as it is,
    every flag kept; `crosswalk` is empty."""
    if result.native_level:
        level = scheme.level_named(result.native_level)
        if level is None:
            return NotRecognised(
                f"unknown level {_quoted(result.native_level)} of scheme {scheme.id}"
            )
    elif result.native_score is not None and math.isfinite(result.native_score):
        level = scheme.level_for_score(result.native_score)
        if level is None or not scheme.score_in_range(result.native_score):
            return NotRecognised(f"score {result.native_score:g} has no band in {scheme.id}")
    else:
        return NotRecognised("result names neither a level nor a score")
    flags = tuple(dict.fromkeys(result.flags))
    return RecognisedView(scheme.id, level.name, level.canonical, flags, "")


def _quoted(raw: str) -> str:
    if len(raw) <= _QUOTED_CHARS:
        return repr(raw)
    return f"{raw[:_QUOTED_CHARS]!r}... ({len(raw):,} characters)"
