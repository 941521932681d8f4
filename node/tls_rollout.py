"""Which TLS certificate the node presents while a reissued one is on its way (issue 14 §1,
ADR 0013). A peer trusts exactly the certificate our member entry pins (`tls_cert_sha256`),
both when it calls us and when we call it, so a certificate staged by `tls reissue` is
presented once every trust list in force here that lists the node pins it, and not before.
Pure, over a `TrustStore`.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from node.errors import Conflict
from node.key_rollout import Publication
from node.keys import certificate_sha256
from node.trust import TrustStore


def certificate_publication(
    trust: TrustStore, node_id: str, cert_sha256: str, now: dt.datetime
) -> Publication:
    """Which lists in force at `now` that list `node_id` pin the certificate `cert_sha256`
    (as "zone version N"). A list that expired grants nothing, so it is left out."""
    carrying: list[str] = []
    lacking: list[str] = []
    for zone in trust.zones_in_force(now):
        trust_list = trust.trust_list(zone)
        member = None if trust_list is None else trust_list.member(node_id)
        if trust_list is None or member is None:
            continue
        named = f"{zone} version {trust_list.version}"
        (carrying if member.tls_cert_sha256 == cert_sha256 else lacking).append(named)
    return Publication(tuple(carrying), tuple(lacking))


def presented_certificate(
    current: x509.Certificate,
    staged: x509.Certificate | None,
    trust: TrustStore,
    node_id: str,
    now: dt.datetime,
) -> x509.Certificate:
    """The staged certificate once some list in force pins it and none pins another one;
    the current one otherwise. Peers whose zone lacks it would refuse it (and while one zone
    pins it and another does not, one of them refuses us whichever we present: the zones'
    coordinators publish the new list together)."""
    if staged is None:
        return current
    publication = certificate_publication(trust, node_id, certificate_sha256(staged), now)
    return staged if publication.carrying and not publication.lacking else current


def check_certificate_published(
    trust: TrustStore, node_id: str, cert_sha256: str, now: dt.datetime
) -> Publication:
    """`certificate_publication`, or Conflict naming each list in force that pins another
    certificate for the node."""
    publication = certificate_publication(trust, node_id, cert_sha256, now)
    if publication.lacking:
        raise Conflict(
            f"TLS certificate sha256:{cert_sha256} is not the one the trust list in force "
            f"here pins for {node_id} in {', '.join(publication.lacking)}; peers holding it "
            "would refuse the handshake. Send `creditnode identity export` to the "
            "coordinator, and activate once the list it signs is in force here",
            reason="CERT_NOT_PUBLISHED",
        )
    return publication


def check_staged_unpublished(
    trust: TrustStore, node_id: str, staged: x509.Certificate, now: dt.datetime
) -> None:
    """Conflict when a list in force already pins the staged certificate: replacing it would
    leave those peers pinning a certificate the node no longer has."""
    sha = certificate_sha256(staged)
    publication = certificate_publication(trust, node_id, sha, now)
    if publication.carrying:
        raise Conflict(
            f"the staged TLS certificate sha256:{sha} is pinned by the trust list in force "
            f"here for {', '.join(publication.carrying)}: finish that reissue first "
            "(creditnode tls reissue --activate), then reissue again",
            reason="CERT_STAGED",
        )
