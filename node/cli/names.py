"""A peer or a zone as an operator names it (issue 14 §8): `--peer 湖州` is the member the trust
lists held call 湖州, `--zone 湖嘉金温` the zone node.toml's `[zones.<id>] name` calls so.

An id (`cn-330500`, `hjjw`) passes unchanged; a name must pick exactly one id, else the
operator is told which ids it could mean. Pure: the caller passes what the home holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from node import model
from node.errors import InvalidInput
from node.trust_model import TrustList

NODE_ID_RE = re.compile(r"^cn-\d{6}\Z")
MAX_NAME_SHOWN = 40  # characters of an unknown name quoted back


def _quoted(name: str) -> str:
    return repr(name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "…")


def _names(name: str, text: str) -> bool:
    """`text` is `name`, or its first word: node.toml may follow a zone's Chinese name with a
    gloss (`信用长三角 Yangtze River Delta`)."""
    return text == name or (bool(name.split()) and text == name.split()[0])


def _pick(what: str, name: str, candidates: Mapping[str, str]) -> str:
    """The one id among `candidates` (id -> its name) named `name`."""
    ids = sorted(i for i, n in candidates.items() if _names(n, name))
    if len(ids) == 1:
        return ids[0]
    if ids:
        raise InvalidInput(
            f"{_quoted(name)} is ambiguous: it names {what}s {', '.join(ids)}; give the id instead",
            reason="AMBIGUOUS_NAME",
        )
    known = ", ".join(f"{i} {n}" for i, n in sorted(candidates.items())) or "none"
    raise InvalidInput(
        f"{_quoted(name)} is neither a {what} id nor the name of one ({what}s known here: {known})",
        reason="UNKNOWN_NAME",
    )


def resolve_peer(text: str, lists: Iterable[TrustList], zone: str | None = None) -> str:
    """The node id `text` means: itself when it is a node id, else the one member the lists
    name so (in `zone`'s list first, where that list is held and names it)."""
    if NODE_ID_RE.match(text):
        return text
    lists = list(lists)
    in_zone = [t for t in lists if t.zone == zone and any(_names(m.name, text) for m in t.members)]
    names: dict[str, str] = {}
    for trust_list in in_zone or lists:
        for member in trust_list.members:
            # A node named differently in two lists is ambiguous only if both match.
            if _names(member.name, text) or member.node_id not in names:
                names[member.node_id] = member.name
    return _pick("node", text, names)


def zone_names(document: Mapping[str, object]) -> dict[str, str]:
    """Zone id -> its name, from a parsed node.toml's `[zones.<id>] name` (id when unnamed)."""
    zones = document.get("zones")
    if not isinstance(zones, Mapping):
        return {}
    return {
        str(zone): str(table.get("name", zone)) if isinstance(table, Mapping) else str(zone)
        for zone, table in zones.items()
    }


def resolve_zone(text: str, names: Mapping[str, str]) -> str:
    """The zone id `text` means: itself when it is a zone id, else the one zone so named."""
    if model.SLUG_RE.match(text):
        return text
    return _pick("zone", text, names)
