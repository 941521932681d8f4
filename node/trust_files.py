"""The I/O edge of zone trust (floor 4): coordinator keys pinned in node.toml, the trust list
files in the node home that feed a `node.trust.TrustStore` — refreshed without a restart, a
refused file logged while the last good list stays — and the version floors recorded in the
node's store, so that a restart refuses what run time refused. Lists polled from a
coordinator's URL (node.trust_fetch) come in through the same door.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization

from node import b64, signing
from node.clock import SYSTEM
from node.errors import ConfigError, CreditNodeError, InvalidInput, UntrustedKey
from node.home import NodeHome, dumps_toml
from node.tls import certificate_subject
from node.trust import ZONE_RE, TrustStore, VersionFloor
from node.trust_model import Member, iso_z

log = logging.getLogger(__name__)


# --- pinning: [trust.<zone>] tables of node.toml -------------------------------------------


def coordinator_keys_from_config(
    trust_table: Mapping[str, Any], home: pathlib.Path
) -> dict[str, signing.VerificationKey]:
    """Each zone's pinned coordinator key from node.toml's `[trust.<zone>]` tables.

    A table gives either `coordinator_key` (path to a PEM public key, relative to the home) or
    `coordinator_spki` (base64 DER SubjectPublicKeyInfo); `coordinator_keyid`, when present,
    must match the key (a typo check for keys copied by hand).
    """
    keys: dict[str, signing.VerificationKey] = {}
    for zone, table in trust_table.items():
        where = f"node.toml [trust.{zone}]"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table")
        if not ZONE_RE.match(zone):
            raise ConfigError(f"{where}: zone must be a lower-case slug like 'hjjw'")
        path, spki_b64 = table.get("coordinator_key"), table.get("coordinator_spki")
        if (path is None) == (spki_b64 is None):
            raise ConfigError(f"{where}: give exactly one of coordinator_key or coordinator_spki")
        try:
            if isinstance(path, str):
                spki = read_public_key_pem(home / path)
            elif isinstance(spki_b64, str):
                spki = b64.decode(spki_b64, f"{where} coordinator_spki")
            else:
                raise ConfigError(f"{where}: coordinator_key/coordinator_spki must be strings")
            key = signing.VerificationKey.from_spki_der(spki)
        except (InvalidInput, UntrustedKey) as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
        expected = table.get("coordinator_keyid")
        if expected is not None and expected != key.keyid:
            raise ConfigError(
                f"{where}: coordinator_keyid {expected} does not match the key ({key.keyid})"
            )
        keys[zone] = key
    return keys


def coordinator_keys_for_home(home: NodeHome) -> dict[str, signing.VerificationKey]:
    """The coordinator keys pinned in the home's node.toml (`[trust.<zone>]` tables)."""
    table = home.load_document().get("trust", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{home.config_file}: trust must be a table of zones, [trust.<zone>]")
    return coordinator_keys_from_config(table, home.path)


def pin_coordinator_key(home: NodeHome, zone: str, key: signing.VerificationKey) -> None:
    """Write `[trust.<zone>]` with the key's keyid and SPKI into node.toml, keeping the rest."""
    if not ZONE_RE.match(zone):
        raise InvalidInput(f"zone must be a lower-case slug like 'hjjw', got {zone!r}")
    doc = home.load_document()
    trust_table = doc.setdefault("trust", {})
    if not isinstance(trust_table, dict):
        raise ConfigError(f"{home.config_file}: trust must be a table of zones, [trust.<zone>]")
    trust_table[zone] = {
        "coordinator_keyid": key.keyid,
        "coordinator_spki": b64.encode(key.spki_der),
    }
    tmp = home.config_file.with_name(f".{home.config_file.name}.tmp")
    tmp.write_text("# creditnode node configuration (DESIGN.md §2)\n" + dumps_toml(doc))
    os.replace(tmp, home.config_file)


def read_public_key_pem(path: pathlib.Path) -> bytes:
    """The DER SubjectPublicKeyInfo of a PEM public key file (ConfigError if unreadable)."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read coordinator key {path}: {exc.strerror}") from None
    try:
        public_key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM public key ({exc})") from None
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_pem(key: signing.VerificationKey) -> bytes:
    """A verification key as a PEM SubjectPublicKeyInfo (what `coordinator_key` points at)."""
    return serialization.load_der_public_key(key.spki_der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- the I/O edge: list files in the node home --------------------------------------------

ZONES_DIR = "zones"


def trust_list_path(home: pathlib.Path, zone: str) -> pathlib.Path:
    """Where a zone's signed list lives in a node home (DSSE JSON form)."""
    return home / ZONES_DIR / f"{zone}.trustlist.json"


class FloorRecord(Protocol):
    """Where the highest accepted version per zone is kept durably
    (`node.store.trust_floors.TrustFloorRepository`, as `store.trust_floors`)."""

    def recorded(self) -> Mapping[str, tuple[int, str]]:
        """zone -> (version, payload SHA-256 hex)."""
        ...

    def record(self, zone: str, version: int, payload_sha256: str, at: dt.datetime) -> None:
        """Raise a zone's floor (never lowers it)."""
        ...


class TrustListFiles:
    """Feeds a TrustStore from `zones/<zone>.trustlist.json` in the node home.

    `refresh()` re-reads only files whose stat changed, so a newer list dropped in place (write
    a temporary file, then rename it over the old one) is picked up without restart. Every
    refusal is logged once per file version; the store keeps its last good list. With a
    `floors` record, every list accepted raises its zone's recorded floor (retried at the next
    refresh if the store is down), and a held list's expiry is logged once, as an error.
    `offer()` takes a list fetched from the coordinator's URL (node.trust_fetch) the same way.
    """

    def __init__(
        self,
        home: NodeHome | pathlib.Path,
        store: TrustStore,
        floors: FloorRecord | None = None,
        recorded: Mapping[str, VersionFloor] | None = None,
    ) -> None:
        self.home = home.path if isinstance(home, NodeHome) else pathlib.Path(home)
        self.store = store
        self._floors = floors
        self._recorded: dict[str, VersionFloor] = dict(recorded or {})
        self._seen: dict[str, tuple[int, int, int] | None] = {}  # None: file was missing
        self._warned_expired: set[tuple[str, int]] = set()
        self.last_errors: dict[str, CreditNodeError | OSError] = {}
        # The poller offers from its thread while refresh runs in another: one at a time.
        self._lock = threading.Lock()

    def refresh(self, now: dt.datetime | None = None) -> list[str]:
        """Offer every changed list file to the store; the zones whose list changed."""
        now = now or SYSTEM.now()
        with self._lock:
            anchors = self._anchors()
            updated = [zone for zone in self.store.pinned_zones if self._refresh_file(zone, now)]
            self._after_offers(anchors, updated, now)
        return updated

    def offer(self, zone: str, data: bytes, source: str, now: dt.datetime) -> bool:
        """Offer a list that came from elsewhere (`source`: the coordinator's URL) with the
        same checks, logging and floors as a file. True when it replaced the held list; it is
        then written to the zone's file too, so that a restart starts from it."""
        with self._lock:
            anchors = self._anchors()
            taken = self._offer(zone, data, source, now)
            if taken:
                try:
                    path = install_trust_list(self.home, zone, data)
                    st = os.stat(path)
                    self._seen[zone] = (st.st_mtime_ns, st.st_size, st.st_ino)
                except OSError as exc:
                    log.error(
                        "zone %s: cannot write the list taken from %s into %s: %s; it is in "
                        "force, but a restart would start from the file there",
                        zone,
                        source,
                        trust_list_path(self.home, zone),
                        exc.strerror or exc,
                    )
            self._after_offers(anchors, [zone] if taken else [], now)
        return taken

    def _refresh_file(self, zone: str, now: dt.datetime) -> bool:
        path = trust_list_path(self.home, zone)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if zone not in self._seen or self._seen[zone] is not None:
                log.warning("zone %s: no trust list file at %s", zone, path)
            self._seen[zone] = None
            return False
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._seen.get(zone) == stamp:
            return False
        self._seen[zone] = stamp
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._refused(zone, str(path), exc)
            return False
        return self._offer(zone, data, str(path), now)

    def _offer(self, zone: str, data: bytes, source: str, now: dt.datetime) -> bool:
        try:
            taken = self.store.offer(zone, data, now)
        except CreditNodeError as exc:
            self._refused(zone, source, exc)
            return False
        self.last_errors.pop(zone, None)
        if taken:
            held = self.store.trust_list(zone)
            assert held is not None
            log.info(
                "zone %s: trust list version %d loaded from %s (%d members, expires %s)",
                zone,
                held.version,
                source,
                len(held.members),
                iso_z(held.expires_at),
            )
        return taken

    def _refused(self, zone: str, source: str, exc: CreditNodeError | OSError) -> None:
        self.last_errors[zone] = exc
        kept = self.store.trust_list(zone)
        log.error(
            "zone %s: refused trust list %s: %s; keeping %s",
            zone,
            source,
            exc.message if isinstance(exc, CreditNodeError) else exc,
            f"version {kept.version}" if kept else "no list (zone not served)",
        )

    def _after_offers(
        self, anchors: Mapping[str, tuple[str, Member]], updated: list[str], now: dt.datetime
    ) -> None:
        """Name the certificates no list accepts any more, record the floors that rose, and
        log each held list's expiry once."""
        if updated:
            self._log_dropped_anchors(anchors)
        self.record_floors(now)
        for zone in self.store.expired_zones(now):
            expired = self.store.trust_list(zone)
            assert expired is not None
            if (zone, expired.version) not in self._warned_expired:
                self._warned_expired.add((zone, expired.version))
                log.error(
                    "zone %s: trust list version %d expired at %s; it grants nothing now (its "
                    "members are refused NOT_ZONE_MEMBER) until the coordinator publishes a new "
                    "one",
                    zone,
                    expired.version,
                    iso_z(expired.expires_at),
                )

    def _anchors(self) -> dict[str, tuple[str, Member]]:
        """TLS certificate SHA-256 -> (zone, member), over every list held: the client
        certificates the server's handshake accepts (node.tls)."""
        return {
            m.tls_cert_sha256: (zone, m)
            for zone in self.store.zones()
            if (held := self.store.trust_list(zone)) is not None
            for m in held.members
        }

    def _log_dropped_anchors(self, before: Mapping[str, tuple[str, Member]]) -> None:
        """Name each certificate no list held accepts any more: its handshakes fail inside
        grpc from now on, where no Python code sees which certificate it was (docs/adr/0008),
        so the log says it here, when the refusal begins."""
        after = self._anchors()
        for fingerprint in sorted(set(before) - set(after)):
            zone, member = before[fingerprint]
            log.warning(
                "TLS: the certificate of %s (%s, SHA-256 %s) is on no trust list held here any "
                "more (it was on %s's); its handshakes are refused from now on",
                member.node_id,
                certificate_subject(member.tls_cert_der),
                fingerprint,
                zone,
            )

    def record_floors(self, now: dt.datetime) -> None:
        """Record each zone's floor that rose since it was last recorded. A store that is down
        is logged; the next refresh tries again (the list stays in force meanwhile)."""
        if self._floors is None:
            return
        for zone in self.store.zones():
            floor = self.store.floor(zone)
            if floor is None or self._recorded.get(zone) == floor:
                continue
            try:
                self._floors.record(zone, floor.version, floor.payload_sha256, now)
            except CreditNodeError as exc:
                log.error(
                    "zone %s: cannot record trust list version %d as accepted: %s; a restart "
                    "before it is recorded would not refuse older lists",
                    zone,
                    floor.version,
                    exc.message,
                )
                continue
            self._recorded[zone] = floor


def load_home_trust(
    home: NodeHome, now: dt.datetime | None = None, floors: FloorRecord | None = None
) -> TrustListFiles:
    """The node's trust: a store of its pinned zones, with every list file loaded once.

    `floors` (the node store's `trust_floors`) gives the versions accepted before: a list file
    below them is refused, as it would be at run time, and each list accepted is recorded.
    """
    recorded = (
        {}
        if floors is None
        else {
            zone: VersionFloor(version, digest)
            for zone, (version, digest) in floors.recorded().items()
        }
    )
    store = TrustStore(coordinator_keys_for_home(home), recorded)
    files = TrustListFiles(home, store, floors, recorded)
    files.refresh(now)
    return files


def install_trust_list(home: pathlib.Path, zone: str, envelope_json: str | bytes) -> pathlib.Path:
    """Write a zone's list file atomically (temporary file, then rename) into the home."""
    path = trust_list_path(home, zone)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    data = envelope_json.encode("utf-8") if isinstance(envelope_json, str) else envelope_json
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
