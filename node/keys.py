"""A node's key material in its home (DESIGN.md §3): generate once, load on start. Floor 3.

Separate keys for separate jobs: DSSE signing keys (several, for rotation, listed in a manifest
with status and not_before), the Ed25519 log key (checkpoints), the Ed25519 witness key
(cosignatures), the TLS key and self-signed certificate (and the next certificate for the same
key, staged by `tls reissue`), and the HMAC secret that pseudonymises resident ids. Private
files are created 0600 and never overwritten; with $CREDITNODE_KEY_PASSPHRASE set they are
PKCS#8-encrypted (the HMAC secret, not a key PKCS#8 can hold, is sealed: `node.sealed_secret`,
ADR 0006) and loading needs the same passphrase. A home's keys are all encrypted under one
passphrase or none: a new key is written as they are. The manifest holds every public half,
so the public identity is exported without a passphrase.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import pathlib
import re
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node import b64, sealed_secret, signing
from node.clock import SYSTEM, Clock
from node.config import NodeConfig
from node.errors import InvalidInput, KeyMaterialError, UntrustedKey
from node.home import NodeHome
from node.log import notes

PASSPHRASE_ENV = "CREDITNODE_KEY_PASSPHRASE"
ACTIVE = "active"
VERIFY_ONLY = "verify-only"
PENDING = "pending"  # staged for a rotation: published, not signing yet (issue 14 §4)
STATUSES = (ACTIVE, VERIFY_ONLY, PENDING)
TLS_VALIDITY = dt.timedelta(days=730)
HMAC_KEY_BYTES = 32
HMAC_KEY_PURPOSE = "subject-hmac"  # bound into the sealed file (sealed_secret's purpose)
MANIFEST_VERSION = 1
# How often a serving process re-reads keys.json (CurrentSigner.refresh): node.runtime's trust
# refresh and the answer worker's own loop. The trust refresh re-reads the TLS certificates too.
KEYS_REFRESH_S = 5.0

log = logging.getLogger(__name__)


def node_uri(node_id: str) -> str:
    """DESIGN.md §3: the URI SAN that names a node in its TLS certificate."""
    return f"creditx://node/{node_id}"


def passphrase_from_env() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def rfc3339(moment: dt.datetime) -> str:
    # Microseconds kept: a rotated key's not_before ends the older key's validity, and a
    # truncated time would end it before results it signed a moment earlier.
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(value: object, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise KeyMaterialError(f"{where} must be an RFC 3339 time string, got {value!r}")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise KeyMaterialError(f"{where} is not an RFC 3339 time: {value!r}") from None
    if moment.tzinfo is None:
        raise KeyMaterialError(f"{where} must carry a time zone: {value!r}")
    return moment.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True)
class SigningKeyRecord:
    """One DSSE signing key as the manifest lists it (private half in `file`)."""

    keyid: str
    algorithm: str
    spki_der: bytes
    file: str  # file name beside the manifest
    status: str  # ACTIVE, VERIFY_ONLY or PENDING
    not_before: dt.datetime
    # Set on a key retired by `keys rotate --activate`: it signs until then, verifies what it
    # signed before then, and no more (exported, so the trust list says so).
    not_after: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise KeyMaterialError(f"signing key {self.keyid}: unknown status {self.status!r}")
        if self.not_after is not None and self.not_after <= self.not_before:
            raise KeyMaterialError(f"signing key {self.keyid}: not_after is before not_before")
        if "/" in self.file or self.file.startswith("."):
            raise KeyMaterialError(f"signing key {self.keyid}: file must be a plain file name")
        self.verification_key()  # the keyid, algorithm and SPKI must agree

    def verification_key(self) -> signing.VerificationKey:
        try:
            return signing.VerificationKey(self.keyid, self.algorithm, self.spki_der)
        except UntrustedKey as exc:
            raise KeyMaterialError(f"key manifest: {exc.message}") from None

    @property
    def listed_status(self) -> str:
        """The status a trust list and NodeInfo give the key: a pending key is listed active
        (valid from its not_before), so that peers verify it from the moment it signs."""
        return ACTIVE if self.status == PENDING else self.status

    def signs_at(self, now: dt.datetime) -> bool:
        """Whether this key may sign at `now`: an active key from its not_before (until its
        not_after, if any), and a key retired at a set moment until that moment."""
        if self.not_before > now or (self.not_after is not None and now >= self.not_after):
            return False
        return self.status == ACTIVE or (self.status == VERIFY_ONLY and self.not_after is not None)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "keyid": self.keyid,
            "algorithm": self.algorithm,
            "spki": b64.encode(self.spki_der),
            "file": self.file,
            "status": self.status,
            "not_before": rfc3339(self.not_before),
        }
        if self.not_after is not None:
            doc["not_after"] = rfc3339(self.not_after)
        return doc

    @classmethod
    def from_json(cls, raw: object, where: str) -> SigningKeyRecord:
        if not isinstance(raw, dict):
            raise KeyMaterialError(f"{where} must be an object")
        fields = {}
        for name in ("keyid", "algorithm", "file", "status"):
            if not isinstance(raw.get(name), str):
                raise KeyMaterialError(f"{where}.{name} must be a string")
            fields[name] = raw[name]
        not_after = raw.get("not_after")
        return cls(
            spki_der=b64.decode(raw.get("spki"), f"{where}.spki", KeyMaterialError),
            not_before=_parse_time(raw.get("not_before"), f"{where}.not_before"),
            not_after=None if not_after is None else _parse_time(not_after, f"{where}.not_after"),
            **fields,
        )


def signing_record_at(
    records: Sequence[SigningKeyRecord], now: dt.datetime
) -> SigningKeyRecord | None:
    """The key that signs at `now` (issue 14 §4): of the keys that may sign then, the one
    retired soonest — a key keeps signing until the moment `keys rotate --activate` set, and
    its successor (valid since it was staged) takes over exactly then — else the newest."""
    usable = [r for r in records if r.signs_at(now)]
    if not usable:
        return None
    never = dt.datetime.max.replace(tzinfo=dt.UTC)
    return min(usable, key=lambda r: (r.not_after or never, -r.not_before.timestamp()))


@dataclasses.dataclass(frozen=True)
class KeyManifest:
    """keys.json: which node the keys belong to, and the public half of every key."""

    node_id: str
    signing_keys: tuple[SigningKeyRecord, ...]
    log_public_key: bytes  # raw 32-byte Ed25519
    witness_public_key: bytes  # raw 32-byte Ed25519

    def to_json(self) -> str:
        doc = {
            "version": MANIFEST_VERSION,
            "node_id": self.node_id,
            "signing_keys": [k.to_json() for k in self.signing_keys],
            "log_public_key": b64.encode(self.log_public_key),
            "witness_public_key": b64.encode(self.witness_public_key),
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> KeyManifest:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyMaterialError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
            raise KeyMaterialError(f"{source}: not a version {MANIFEST_VERSION} key manifest")
        raw_keys = doc.get("signing_keys")
        if not isinstance(raw_keys, list) or not raw_keys:
            raise KeyMaterialError(f"{source}: signing_keys must be a non-empty list")
        node_id = doc.get("node_id")
        if not isinstance(node_id, str):
            raise KeyMaterialError(f"{source}: node_id must be a string")
        return cls(
            node_id=node_id,
            signing_keys=tuple(
                SigningKeyRecord.from_json(raw, f"{source}: signing_keys[{i}]")
                for i, raw in enumerate(raw_keys)
            ),
            log_public_key=b64.decode(
                doc.get("log_public_key"), f"{source}: log_public_key", KeyMaterialError
            ),
            witness_public_key=b64.decode(
                doc.get("witness_public_key"), f"{source}: witness_public_key", KeyMaterialError
            ),
        )


@dataclasses.dataclass(frozen=True)
class PublicIdentity:
    """What peers and the zone coordinator need to know about this node."""

    node_id: str
    name: str
    division_code: str
    signing_keys: tuple[SigningKeyRecord, ...]
    log_origin: str
    log_verifier_key: str
    witness_verifier_key: str
    tls_cert_pem: str
    tls_cert_sha256: str  # hex SHA-256 of the certificate's DER

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "name": self.name,
            "division_code": self.division_code,
            "signing_keys": [
                {
                    "keyid": k.keyid,
                    "algorithm": k.algorithm,
                    "spki": b64.encode(k.spki_der),
                    "not_before": rfc3339(k.not_before),
                    "status": k.status,
                    **({} if k.not_after is None else {"not_after": rfc3339(k.not_after)}),
                }
                for k in self.signing_keys
            ],
            "log_origin": self.log_origin,
            "log_verifier_key": self.log_verifier_key,
            "witness_verifier_key": self.witness_verifier_key,
            "tls_cert_pem": self.tls_cert_pem,
            "tls_cert_sha256": self.tls_cert_sha256,
        }


MAX_HOSTS = 32
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def host_name(value: str) -> x509.GeneralName:
    """A name peers may reach this node by, as a SAN: an IP address, or a DNS host name
    (RFC 1123 labels, at most 253 characters). InvalidInput names what is wrong."""
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        shown = value if len(value) <= 64 else value[:64] + "…"
        raise InvalidInput(
            f"host {shown!r} is neither an IP address nor a DNS host name "
            "(letters, digits and hyphens in dot-separated labels of at most 63 characters)"
        )
    return x509.DNSName(value.removesuffix(".").lower())


def self_signed_tls_certificate(
    node_id: str,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    hosts: Sequence[str] = (),
) -> x509.Certificate:
    """DESIGN.md §3: CN and URI SAN name the node; `hosts` (and localhost, so loopback TLS
    works) are the names peers reach it by; the same certificate serves (serverAuth) and
    calls peers (clientAuth)."""
    if len(hosts) > MAX_HOSTS:
        raise InvalidInput(f"at most {MAX_HOSTS} host names, got {len(hosts)}")
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(node_uri(node_id)),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    for host in hosts:
        name = host_name(host)
        if name not in names:
            names.append(name)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate peers' clock skew
        .not_valid_after(now + TLS_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def certificate_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_spki(cert: x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo a certificate binds: equal for a reissued certificate."""
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_hosts(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate's SANs give (not the node's URI)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *names.get_values_for_type(x509.DNSName),
        *map(str, names.get_values_for_type(x509.IPAddress)),
    ]


class NodeKeys:
    """The key files of one node home, as named by its config's [keys] table."""

    def __init__(self, home: NodeHome, config: NodeConfig, *, passphrase: bytes | None) -> None:
        self.home = home
        self.config = config
        self._passphrase = passphrase
        paths = config.keys
        self.manifest_path = home.resolve(paths.manifest)
        self.log_key_path = home.resolve(paths.log_key)
        self.witness_key_path = home.resolve(paths.witness_key)
        self.tls_key_path = home.resolve(paths.tls_key)
        self.tls_cert_path = home.resolve(paths.tls_cert)
        # `tls reissue` stages the next certificate beside the one presented (ADR 0013).
        cert = self.tls_cert_path
        self.staged_tls_cert_path = cert.with_name(f"{cert.stem}.next{cert.suffix}")
        self.subject_hmac_key_path = home.resolve(paths.subject_hmac_key)
        self._subject_hmac_key: bytes | None = None  # unsealing costs a scrypt: once

    @classmethod
    def open(cls, home: NodeHome, config: NodeConfig | None = None) -> NodeKeys:
        """The home's keys, with the passphrase from $CREDITNODE_KEY_PASSPHRASE."""
        return cls(home, config or home.load_config(), passphrase=passphrase_from_env())

    @property
    def encrypted(self) -> bool:
        return self._passphrase is not None

    def _fixed_paths(self) -> tuple[pathlib.Path, ...]:
        return (
            self.manifest_path,
            self.log_key_path,
            self.witness_key_path,
            self.tls_key_path,
            self.tls_cert_path,
            self.subject_hmac_key_path,
        )

    def existing_files(self) -> list[pathlib.Path]:
        """Key files of this node that are present (any one means an identity exists)."""
        found = [p for p in self._fixed_paths() if p.exists()]
        if self.manifest_path.is_file():
            try:
                records = self.manifest().signing_keys
            except KeyMaterialError:
                records = ()
            found += [self._signing_key_path(r) for r in records]
        found.append(self.staged_tls_cert_path)
        found += sorted(self.manifest_path.parent.glob("signing-*.key"))
        return sorted(set(p for p in found if p.exists()))

    def remove(self) -> None:
        """Delete this node's key files (for `init --force`); other files are left alone."""
        for path in self.existing_files():
            path.unlink()

    # --- generation -------------------------------------------------------------------------

    def generate(
        self,
        *,
        signing_algorithm: str = signing.ED25519,
        now: dt.datetime | None = None,
        hosts: Sequence[str] = (),
    ) -> None:
        """Create every key; refuses when any key file already exists. `hosts`: the names and
        addresses peers reach this node by, put in its TLS certificate."""
        existing = self.existing_files()
        if existing:
            raise KeyMaterialError(
                f"key material already exists ({', '.join(str(p) for p in existing)}); "
                "refusing to overwrite it"
            )
        now = now or SYSTEM.now()
        for path in self._fixed_paths():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

        record = self._new_signing_key(signing_algorithm, now)
        log_key = ed25519.Ed25519PrivateKey.generate()
        self._write_private_key(self.log_key_path, log_key)
        witness_key = ed25519.Ed25519PrivateKey.generate()
        self._write_private_key(self.witness_key_path, witness_key)
        tls_key = ec.generate_private_key(ec.SECP256R1())
        self._write_private_key(self.tls_key_path, tls_key)
        cert = self_signed_tls_certificate(self.config.node_id, tls_key, now, hosts)
        _write_public(self.tls_cert_path, cert.public_bytes(serialization.Encoding.PEM))
        hmac_key = secrets.token_bytes(HMAC_KEY_BYTES)
        _write_private(self.subject_hmac_key_path, self._subject_hmac_file(hmac_key))
        # The manifest goes last: its presence means the set is complete.
        manifest = KeyManifest(
            node_id=self.config.node_id,
            signing_keys=(record,),
            log_public_key=_raw_public(log_key),
            witness_public_key=_raw_public(witness_key),
        )
        _write_public(self.manifest_path, manifest.to_json().encode("utf-8"))

    def rotate_signing_key(
        self, *, algorithm: str = signing.ED25519, now: dt.datetime | None = None
    ) -> SigningKeyRecord:
        """DESIGN.md §3 key rotation: a new active key; the old ones become verify-only."""
        now = now or SYSTEM.now()
        manifest = self.manifest()
        self._refuse_while_rotating(manifest, now)
        self.check_passphrase_fits_home()
        record = self._new_signing_key(algorithm, now)
        older = tuple(dataclasses.replace(r, status=VERIFY_ONLY) for r in manifest.signing_keys)
        self._write_manifest(dataclasses.replace(manifest, signing_keys=(*older, record)))
        return record

    def stage_signing_key(
        self, *, algorithm: str = signing.ED25519, now: dt.datetime | None = None
    ) -> SigningKeyRecord:
        """Issue 14 §4, step 1: the next signing key, `pending` from `now`. The node keeps
        signing with the current key; `identity export` carries the new one, which the
        coordinators publish (listed active: valid from `now`)."""
        now = now or SYSTEM.now()
        manifest = self.manifest()
        self._refuse_while_rotating(manifest, now)
        self.check_passphrase_fits_home()
        record = dataclasses.replace(self._new_signing_key(algorithm, now), status=PENDING)
        self._write_manifest(
            dataclasses.replace(manifest, signing_keys=(*manifest.signing_keys, record))
        )
        return record

    def pending_key(self) -> SigningKeyRecord | None:
        """The key staged by `stage_signing_key`, if one waits for activation."""
        return next((r for r in self.signing_keys() if r.status == PENDING), None)

    def activate_pending_key(
        self, switch_at: dt.datetime
    ) -> tuple[SigningKeyRecord, tuple[SigningKeyRecord, ...]]:
        """Issue 14 §4, step 2: the pending key signs from `switch_at` on, and every key that
        would sign then is retired at that very moment (verify-only, `not_after` = switch_at):
        each result is signed by a key valid at its issued_at, before and after the switch.
        The caller checks first that the lists in force carry the pending key. Returns the
        new key and the keys retired."""
        manifest = self.manifest()
        pending = next((r for r in manifest.signing_keys if r.status == PENDING), None)
        if pending is None:
            raise KeyMaterialError(
                f"no pending signing key in {self.manifest_path}: stage one first "
                "(creditnode keys rotate --stage)"
            )
        if switch_at < pending.not_before:
            raise KeyMaterialError(
                f"key {pending.keyid} is valid from {rfc3339(pending.not_before)}: it cannot "
                f"sign from {rfc3339(switch_at)}"
            )
        retired = tuple(
            r for r in manifest.signing_keys if r.status != PENDING and r.signs_at(switch_at)
        )
        for r in retired:
            if switch_at <= r.not_before:
                raise KeyMaterialError(f"key {r.keyid} is not valid before {rfc3339(switch_at)}")
        records = tuple(
            dataclasses.replace(r, status=ACTIVE)
            if r.keyid == pending.keyid
            else dataclasses.replace(r, status=VERIFY_ONLY, not_after=switch_at)
            if r in retired
            else r
            for r in manifest.signing_keys
        )
        self._write_manifest(dataclasses.replace(manifest, signing_keys=records))
        return dataclasses.replace(pending, status=ACTIVE), tuple(
            dataclasses.replace(r, status=VERIFY_ONLY, not_after=switch_at) for r in retired
        )

    def _refuse_while_rotating(self, manifest: KeyManifest, now: dt.datetime) -> None:
        pending = next((r for r in manifest.signing_keys if r.status == PENDING), None)
        if pending is not None:
            raise KeyMaterialError(
                f"signing key {pending.keyid} is staged already: activate it first "
                "(creditnode keys rotate --activate)"
            )
        retiring = [r.not_after for r in manifest.signing_keys if r.not_after and r.not_after > now]
        if retiring:
            raise KeyMaterialError(
                f"a key switch is set for {rfc3339(min(retiring))}: rotate again after it"
            )

    def _write_manifest(self, manifest: KeyManifest) -> None:
        _write_public(self.manifest_path, manifest.to_json().encode("utf-8"), replace=True)

    def _new_signing_key(self, algorithm: str, now: dt.datetime) -> SigningKeyRecord:
        """A new active signing key, written (0600) beside the manifest; not yet listed in it."""
        signer = _new_signer(algorithm)
        record = SigningKeyRecord(
            keyid=signer.keyid,
            algorithm=signer.algorithm,
            spki_der=signer.spki_der,
            file=f"signing-{signer.keyid[:16]}.key",
            status=ACTIVE,
            not_before=now,
        )
        self._write_private_key(self._signing_key_path(record), signer.private_key)
        return record

    # --- reissuing the TLS certificate (issue 14 §1, ADR 0013) -----------------------------

    def stage_tls_certificate(self, hosts: Sequence[str], now: dt.datetime) -> x509.Certificate:
        """A new self-signed certificate for the same TLS key, naming `hosts`, written beside
        the current one (replacing a certificate staged before). The node presents it once the
        trust lists pin it (`node.tls_rollout`); the caller checks that no list pins the
        certificate it replaces."""
        cert = self_signed_tls_certificate(self.config.node_id, self.tls_private_key(), now, hosts)
        _write_public(
            self.staged_tls_cert_path, cert.public_bytes(serialization.Encoding.PEM), replace=True
        )
        return cert

    def staged_tls_certificate(self) -> x509.Certificate | None:
        """The certificate `tls reissue` staged, if one waits; it must bind the TLS key of the
        current certificate (a reissue keeps the key)."""
        if not self.staged_tls_cert_path.exists():
            return None
        staged = _load_certificate(self.staged_tls_cert_path)
        if certificate_spki(staged) != certificate_spki(self.tls_certificate()):
            raise KeyMaterialError(
                f"{self.staged_tls_cert_path} is not for the TLS key of {self.tls_cert_path}"
            )
        return staged

    def activate_staged_tls_certificate(self) -> x509.Certificate:
        """Make the staged certificate the node's certificate file. The caller checks first
        that the lists in force pin it."""
        staged = self.staged_tls_certificate()
        if staged is None:
            raise KeyMaterialError(
                "no staged TLS certificate to activate: stage one first "
                "(creditnode tls reissue --host NAME_OR_IP …)"
            )
        os.replace(self.staged_tls_cert_path, self.tls_cert_path)
        return staged

    # --- public halves (no passphrase needed) -----------------------------------------------

    def manifest(self) -> KeyManifest:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyMaterialError(
                f"no key manifest at {self.manifest_path}: run `creditnode init`"
            ) from None
        manifest = KeyManifest.from_json(text, str(self.manifest_path))
        if manifest.node_id != self.config.node_id:
            raise KeyMaterialError(
                f"{self.manifest_path} holds the keys of {manifest.node_id}, but node.toml says "
                f"this node is {self.config.node_id}"
            )
        return manifest

    def signing_keys(self) -> tuple[SigningKeyRecord, ...]:
        return self.manifest().signing_keys

    def verification_keys(self) -> dict[str, signing.VerificationKey]:
        """Every listed signing key (active and verify-only), by keyid."""
        return {r.keyid: r.verification_key() for r in self.signing_keys()}

    def log_verifier(self) -> notes.NoteVerifier:
        return notes.NoteVerifier(
            notes.log_origin(self.config.node_id), notes.SIG_ED25519, self.manifest().log_public_key
        )

    def witness_verifier(self) -> notes.NoteVerifier:
        return notes.NoteVerifier(
            notes.witness_key_name(self.config.node_id),
            notes.SIG_COSIGNATURE_V1,
            self.manifest().witness_public_key,
        )

    def tls_certificate(self) -> x509.Certificate:
        return _load_certificate(self.tls_cert_path)

    def tls_certificate_pem(self) -> bytes:
        return self.tls_certificate().public_bytes(serialization.Encoding.PEM)

    def public_identity(self) -> PublicIdentity:
        """What the coordinator lists: a staged TLS certificate rather than the one presented
        (like a pending signing key), since the next list must pin it (ADR 0013)."""
        cert = self.staged_tls_certificate() or self.tls_certificate()
        return PublicIdentity(
            node_id=self.config.node_id,
            name=self.config.name,
            division_code=self.config.division_code,
            signing_keys=self.signing_keys(),
            log_origin=notes.log_origin(self.config.node_id),
            log_verifier_key=self.log_verifier().to_text(),
            witness_verifier_key=self.witness_verifier().to_text(),
            tls_cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            tls_cert_sha256=certificate_sha256(cert),
        )

    # --- private halves ---------------------------------------------------------------------

    def active_signer(self, now: dt.datetime | None = None) -> signing.Signer:
        """The signer of the key that signs at `now` (`signing_record_at`)."""
        now = now or SYSTEM.now()
        record = signing_record_at(self.signing_keys(), now)
        if record is None:
            raise KeyMaterialError(f"no active signing key in {self.manifest_path} as of {now}")
        return self.signer_for(record)

    def signer_for(self, record: SigningKeyRecord) -> signing.Signer:
        path = self._signing_key_path(record)
        key = self._load_private_key(path)
        signer: signing.Ed25519Signer | signing.EcdsaP256Signer
        if record.algorithm == signing.ED25519 and isinstance(key, ed25519.Ed25519PrivateKey):
            signer = signing.Ed25519Signer(key)
        elif record.algorithm == signing.ECDSA_P256 and isinstance(key, ec.EllipticCurvePrivateKey):
            signer = signing.EcdsaP256Signer(key)
        else:
            raise KeyMaterialError(f"{path} does not hold a {record.algorithm} key")
        if signer.keyid != record.keyid:
            raise KeyMaterialError(f"{path} is not the key {record.keyid} the manifest lists")
        return signer

    def log_signer(self) -> notes.NoteSigner:
        key = self._load_ed25519(self.log_key_path, self.manifest().log_public_key)
        return notes.NoteSigner(notes.log_origin(self.config.node_id), key)

    def witness_signer(self) -> notes.WitnessSigner:
        key = self._load_ed25519(self.witness_key_path, self.manifest().witness_public_key)
        return notes.WitnessSigner(notes.witness_key_name(self.config.node_id), key)

    def tls_private_key(self) -> ec.EllipticCurvePrivateKey:
        key = self._load_private_key(self.tls_key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyMaterialError(f"{self.tls_key_path} is not an ECDSA key")
        if _spki(key) != self.tls_certificate().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise KeyMaterialError(
                f"{self.tls_key_path} does not match the certificate {self.tls_cert_path}"
            )
        return key

    def tls_private_key_pem(self) -> bytes:
        """The TLS key as unencrypted PKCS#8 PEM, in memory only (gRPC wants the bytes)."""
        return self.tls_private_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def subject_hmac_key(self) -> bytes:
        """The secret that pseudonymises resident ids: sealed under the passphrase in an
        encrypted home, 32 raw bytes in a plain one. ADR 0006: a raw file in an encrypted home
        (written before sealing existed) still loads, with a warning; `keys protect` seals it."""
        if self._subject_hmac_key is None:
            self._subject_hmac_key = self._read_subject_hmac_key()
        return self._subject_hmac_key

    def _read_subject_hmac_key(self) -> bytes:
        path = self.subject_hmac_key_path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyMaterialError(
                f"no subject HMAC key at {path}: run `creditnode init`"
            ) from None
        except PermissionError:
            raise KeyMaterialError(f"cannot read {path}: permission denied") from None
        if sealed_secret.is_sealed(data):
            secret = self._unseal(path, data)
        else:
            secret = data
            if self._passphrase is not None:
                log.warning(
                    "%s is stored in clear beside encrypted keys: run `creditnode keys protect`",
                    path,
                )
        if len(secret) != HMAC_KEY_BYTES:
            raise KeyMaterialError(f"{path} must hold {HMAC_KEY_BYTES} bytes, has {len(secret)}")
        return secret

    # --- keeping a home's keys under one passphrase -----------------------------------------

    def check_passphrase_fits_home(self) -> None:
        """Refuse, before anything is written, a passphrase that does not fit the keys already
        in the home: none beside encrypted keys (the new key would be in clear), one beside
        keys in clear (the home would need it for one key only), or one that does not open
        them."""
        private = self._private_files()
        encrypted = [p for p in private if is_encrypted_at_rest(p.read_bytes())]
        where = self.manifest_path.parent
        if encrypted and self._passphrase is None:
            raise KeyMaterialError(
                f"the keys in {where} are encrypted: set {PASSPHRASE_ENV} to their passphrase; "
                "refusing to write a new key unencrypted"
            )
        if self._passphrase is not None and private and not encrypted:
            raise KeyMaterialError(
                f"the keys in {where} are not encrypted: unset {PASSPHRASE_ENV}; refusing to "
                "write one key encrypted beside keys in clear"
            )
        if encrypted:
            self._open_private_file(encrypted[0])  # "cannot decrypt …" on a wrong passphrase

    def protect_subject_hmac_key(self) -> bool:
        """Seal a subject HMAC key left in clear in an encrypted home (ADR 0006). The secret is
        unchanged, so pseudonyms logged before stay comparable. False when already sealed."""
        self.check_passphrase_fits_home()
        if self._passphrase is None:
            raise KeyMaterialError(
                f"the keys in {self.manifest_path.parent} are not encrypted: there is no "
                "passphrase to seal the subject HMAC key with"
            )
        path = self.subject_hmac_key_path
        if sealed_secret.is_sealed(path.read_bytes()):
            return False
        secret = self._read_subject_hmac_key()
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        _write_private(tmp, self._subject_hmac_file(secret))
        if self._unseal(tmp, tmp.read_bytes()) != secret:  # never replace it with a bad copy
            tmp.unlink()
            raise KeyMaterialError(f"{tmp} did not read back as the secret; {path} is unchanged")
        os.replace(tmp, path)
        return True

    def _private_files(self) -> list[pathlib.Path]:
        public = {self.manifest_path, self.tls_cert_path, self.staged_tls_cert_path}
        return [p for p in self.existing_files() if p not in public]

    def _open_private_file(self, path: pathlib.Path) -> None:
        data = path.read_bytes()
        if sealed_secret.is_sealed(data):
            self._unseal(path, data)
        else:
            self._load_private_key(path)

    # --- files ------------------------------------------------------------------------------

    def _signing_key_path(self, record: SigningKeyRecord) -> pathlib.Path:
        return self.manifest_path.parent / record.file

    def _write_private_key(
        self, path: pathlib.Path, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    ) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            private_key_encryption(self._passphrase),
        )
        _write_private(path, pem)

    def _subject_hmac_file(self, secret: bytes) -> bytes:
        if self._passphrase is None:
            return secret
        return sealed_secret.seal(secret, self._passphrase, HMAC_KEY_PURPOSE)

    def _unseal(self, path: pathlib.Path, data: bytes) -> bytes:
        if self._passphrase is None:
            raise KeyMaterialError(
                f"{path} is encrypted: set {PASSPHRASE_ENV} to the passphrase it was written with"
            )
        try:
            return sealed_secret.unseal(data, self._passphrase, HMAC_KEY_PURPOSE)
        except sealed_secret.WrongPassphrase:
            raise KeyMaterialError(
                f"cannot decrypt {path}: {PASSPHRASE_ENV} is not the passphrase it was written with"
            ) from None
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"{path}: {exc.message}") from None

    def _load_private_key(self, path: pathlib.Path) -> Any:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyMaterialError(f"missing key file {path}: run `creditnode init`") from None
        except PermissionError:
            raise KeyMaterialError(f"cannot read {path}: permission denied") from None
        encrypted = _PEM_ENCRYPTED_PKCS8 in data
        if encrypted and not self._passphrase:
            raise KeyMaterialError(
                f"{path} is encrypted: set {PASSPHRASE_ENV} to the passphrase it was written with"
            )
        try:
            return serialization.load_pem_private_key(
                data, password=self._passphrase if encrypted else None
            )
        except ValueError:
            if encrypted:
                raise KeyMaterialError(
                    f"cannot decrypt {path}: {PASSPHRASE_ENV} is not the passphrase it was "
                    "written with"
                ) from None
            raise KeyMaterialError(f"{path} is not a PEM PKCS#8 private key") from None

    def _load_ed25519(
        self, path: pathlib.Path, expected_public: bytes
    ) -> ed25519.Ed25519PrivateKey:
        key = self._load_private_key(path)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyMaterialError(f"{path} is not an Ed25519 key")
        if _raw_public(key) != expected_public:
            raise KeyMaterialError(f"{path} does not match the public key in {self.manifest_path}")
        return key


def _new_signer(algorithm: str) -> signing.Ed25519Signer | signing.EcdsaP256Signer:
    if algorithm == signing.ED25519:
        return signing.Ed25519Signer.generate()
    if algorithm == signing.ECDSA_P256:
        return signing.EcdsaP256Signer.generate()
    raise KeyMaterialError(
        f"signing algorithm {algorithm!r} is not supported (use {signing.ED25519} or "
        f"{signing.ECDSA_P256})"
    )


def _raw_public(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# The PEM label of an encrypted PKCS#8 key (RFC 7468 §11), built from its parts so that this
# source file never carries a line that looks like the start of a private key block.
_PEM_ENCRYPTED_PKCS8 = b"".join(
    (
        b"-----BEGIN ",
        b"ENCRYPTED PRIVATE KEY-----",
    )
)


def _load_certificate(path: pathlib.Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError(f"no TLS certificate at {path}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise KeyMaterialError(f"{path} is not a PEM certificate") from None


def _write_private(path: pathlib.Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the start (O_EXCL: never replace key material)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyMaterialError(
            f"{path} already exists; refusing to overwrite key material"
        ) from None
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask: make it exactly 0600
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def is_encrypted_at_rest(data: bytes) -> bool:
    """Whether a private file's bytes are an encrypted PKCS#8 PEM key or a sealed secret."""
    return _PEM_ENCRYPTED_PKCS8 in data or sealed_secret.is_sealed(data)


def private_key_encryption(passphrase: bytes | None) -> serialization.KeySerializationEncryption:
    """PKCS#8 encryption under the passphrase, or none without one."""
    if passphrase:
        return serialization.BestAvailableEncryption(passphrase)
    return serialization.NoEncryption()


def _write_public(path: pathlib.Path, data: bytes, *, replace: bool = False) -> None:
    if path.exists() and not replace:
        raise KeyMaterialError(f"{path} already exists; refusing to overwrite it")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def identity_json(identity: PublicIdentity) -> str:
    return json.dumps(identity.to_json_dict(), ensure_ascii=False, indent=2)


class CurrentSigner:
    """The signer a running node signs with, following keys.json (issue 14 §4): `refresh()`
    re-reads the manifest when its file changed and loads the private half of every key that
    signs now or later (a staged key too, so that the switch itself reads no file); calling
    the object picks the key that signs at the clock's `now` (`signing_record_at`). A switch
    set by `keys rotate --activate` thus happens at its moment in every process that
    refreshed before it. `refresh` reads files (and may decrypt): run it off the event loop.
    """

    def __init__(self, keys: NodeKeys, clock: Clock = SYSTEM) -> None:
        self._keys = keys
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._records: tuple[SigningKeyRecord, ...] = ()
        self._signers: dict[str, signing.Signer] = {}
        self.refresh()
        self()  # a home with no key that signs now does not start

    def refresh(self) -> bool:
        """Re-read keys.json if it changed; True when it did. A manifest that does not load
        raises, and the keys held stay in use."""
        st = os.stat(self._keys.manifest_path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return False
        records = self._keys.signing_keys()
        now = self._clock.now()
        signers = {
            r.keyid: self._signers.get(r.keyid) or self._keys.signer_for(r)
            for r in records
            if r.status == PENDING or r.signs_at(now) or r.not_before > now
        }
        if self._stamp is not None:
            for r in records:
                if r.not_after is not None and r.not_after > now:
                    log.info("signing key %s signs until %s", r.keyid, rfc3339(r.not_after))
        self._records, self._signers, self._stamp = records, signers, stamp
        return True

    def __call__(self) -> signing.Signer:
        now = self._clock.now()
        record = signing_record_at(self._records, now)
        signer = None if record is None else self._signers.get(record.keyid)
        if signer is None:
            raise KeyMaterialError(
                f"no active signing key in {self._keys.manifest_path} as of {rfc3339(now)}"
            )
        return signer
