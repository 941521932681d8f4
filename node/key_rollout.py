"""Whether a staged signing key is published where it matters (issue 14 §4): in every zone's
trust list in force that lists this node. Pure, over a `TrustStore`; `keys rotate --activate`
switches only when nothing lacks it, so no peer holding those lists rejects an answer signed
with it (`UNTRUSTED_KEY`)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from node.errors import Conflict
from node.trust import TrustStore
from node.trust_model import iso_z


@dataclasses.dataclass(frozen=True)
class Publication:
    """Zones whose list in force lists this node, by whether it carries the key (or pins the
    certificate, `node.tls_rollout`), as "zone version N"."""

    carrying: tuple[str, ...]
    lacking: tuple[str, ...]


def key_publication(
    trust: TrustStore, node_id: str, keyid: str, switch_at: dt.datetime, now: dt.datetime
) -> Publication:
    """Which lists in force at `now` that list `node_id` carry `keyid` valid at `switch_at`
    (not revoked, not_before passed). A list that expired grants nothing, so it is left out."""
    carrying: list[str] = []
    lacking: list[str] = []
    for zone in trust.zones_in_force(now):
        trust_list = trust.trust_list(zone)
        member = None if trust_list is None else trust_list.member(node_id)
        if trust_list is None or member is None:
            continue
        info = member.signing_key_info(keyid)
        named = f"{zone} version {trust_list.version}"
        (carrying if info is not None and info.valid_at(switch_at) else lacking).append(named)
    return Publication(tuple(carrying), tuple(lacking))


def check_key_published(
    trust: TrustStore, node_id: str, keyid: str, switch_at: dt.datetime, now: dt.datetime
) -> Publication:
    """`key_publication`, or Conflict naming each list in force that lacks the key."""
    publication = key_publication(trust, node_id, keyid, switch_at, now)
    if publication.lacking:
        raise Conflict(
            f"signing key {keyid} is not in the trust list in force here for "
            f"{', '.join(publication.lacking)} (valid at {iso_z(switch_at)}); peers holding "
            "it would reject answers signed with it as UNTRUSTED_KEY. Send `creditnode "
            "identity export` to the coordinator, and activate once the list it signs is "
            "in force here",
            reason="KEY_NOT_PUBLISHED",
        )
    return publication
