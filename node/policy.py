"""Zone policy: who may ask what, for which purpose, and what they may see (DESIGN.md §8).

Pure decisions over configuration values and the zones the signed trust lists in force give
this node and the caller (`Membership`: membership comes from the lists alone, never from
node.toml): `authorize` names the rule that lets a caller ask, or raises PermissionDenied
saying exactly why not; `redact` trims a result to what the purpose
may see; `RateLimiter` is a token bucket per caller that takes the clock as an argument, and
`RateRefusals` decides which calls over the rate are logged (one per caller and window).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from node import model
from node.errors import InvalidInput, PermissionDenied, RateLimited

log = logging.getLogger(__name__)

# Result fields a purpose may be denied; the identifying and binding fields are always present.
OPTIONAL_FIELDS = frozenset({"native_score", "native_level", "flags", "indicators"})

PURPOSE_NAMES: Mapping[str, str] = {
    "xinyi-you": "信易游",
    "xinyi-gou": "信易购",
    "xinyi-xing": "信易行",
    "xinyi-dai": "信易贷",
    "joint-sanction": "联合奖惩",
    "enforcement-coordination": "跨区域执法协同",
    "green-loan": "绿贷通",
}


@dataclasses.dataclass(frozen=True, slots=True)
class PurposeRule:
    """What one agreed purpose may ask about and see."""

    purpose: str
    subject_types: frozenset[model.SubjectType]
    fields: frozenset[str] = OPTIONAL_FIELDS
    indicators: frozenset[str] = frozenset()  # indicator keys; "*" means all

    def __post_init__(self) -> None:
        unknown = self.fields - OPTIONAL_FIELDS
        if unknown:
            raise InvalidInput(
                f"purpose {self.purpose}: unknown result fields {sorted(unknown)}; "
                f"choose from {sorted(OPTIONAL_FIELDS)}"
            )
        if not self.subject_types:
            raise InvalidInput(f"purpose {self.purpose}: no subject types allowed")


@dataclasses.dataclass(frozen=True, slots=True)
class ZonePolicy:
    """A zone this node serves: the purposes it agrees to there and the rates. Who is in the
    zone is the zone's signed trust list's business (DESIGN.md §8), not this table's."""

    zone: str
    name: str
    purposes: Mapping[str, PurposeRule]
    rate_per_minute: int = 600
    caller_rates: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def rate_for(self, caller: str) -> int:
        return self.caller_rates.get(caller, self.rate_per_minute)


DEFAULT_RATE_PER_MINUTE = 600
# DESIGN.md §6: calls over a caller's rate are summarised: per caller and window, the first is
# logged and the rest counted in one summary entry. A caller thus adds at most
# rate_per_minute / 60 + 2 / window entries per second to the log (plus one burst of
# rate_per_minute when its bucket is full), however fast it calls.
DEFAULT_REFUSAL_WINDOW_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    zones: Mapping[str, ZonePolicy]
    refusal_window_s: float = DEFAULT_REFUSAL_WINDOW_S  # [rate_limits] summary_window_seconds

    def served(self, on_lists: AbstractSet[str]) -> list[str]:
        """The zones served here, of those whose trust list in force holds this node."""
        return sorted(set(self.zones) & set(on_lists))

    def rate_for(self, caller: str, zone: str | None) -> int:
        """Requests per minute `caller` may send: the zone's rate for it; for a query that
        names no zone served here (malformed, or unknown), the strictest rate it has."""
        found = self.zones.get(zone) if zone is not None else None
        if found is not None:
            return found.rate_for(caller)
        rates = [z.rate_for(caller) for z in self.zones.values()]
        return min(rates) if rates else DEFAULT_RATE_PER_MINUTE


@dataclasses.dataclass(frozen=True, slots=True)
class Membership:
    """The zones whose trust list in force holds this node (`ours`) and the caller
    (`callers`), as the server found them for one call (DESIGN.md §8)."""

    ours: frozenset[str]
    callers: frozenset[str]


def authorize(
    policy: Policy,
    local_node: str,
    caller: str,
    query: model.CreditQuery,
    membership: Membership,
) -> PurposeRule:
    """The rule under which `caller` may ask `query`, or PermissionDenied with why not.

    Checked in the order a person would ask: does this node serve the zone, is the caller on
    the zone's list in force, and this node too, is the purpose agreed in it, may this purpose
    ask about this kind of subject. The caller is checked before this node, so that a list
    that has expired refuses the caller NOT_ZONE_MEMBER, as it refuses every member.
    """
    zone = policy.zones.get(query.zone)
    if zone is None:
        raise PermissionDenied(
            f"this node ({local_node}) does not serve zone {query.zone!r}",
            reason="ZONE_NOT_SERVED",
        )
    if query.zone not in membership.callers:
        raise PermissionDenied(
            f"{caller} is not a member of zone {query.zone} ({zone.name}): not on the "
            f"{query.zone} trust list in force at this node",
            reason="NOT_ZONE_MEMBER",
        )
    if query.zone not in membership.ours:
        raise PermissionDenied(
            f"this node ({local_node}) is not on the trust list of zone {query.zone} in force here",
            reason="ZONE_NOT_SERVED",
        )
    rule = zone.purposes.get(query.purpose)
    if rule is None:
        agreed = ", ".join(sorted(zone.purposes)) or "none"
        raise PermissionDenied(
            f"purpose {query.purpose!r} is not agreed in zone {query.zone} (agreed: {agreed})",
            reason="PURPOSE_NOT_AGREED",
        )
    if (
        query.subject.id_type is model.SubjectIdType.RESIDENT_ID
        and model.SubjectType.NATURAL_PERSON not in rule.subject_types
    ):
        raise PermissionDenied(
            f"purpose {query.purpose} in zone {query.zone} does not allow natural persons",
            reason="SUBJECT_TYPE_NOT_ALLOWED",
        )
    return rule


def check_subject_type(rule: PurposeRule, zone: str, subject_type: model.SubjectType) -> None:
    """Once the subject is known: may this purpose see a subject of its type?"""
    if subject_type not in rule.subject_types:
        raise PermissionDenied(
            f"purpose {rule.purpose} in zone {zone} does not allow subjects of type "
            f"{subject_type.name}",
            reason="SUBJECT_TYPE_NOT_ALLOWED",
        )


def redact(result: model.CreditResult, rule: PurposeRule) -> model.CreditResult:
    """The result trimmed to the fields and indicators the purpose may see."""
    changes = redactions(result, rule)
    return result.bound(**changes) if changes else result


def redactions(result: model.CreditResult, rule: PurposeRule) -> dict[str, object]:
    """The field changes `redact` makes, for callers that apply more changes in one go."""
    changes: dict[str, object] = {}
    if "native_score" not in rule.fields:
        changes["native_score"] = None
    if "native_level" not in rule.fields:
        # native_level must not be empty; the canonical level stands in for it.
        changes["native_level"] = result.level.name
    if "flags" not in rule.fields:
        changes["flags"] = ()
    if "indicators" not in rule.fields:
        changes["indicators"] = {}
    elif "*" not in rule.indicators:
        changes["indicators"] = {k: v for k, v in result.indicators.items() if k in rule.indicators}
    return changes


class RateLimiter:
    """Token bucket per caller: `limit` requests per minute, bursting up to `limit`."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last time)

    def take(self, caller: str, limit_per_minute: int, now: float) -> None:
        if limit_per_minute <= 0:
            raise RateLimited(f"{caller} has no request allowance here")
        tokens, last = self._buckets.get(caller, (float(limit_per_minute), now))
        tokens = min(float(limit_per_minute), tokens + (now - last) * limit_per_minute / 60.0)
        if tokens < 1.0:
            wait = (1.0 - tokens) * 60.0 / limit_per_minute
            self._buckets[caller] = (tokens, now)
            raise RateLimited(
                f"{caller} is over its rate of {limit_per_minute} requests per minute; "
                f"retry in {wait:.1f} s"
            )
        self._buckets[caller] = (tokens - 1.0, now)


@dataclasses.dataclass(slots=True)
class RefusalWindow:
    """Calls of one caller refused over its rate since `opened` (monotonic seconds)."""

    opened: float
    opened_at: dt.datetime  # wall clock, for the summary entry
    refused: int = 1  # the first was logged; the rest are counted


class RateRefusals:
    """Which calls over the rate are logged (DESIGN.md §6, a flood cannot fill the log): the
    first of a caller's window is; the others in that window are only counted, and `due`
    hands back each window that ended with calls counted, for one summary entry."""

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise InvalidInput(f"the refusal summary window must be positive, got {window_s}")
        self.window_s = window_s
        self._open: dict[str, RefusalWindow] = {}
        self._ended: list[tuple[str, RefusalWindow]] = []  # not yet handed out by `due`

    def refuse(self, caller: str, now: float, wall: dt.datetime) -> bool:
        """Count one call of `caller` refused over its rate; True when it is to be logged
        (it opens a window), False when only counted."""
        window = self._open.get(caller)
        if window is not None:
            if now - window.opened < self.window_s:
                window.refused += 1
                return False
            # Ended before `due` came for it: kept for the summary, not overwritten.
            self._ended.append((caller, window))
        self._open[caller] = RefusalWindow(now, wall)
        return True

    def due(self, now: float) -> list[tuple[str, RefusalWindow]]:
        """Windows that have ended, removed; those with calls counted beyond the first."""
        ended, self._ended = self._ended, []
        ended += [
            (c, self._open.pop(c))
            for c, w in list(self._open.items())
            if now - w.opened >= self.window_s
        ]
        return [(c, w) for c, w in ended if w.refused > 1]

    def pending(self) -> bool:
        return bool(self._open or self._ended)


def policy_from_mapping(data: Mapping[str, object], source: str = "config") -> Policy:
    """Build a Policy from the `[zones.*]` tables of a TOML file (already parsed).

    Every mistake names the table and key, so an operator can fix the file. A `members` key
    (written before membership came from the trust lists alone) is ignored with a warning.
    """
    zones: dict[str, ZonePolicy] = {}
    for zone_id, raw in _table(data, "zones", source).items():
        where = f"{source}: [zones.{zone_id}]"
        table = _as_table(raw, where)
        if "members" in table:
            log.warning(
                "%s: members is ignored: who is in a zone comes from its signed trust list "
                "alone; remove the key",
                where,
            )
        purposes: dict[str, PurposeRule] = {}
        for purpose, raw_rule in _table(table, "purposes", where).items():
            rule_where = f"{where}.purposes.{purpose}"
            rule = _as_table(raw_rule, rule_where)
            try:
                types = frozenset(
                    model.SubjectType[name] for name in _strings(rule, "subject_types", rule_where)
                )
            except KeyError as exc:
                raise InvalidInput(
                    f"{rule_where}: unknown subject type {exc.args[0]!r}; use one of "
                    f"{[t.name for t in model.SubjectType]}"
                ) from None
            fields = rule.get("fields")
            purposes[purpose] = PurposeRule(
                purpose=purpose,
                subject_types=types,
                fields=(
                    OPTIONAL_FIELDS
                    if fields is None
                    else frozenset(_strings(rule, "fields", rule_where))
                ),
                indicators=frozenset(_strings(rule, "indicators", rule_where, required=False)),
            )
        rates = _as_table(table.get("caller_rates", {}), f"{where}.caller_rates")
        zones[zone_id] = ZonePolicy(
            zone=zone_id,
            name=str(table.get("name", zone_id)),
            purposes=purposes,
            rate_per_minute=_int(table.get("rate_per_minute", 600), f"{where}.rate_per_minute"),
            caller_rates={k: _int(v, f"{where}.caller_rates.{k}") for k, v in rates.items()},
        )
    limits = _as_table(data.get("rate_limits", {}), f"{source}: [rate_limits]")
    window = limits.get("summary_window_seconds", DEFAULT_REFUSAL_WINDOW_S)
    if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
        raise InvalidInput(
            f"{source}: [rate_limits] summary_window_seconds must be a positive number of seconds"
        )
    return Policy(zones=zones, refusal_window_s=float(window))


def policy_to_mapping(policy: Policy) -> dict[str, object]:
    """The `[zones.*]` and `[rate_limits]` tables that `policy_from_mapping` reads back as
    `policy` (how the server hands a reloaded policy to its answering worker)."""
    zones: dict[str, object] = {}
    for zone in policy.zones.values():
        zones[zone.zone] = {
            "name": zone.name,
            "rate_per_minute": zone.rate_per_minute,
            "caller_rates": dict(zone.caller_rates),
            "purposes": {
                rule.purpose: {
                    "subject_types": sorted(t.name for t in rule.subject_types),
                    "fields": sorted(rule.fields),
                    "indicators": sorted(rule.indicators),
                }
                for rule in zone.purposes.values()
            },
        }
    return {"zones": zones, "rate_limits": {"summary_window_seconds": policy.refusal_window_s}}


def _as_table(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a table")
    return value


def _table(data: Mapping[str, object], key: str, where: str) -> dict[str, object]:
    return _as_table(data.get(key, {}), f"{where}: {key}")


def _strings(data: Mapping[str, object], key: str, where: str, required: bool = True) -> list[str]:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{where}: {key} must be a list of strings")
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{where} must be a whole number >= 0, got {value!r}")
    return value
