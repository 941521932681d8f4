"""A penalty's class (minor / general / serious) from its 双公示 fields: a rule kept as data
(`penalty-classes.toml`) and applied by one pure function, `classify`.

The class decides the publicity periods of NDRC Order No. 36 (node.repair) and the flag a
record in force adds. An explicit class in the row wins; otherwise the heaviest category of
CF_CFLB, moved down to minor for a low fine alone and up to serious for a large fine.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import importlib.resources
import re
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from node.errors import ConfigError
from node.repair import Severity

_NAMES: Mapping[str, Severity] = {
    "minor": Severity.MINOR,
    "general": Severity.GENERAL,
    "serious": Severity.SERIOUS,
}
# How a row may spell its explicit class.
EXPLICIT: Mapping[str, Severity] = MappingProxyType(
    {
        **{name.upper(): severity for name, severity in _NAMES.items()},
        "轻微": Severity.MINOR,
        "一般": Severity.GENERAL,
        "严重": Severity.SERIOUS,
    }
)
_SEPARATORS = re.compile(r"[;；,，、|/]")
_QUOTED = 40


class ClassProblem(ValueError):
    """Why a row's class cannot be told, and which field is at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class ClassRule:
    categories: Mapping[str, Severity]
    fine_category: str
    minor_fine_below: decimal.Decimal  # 万元
    serious_fine_from: decimal.Decimal  # 万元
    provenance: str = "illustrative"
    confirm_with: str = ""


def classify(
    rule: ClassRule,
    explicit: str,
    categories: str,
    fine: decimal.Decimal | None,
    known: dict[str, tuple[Severity, bool] | ClassProblem] | None = None,
) -> Severity:
    """The class of a penalty row: `explicit` (CF_YZCD, may be empty), `categories` (CF_CFLB),
    `fine` (CF_NR_FK in 万元, None when not given). Raises ClassProblem. `known` remembers
    what each CF_CFLB text reads as (a file repeats a few of them a million times)."""
    if explicit:
        severity = EXPLICIT.get(explicit.upper())
        if severity is None:
            raise ClassProblem(
                "severity",
                f"unknown class {_quoted(explicit)}; use 轻微, 一般 or 严重 "
                "(MINOR, GENERAL, SERIOUS)",
            )
        return severity
    if known is None:
        known = {}
    found = known.get(categories)
    if found is None:
        try:
            found = categories_class(rule, categories)
        except ClassProblem as exc:
            found = exc
        if len(known) < 4096:
            known[categories] = found
    if isinstance(found, ClassProblem):
        raise found
    severity, fine_alone = found
    if fine is not None:
        if fine >= rule.serious_fine_from:
            return Severity.SERIOUS
        if fine_alone and fine < rule.minor_fine_below:
            return Severity.MINOR
    return severity


def categories_class(rule: ClassRule, categories: str) -> tuple[Severity, bool]:
    """The heaviest class of the categories named, and whether nothing heavier than a fine is
    among them (then the fine's amount may move the class)."""
    named = [part.strip() for part in _SEPARATORS.split(categories) if part.strip()]
    if not named:
        raise ClassProblem("category", "is required (处罚类别, e.g. 警告 or 罚款)")
    found: list[Severity] = []
    for name in named:
        severity = rule.categories.get(name)
        if severity is None:
            raise ClassProblem(
                "category",
                f"unknown penalty category {_quoted(name)}; known: {', '.join(rule.categories)}",
            )
        found.append(severity)
    fine_alone = all(
        s is Severity.MINOR or n == rule.fine_category for n, s in zip(named, found, strict=True)
    )
    return max(found), fine_alone


def parse_rule(text: str, origin: str) -> ClassRule:
    try:
        table: dict[str, Any] = tomllib.loads(text)
        categories = {str(k): _NAMES[v] for k, v in table["categories"].items()}
        fines = table["fines"]
        rule = ClassRule(
            categories=MappingProxyType(categories),
            fine_category=str(fines["category"]),
            minor_fine_below=decimal.Decimal(str(fines["minor_below"])),
            serious_fine_from=decimal.Decimal(str(fines["serious_from"])),
            provenance=str(table.get("provenance", "illustrative")),
            confirm_with=str(table.get("confirm_with", "")),
        )
    except (
        tomllib.TOMLDecodeError,
        KeyError,
        TypeError,
        AttributeError,
        decimal.InvalidOperation,
    ) as exc:
        raise ConfigError(f"penalty class rule {origin} is malformed: {exc!r}") from None
    if rule.fine_category not in rule.categories:
        raise ConfigError(f"penalty class rule {origin}: the fine category is no category")
    if not rule.minor_fine_below <= rule.serious_fine_from:
        raise ConfigError(f"penalty class rule {origin}: minor_below exceeds serious_from")
    return rule


@functools.cache
def builtin_rule() -> ClassRule:
    entry = importlib.resources.files(__package__).joinpath("penalty-classes.toml")
    return parse_rule(entry.read_text(encoding="utf-8"), "adapters/penalty-classes.toml")


def _quoted(raw: str) -> str:
    return repr(raw) if len(raw) <= _QUOTED else f"{raw[:_QUOTED]!r}... ({len(raw):,} characters)"
