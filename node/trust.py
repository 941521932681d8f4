"""Zone trust lists (DESIGN.md §3): who is in a zone, their TLS anchors and signing keys.

A `TrustList` is checked once on construction; `open_trust_list` hands one out only after the
zone coordinator's pinned key verified it, it is unexpired and not older than the version floor.
`TrustStore` is a pure state machine keeping the last good list per zone, given the floors
recorded before (so a restart never goes back); a list that expires while held stays held but
is no longer in force: it grants no zone. `node.trust_files` is the thin I/O edge that feeds
it from the node home and records the floors in the store.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node import b64, model, signing, wire
from node.errors import (
    ConfigError,
    ExpiredTrustList,
    InvalidInput,
    RolledBackTrustList,
    TrustListZoneMismatch,
    UnsignedEnvelope,
    UntrustedKey,
)
from node.trust_model import (
    ACTIVE as ACTIVE,
)
from node.trust_model import (
    FINGERPRINT_RE as FINGERPRINT_RE,
)
from node.trust_model import (
    KEY_STATUSES as KEY_STATUSES,
)
from node.trust_model import (
    NODE_URI_PREFIX as NODE_URI_PREFIX,
)
from node.trust_model import (
    REVOKED as REVOKED,
)
from node.trust_model import (
    ROLE_RE as ROLE_RE,
)
from node.trust_model import (
    VERIFY_ONLY as VERIFY_ONLY,
)
from node.trust_model import (
    ZONE_RE as ZONE_RE,
)
from node.trust_model import (
    Member as Member,
)
from node.trust_model import (
    PublicKeyInfo as PublicKeyInfo,
)
from node.trust_model import (
    TrustList as TrustList,
)
from node.trust_model import (
    check_members as check_members,
)
from node.trust_model import iso_z

log = logging.getLogger(__name__)
PENDING = "pending"  # a node's staged key in its identity export (node.keys); never in a list

# --- JSON form of members (identity exports, coordinator drafts, `zone show`) -------------


def _time(text: object, what: str) -> dt.datetime:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be an RFC 3339 time string")
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{what} is not an RFC 3339 time: {text!r}") from None
    return model.require_aware(value, what)


def _str(doc: Mapping[str, Any], field: str, where: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: field {field!r} must be a string")
    return value


def _optional_str(doc: Mapping[str, Any], field: str, where: str) -> str:
    """A string field that documents written before it existed leave out: empty then."""
    return "" if doc.get(field) is None else _str(doc, field, where)


def public_key_to_json(key: PublicKeyInfo) -> dict[str, Any]:
    return {
        "keyid": key.keyid,
        "algorithm": key.algorithm,
        "spki_der": b64.encode(key.spki_der),
        "not_before": iso_z(key.not_before),
        "not_after": None if key.not_after is None else iso_z(key.not_after),
        "status": key.status,
    }


def public_key_from_json(doc: Mapping[str, Any], where: str = "signing key") -> PublicKeyInfo:
    not_after = doc.get("not_after")
    return PublicKeyInfo(
        keyid=_str(doc, "keyid", where),
        algorithm=_str(doc, "algorithm", where),
        spki_der=b64.decode(doc.get("spki_der"), f"{where} spki_der"),
        not_before=_time(doc.get("not_before"), f"{where} not_before"),
        not_after=None if not_after is None else _time(not_after, f"{where} not_after"),
        status=_str(doc, "status", where),
    )


def member_to_json(member: Member) -> dict[str, Any]:
    return {
        "node_id": member.node_id,
        "name": member.name,
        "division_code": member.division_code,
        "endpoint": member.endpoint,
        "roles": list(member.roles),
        "tls_cert_sha256": member.tls_cert_sha256,
        "tls_cert_der": b64.encode(member.tls_cert_der),
        "signing_keys": [public_key_to_json(k) for k in member.signing_keys],
        "log_verifier_key": member.log_verifier_key,
        "witness_verifier_key": member.witness_verifier_key,
    }


def member_from_json(doc: Mapping[str, Any]) -> Member:
    where = f"member {doc.get('node_id', '?')}"
    raw_keys = doc.get("signing_keys", [])
    roles = doc.get("roles", ["node"])
    if not isinstance(raw_keys, list) or not all(isinstance(k, dict) for k in raw_keys):
        raise InvalidInput(f"{where}: signing_keys must be a list of objects")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidInput(f"{where}: roles must be a list of strings")
    return Member(
        node_id=_str(doc, "node_id", where),
        name=_str(doc, "name", where),
        division_code=_str(doc, "division_code", where),
        endpoint=_str(doc, "endpoint", where),
        tls_cert_der=b64.decode(doc.get("tls_cert_der"), f"{where} tls_cert_der"),
        tls_cert_sha256=_str(doc, "tls_cert_sha256", where),
        signing_keys=tuple(public_key_from_json(k, f"{where} key") for k in raw_keys),
        roles=tuple(roles),
        log_verifier_key=_optional_str(doc, "log_verifier_key", where),
        witness_verifier_key=_optional_str(doc, "witness_verifier_key", where),
    )


def member_from_identity(
    identity: Mapping[str, Any], *, endpoint: str, roles: tuple[str, ...] = ("node",)
) -> Member:
    """A member from a node's `creditnode identity export` JSON, reachable at `endpoint`.

    A `verify-only` key without an explicit `not_after` ends where the next newer key begins:
    the moment it was rotated out (DESIGN.md §3), so it never vouches for later signatures.
    A key retired by `keys rotate --activate` carries its `not_after`: the switch moment.
    """
    if not isinstance(identity, Mapping):
        raise InvalidInput("an identity export must be a JSON object")
    where = f"identity of {identity.get('node_id', '?')}"
    pem = _str(identity, "tls_cert_pem", where)
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidInput(f"{where}: tls_cert_pem is not a PEM certificate ({exc})") from None
    raw_keys = identity.get("signing_keys")
    if not isinstance(raw_keys, list) or not all(isinstance(k, Mapping) for k in raw_keys):
        raise InvalidInput(f"{where}: signing_keys must be a list of objects")
    starts = [_time(k.get("not_before"), f"{where} key not_before") for k in raw_keys]
    keys = []
    for raw, start in zip(raw_keys, starts, strict=True):
        status = _str(raw, "status", f"{where} key")
        if status == PENDING:
            # Staged for a rotation (issue 14 §4): listed active from its not_before, so that
            # peers verify it from the moment the node switches to it.
            status = ACTIVE
        not_after: dt.datetime | None = None
        if raw.get("not_after") is not None:
            not_after = _time(raw["not_after"], f"{where} key not_after")
        elif status == VERIFY_ONLY:
            not_after = min((t for t in starts if t > start), default=None)
        keys.append(
            PublicKeyInfo(
                keyid=_str(raw, "keyid", f"{where} key"),
                algorithm=_str(raw, "algorithm", f"{where} key"),
                spki_der=b64.decode(raw.get("spki", raw.get("spki_der")), f"{where} key spki"),
                not_before=start,
                not_after=not_after,
                status=status,
            )
        )
    return Member(
        node_id=_str(identity, "node_id", where),
        name=_str(identity, "name", where),
        division_code=_str(identity, "division_code", where),
        endpoint=endpoint,
        tls_cert_der=cert.public_bytes(serialization.Encoding.DER),
        tls_cert_sha256=_str(identity, "tls_cert_sha256", where),
        signing_keys=tuple(keys),
        roles=roles,
        log_verifier_key=_optional_str(identity, "log_verifier_key", where),
        witness_verifier_key=_optional_str(identity, "witness_verifier_key", where),
    )


def trust_list_to_json(trust_list: TrustList) -> dict[str, Any]:
    return {
        "zone": trust_list.zone,
        "version": trust_list.version,
        "issued_at": iso_z(trust_list.issued_at),
        "expires_at": iso_z(trust_list.expires_at),
        "members": [member_to_json(m) for m in trust_list.members],
    }


# --- signing and opening ------------------------------------------------------------------


def sign_trust_list(trust_list: TrustList, coordinator: signing.Signer) -> signing.Envelope:
    """The coordinator's DSSE envelope over the list's protobuf bytes (DESIGN.md §3, §4)."""
    return signing.sign_envelope(
        signing.PAYLOAD_TRUST_LIST, wire.trust_list_bytes(trust_list), [coordinator]
    )


def open_trust_list(
    envelope: signing.Envelope,
    coordinator_key: signing.VerificationKey,
    *,
    now: dt.datetime,
    held_version: int | None,
    zone: str | None = None,
    held_payload_sha256: str | None = None,
    accept_expired: bool = False,
) -> TrustList:
    """The list inside `envelope`, once every check of DESIGN.md §3 passed, in this order:

    1. it carries a signature (UnsignedEnvelope);
    2. the pinned coordinator key's signature verifies over the bytes received
       (UntrustedKey when no signature is by that key, BadSignature when it does not verify);
    3. the payload decodes to a valid list (InvalidInput) for the expected zone
       (TrustListZoneMismatch);
    4. it is not older than `held_version`, the highest version accepted before
       (RolledBackTrustList); the same version is accepted only with the same payload, when
       `held_payload_sha256` (hex SHA-256 of that payload) is given;
    5. it has not expired at `now` (ExpiredTrustList), unless `accept_expired`: the caller
       knows this very list was in force before (TrustStore, after a restart).
    """
    now = model.require_aware(now, "now")
    # 1. An empty signature list is its own refusal: the publisher forgot to sign.
    if not envelope.signatures:
        raise UnsignedEnvelope(
            f"trust list{f' for zone {zone}' if zone else ''} carries no signature; "
            "the coordinator must sign it (creditnode zone sign)"
        )
    # 2. Verify the received bytes; decode only after (DESIGN.md §4).
    verified = signing.verify_envelope(
        envelope,
        payload_type=signing.PAYLOAD_TRUST_LIST,
        keys={coordinator_key.keyid: coordinator_key},
    )
    trust_list = wire.trust_list_from_bytes(verified.payload)
    # 3. A coordinator may sign several zones with one key: the zone must be the one asked.
    if zone is not None and trust_list.zone != zone:
        raise TrustListZoneMismatch(
            f"trust list is for zone {trust_list.zone!r}, offered as zone {zone!r}"
        )
    # 4. Rollback protection (TUF-style): never go back to an older list.
    older = held_version is not None and trust_list.version < held_version
    reissued = (
        trust_list.version == held_version
        and held_payload_sha256 is not None
        and hashlib.sha256(verified.payload).hexdigest() != held_payload_sha256
    )
    if older or reissued:
        raise RolledBackTrustList(
            f"trust list for zone {trust_list.zone} has version {trust_list.version}, "
            f"but version {held_version} was already accepted"
            + (" with different content" if reissued else "")
        )
    # 5. Expiry.
    if trust_list.expires_at <= now and not accept_expired:
        raise ExpiredTrustList(
            f"trust list for zone {trust_list.zone} version {trust_list.version} expired at "
            f"{iso_z(trust_list.expires_at)} (now {iso_z(now)}); ask the coordinator for a new one"
        )
    return trust_list


# --- the store: last good list per zone ---------------------------------------------------


def _as_envelope(data: signing.Envelope | str | bytes) -> signing.Envelope:
    if isinstance(data, signing.Envelope):
        return data
    return signing.Envelope.from_json(data)


@dataclasses.dataclass(frozen=True)
class HeldList:
    """A zone's last good list and the envelope it came in (to pass it on unchanged)."""

    trust_list: TrustList
    envelope: signing.Envelope

    def in_force(self, now: dt.datetime) -> bool:
        """Whether the list still grants: up to, not including, its `expires_at`."""
        return now < self.trust_list.expires_at


@dataclasses.dataclass(frozen=True)
class VersionFloor:
    """The highest version of a zone's list accepted so far, and the hex SHA-256 of its
    payload: no lower version, nor other content under that version, is accepted again
    (DESIGN.md §3 rollback protection). Recorded durably, so a restart keeps it."""

    version: int
    payload_sha256: str

    @classmethod
    def of(cls, held: HeldList) -> VersionFloor:
        digest = hashlib.sha256(held.envelope.payload).hexdigest()
        return cls(held.trust_list.version, digest)


class TrustStore:
    """The last good trust list of each zone whose coordinator key is pinned.

    Pure state: `offer` either replaces a zone's list with a newer good one or raises the
    reason and leaves the held list as it was (DESIGN.md §3: keep serving on the last good list).
    `floors` are the versions accepted before this store was made (recorded in the node's
    store): lists below them are refused as at run time, and the very list a floor names is
    taken back even when it has expired since, so that it is reported, not dropped.

    A held list that has expired stays held: its members still authenticate (checkpoints,
    proofs, witnessing) but it grants nothing, so `zones_in_force` leaves it out from its
    `expires_at` on.
    """

    def __init__(
        self,
        coordinator_keys: Mapping[str, signing.VerificationKey],
        floors: Mapping[str, VersionFloor] | None = None,
    ) -> None:
        for zone in coordinator_keys:
            if not ZONE_RE.match(zone):
                raise ConfigError(f"zone {zone!r} must be a lower-case slug like 'hjjw'")
        self._coordinator_keys = dict(coordinator_keys)
        self._floors: dict[str, VersionFloor] = dict(floors or {})
        self._held: dict[str, HeldList] = {}
        self.generation = 0  # bumped whenever a list is replaced: callers key caches on it
        self._anchors_pem = b""  # rebuilt when a list changes: TLS asks on every handshake
        self._expiries: list[dt.datetime] = []  # of the lists held, sorted

    @property
    def pinned_zones(self) -> list[str]:
        return sorted(self._coordinator_keys)

    def offer(self, zone: str, envelope: signing.Envelope | str | bytes, now: dt.datetime) -> bool:
        """Take `envelope` (a DSSE envelope or its JSON form) as `zone`'s list if it is good.

        Returns True when it replaced the held list, False when it is the list already held;
        raises the refusal otherwise (the held list stays).
        """
        key = self._coordinator_keys.get(zone)
        if key is None:
            raise ConfigError(
                f"no coordinator key is pinned for zone {zone!r}; add [trust.{zone}] to node.toml"
            )
        opened = _as_envelope(envelope)
        floor = self._floors.get(zone)
        trust_list = open_trust_list(
            opened,
            key,
            now=now,
            held_version=None if floor is None else floor.version,
            zone=zone,
            held_payload_sha256=None if floor is None else floor.payload_sha256,
            # The very list accepted last (after a restart, the one recorded) is held again
            # even if it expired since: reported as expired and granting nothing, rather
            # than dropped as if the zone had never had a list.
            accept_expired=floor is not None
            and hashlib.sha256(opened.payload).hexdigest() == floor.payload_sha256,
        )
        held = self._held.get(zone)
        if held is not None and held.trust_list.version == trust_list.version:
            return False
        self._held[zone] = held = HeldList(trust_list, opened)
        self._floors[zone] = VersionFloor.of(held)
        self.generation += 1
        certs = {m.tls_cert_sha256: m for h in self._held.values() for m in h.trust_list.members}
        self._anchors_pem = b"".join(certs[fp].tls_cert_pem for fp in sorted(certs))
        self._expiries = sorted(h.trust_list.expires_at for h in self._held.values())
        return True

    # lookups

    def floor(self, zone: str) -> VersionFloor | None:
        """The highest version accepted for `zone`: what to record durably."""
        return self._floors.get(zone)

    def zones(self) -> list[str]:
        """Zones with a list held, in force or expired."""
        return sorted(self._held)

    def zones_in_force(self, now: dt.datetime) -> list[str]:
        """Zones whose list still grants at `now`."""
        return sorted(z for z, h in self._held.items() if h.in_force(now))

    def expired_count(self, now: dt.datetime) -> int:
        """How many held lists have expired at `now`. With `generation`, it names the set of
        lists in force, so caches keyed on both never outlive an expiry."""
        return bisect.bisect_right(self._expiries, now)

    def held(self, zone: str) -> HeldList | None:
        return self._held.get(zone)

    def trust_list(self, zone: str) -> TrustList | None:
        held = self._held.get(zone)
        return None if held is None else held.trust_list

    def expired_zones(self, now: dt.datetime) -> list[str]:
        """Zones whose held list has expired: they grant nothing (for health and the log)."""
        return sorted(z for z, h in self._held.items() if not h.in_force(now))

    def member(self, zone: str, node_id: str) -> Member | None:
        trust_list = self.trust_list(zone)
        return None if trust_list is None else trust_list.member(node_id)

    def log_verifier_key(self, node_id: str) -> str | None:
        """`node_id`'s log verifier key (DESIGN.md §5 Member 9) from the most recently issued
        list held that carries one; None when no list does (lists signed before the field)."""
        found = [
            (held.trust_list.issued_at, member.log_verifier_key)
            for held in self._held.values()
            if (member := held.trust_list.member(node_id)) is not None and member.log_verifier_key
        ]
        return max(found)[1] if found else None

    def witness_verifier_keys(self) -> dict[str, str]:
        """Node id -> witness verifier key (Member 10) of every member of the lists held that
        carries one, from the most recently issued list naming it."""
        keys: dict[str, str] = {}
        for held in sorted(self._held.values(), key=lambda h: h.trust_list.issued_at):
            for member in held.trust_list.members:
                if member.witness_verifier_key:
                    keys[member.node_id] = member.witness_verifier_key
        return keys

    def member_by_cert_sha256(self, fingerprint: str) -> list[tuple[str, Member]]:
        """Every (zone, member) whose TLS certificate has this SHA-256 (mTLS authentication)."""
        fp = fingerprint.lower().replace(":", "")
        return [
            (zone, m)
            for zone, held in sorted(self._held.items())
            for m in held.trust_list.members
            if m.tls_cert_sha256 == fp
        ]

    def peer_key(self, node_id: str, keyid: str, *, zone: str | None = None) -> PublicKeyInfo:
        """`node_id`'s key `keyid` as listed, or UntrustedKey (unknown, or revoked).

        Looks in `zone`'s list, or every list held. A key revoked in any list is refused;
        otherwise the entry of the most recently issued list wins (the freshest news of a
        rotation). Fits `node.peer_client.KeyLookup` as `(peer, keyid)`.
        """
        zones = [zone] if zone is not None else self.zones()
        found: list[tuple[TrustList, PublicKeyInfo]] = []
        for z in zones:
            trust_list = self.trust_list(z)
            member = None if trust_list is None else trust_list.member(node_id)
            info = None if member is None else member.signing_key_info(keyid)
            if trust_list is not None and info is not None:
                found.append((trust_list, info))
        if not found:
            where = f"zone {zone}" if zone is not None else "any zone held"
            raise UntrustedKey(f"{node_id} has no signing key {keyid} in the trust list of {where}")
        for trust_list, info in found:
            if info.status == REVOKED:
                raise UntrustedKey(
                    f"signing key {keyid} of {node_id} is revoked in the trust list of zone "
                    f"{trust_list.zone} (version {trust_list.version}); it verifies nothing"
                )
        return max(found, key=lambda pair: pair[0].issued_at)[1]

    def signing_key(
        self, node_id: str, keyid: str, at: dt.datetime, *, zone: str | None = None
    ) -> signing.VerificationKey:
        """The key that may verify `node_id`'s signature made at `at`, or UntrustedKey.

        An `active` or `verify-only` key verifies within [not_before, not_after); a `revoked`
        key verifies nothing (DESIGN.md §3 key rotation).
        """
        at = model.require_aware(at, "signature time")
        info = self.peer_key(node_id, keyid, zone=zone)
        if not info.valid_at(at):
            raise UntrustedKey(
                f"signing key {keyid} of {node_id} ({info.status}) is valid from "
                f"{iso_z(info.not_before)} until {iso_z(info.not_after)}, not at {iso_z(at)}"
            )
        return info.verification_key

    def anchors_pem(self) -> bytes:
        """Every member's TLS certificate as PEM: the root set for mutual TLS."""
        return self._anchors_pem
