"""The trust-list model (DESIGN.md §3): a zone's members with their TLS certificates and
signing keys, checked once on construction. Pure; `node.wire` converts it to and from the
signed protobuf payload, and `node.trust` opens, verifies and holds lists."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from node import divisions, model, signing
from node.errors import InvalidInput, UntrustedKey
from node.log import notes

ACTIVE = "active"
VERIFY_ONLY = "verify-only"
REVOKED = "revoked"
KEY_STATUSES = (ACTIVE, VERIFY_ONLY, REVOKED)

ZONE_RE = model.SLUG_RE
ROLE_RE = re.compile(r"^[a-z][a-z0-9\-]{0,63}\Z")
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}\Z")
NODE_URI_PREFIX = "creditx://node/"  # DESIGN.md §3: URI SAN of a node's TLS certificate


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    return model.require_aware(value, what)


def iso_z(value: dt.datetime | None) -> str:
    return "never" if value is None else value.isoformat().replace("+00:00", "Z")


# --- the model ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PublicKeyInfo:
    """A member's signing key with its validity window and status (DESIGN.md §3).

    `active` and `verify-only` keys verify what was issued within [not_before, not_after);
    a `revoked` key verifies nothing. The keyid is the SHA-256 of the SPKI (checked).
    """

    keyid: str
    algorithm: str
    spki_der: bytes
    not_before: dt.datetime
    not_after: dt.datetime | None = None
    status: str = ACTIVE
    _key: signing.VerificationKey = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status not in KEY_STATUSES:
            raise InvalidInput(
                f"key {self.keyid}: status must be one of {', '.join(KEY_STATUSES)}, "
                f"got {self.status!r}"
            )
        try:
            key = signing.VerificationKey(self.keyid, self.algorithm, bytes(self.spki_der))
        except UntrustedKey as exc:
            raise InvalidInput(f"signing key: {exc.message}") from None
        object.__setattr__(self, "spki_der", bytes(self.spki_der))
        object.__setattr__(self, "_key", key)
        not_before = _aware(self.not_before, f"key {self.keyid} not_before")
        object.__setattr__(self, "not_before", not_before)
        if self.not_after is not None:
            not_after = _aware(self.not_after, f"key {self.keyid} not_after")
            if not_after <= not_before:
                raise InvalidInput(
                    f"key {self.keyid}: not_after {iso_z(not_after)} is not after "
                    f"not_before {iso_z(not_before)}"
                )
            object.__setattr__(self, "not_after", not_after)

    @property
    def verification_key(self) -> signing.VerificationKey:
        return self._key

    def valid_at(self, at: dt.datetime) -> bool:
        """May this key vouch for a signature made at `at`? Never when revoked."""
        in_window = self.not_before <= at and (self.not_after is None or at < self.not_after)
        return in_window and self.status != REVOKED


def _check_endpoint(endpoint: str, node_id: str) -> None:
    host, sep, port = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 literal, RFC 3986 §3.2.2
        host = host[1:-1]
    ok = bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
    if not ok or any(c.isspace() or c == "/" for c in host):
        raise InvalidInput(
            f"member {node_id}: endpoint must be host:port like node.example.cn:7443, "
            f"got {endpoint!r}"
        )


def _names_in_certificate(cert: x509.Certificate) -> set[str]:
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(NODE_URI_PREFIX):
            names.add(uri[len(NODE_URI_PREFIX) :])
    return names


def _check_verifier_key(node_id: str, what: str, vkey: str, key_type: int) -> None:
    """An empty key is absent (a list signed before DESIGN.md §5 Member 9-10); a present one
    must parse and be named for this member's log or witness key, of the matching type."""
    if not vkey:
        return
    expected = notes.log_origin(node_id) if what == "log" else notes.witness_key_name(node_id)
    try:
        verifier = notes.NoteVerifier.from_text(vkey)
    except InvalidInput:
        raise InvalidInput(f"member {node_id}: its {what} verifier key is malformed") from None
    if verifier.name != expected or verifier.signature_type != key_type:
        raise InvalidInput(
            f"member {node_id}: its {what} verifier key must be named {expected} "
            f"(type 0x{key_type:02x})"
        )


@dataclasses.dataclass(frozen=True)
class Member:
    """One node of a zone: identity, endpoint, TLS anchor and signing keys.

    The TLS certificate must name the node (CN or URI SAN `creditx://node/<id>`, DESIGN.md §3)
    and `tls_cert_sha256` must be the lowercase hex SHA-256 of its DER. `log_verifier_key` and
    `witness_verifier_key` (DESIGN.md §5 Member 9, 10; empty in lists signed before them) are
    signed-note verifier keys named for this node's log and witness key, so a receipt or a
    cosignature verifies from the signed list alone.
    """

    node_id: str
    name: str
    division_code: str
    endpoint: str
    tls_cert_der: bytes
    tls_cert_sha256: str
    signing_keys: tuple[PublicKeyInfo, ...] = ()
    roles: tuple[str, ...] = ("node",)
    log_verifier_key: str = ""
    witness_verifier_key: str = ""

    def __post_init__(self) -> None:
        model.require_node_id(self.node_id, "member node id")
        if not self.name.strip():
            raise InvalidInput(f"member {self.node_id}: name must not be empty")
        if self.division_code != self.node_id[3:]:
            raise InvalidInput(
                f"member {self.node_id}: division code must be {self.node_id[3:]} "
                f"(the node id's), got {self.division_code!r}"
            )
        if not divisions.is_plausible_division(self.division_code):
            raise InvalidInput(
                f"member {self.node_id}: {self.division_code} is not a GB/T 2260 division code"
            )
        _check_endpoint(self.endpoint, self.node_id)
        der = bytes(self.tls_cert_der)
        object.__setattr__(self, "tls_cert_der", der)
        actual = hashlib.sha256(der).hexdigest()
        if self.tls_cert_sha256 != actual:
            raise InvalidInput(
                f"member {self.node_id}: tls_cert_sha256 {self.tls_cert_sha256!r} is not the "
                f"SHA-256 of its certificate ({actual})"
            )
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise InvalidInput(
                f"member {self.node_id}: tls_cert_der is not a DER X.509 certificate ({exc})"
            ) from None
        if self.node_id not in _names_in_certificate(cert):
            raise InvalidInput(
                f"member {self.node_id}: its TLS certificate names "
                f"{sorted(_names_in_certificate(cert)) or 'nobody'}, not {self.node_id}"
            )
        keys = tuple(self.signing_keys)
        keyids = [k.keyid for k in keys]
        if len(set(keyids)) != len(keyids):
            raise InvalidInput(f"member {self.node_id}: a signing key is listed twice")
        object.__setattr__(self, "signing_keys", keys)
        roles = tuple(self.roles)
        for role in roles:
            if not ROLE_RE.match(role):
                raise InvalidInput(
                    f"member {self.node_id}: role {role!r} must be a lower-case slug like 'node'"
                )
        object.__setattr__(self, "roles", roles)
        _check_verifier_key(self.node_id, "log", self.log_verifier_key, notes.SIG_ED25519)
        _check_verifier_key(
            self.node_id, "witness", self.witness_verifier_key, notes.SIG_COSIGNATURE_V1
        )

    def signing_key_info(self, keyid: str) -> PublicKeyInfo | None:
        return next((k for k in self.signing_keys if k.keyid == keyid), None)

    @property
    def tls_cert_pem(self) -> bytes:
        cert = x509.load_der_x509_certificate(self.tls_cert_der)
        return cert.public_bytes(serialization.Encoding.PEM)


def check_members(zone: str, members: Iterable[Member]) -> None:
    """A certificate or signing key must identify exactly one member of a zone."""
    members = list(members)
    for what, values in (
        ("node id", [m.node_id for m in members]),
        ("TLS certificate", [m.tls_cert_sha256 for m in members]),
        ("signing key", [k.keyid for m in members for k in m.signing_keys]),
    ):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise InvalidInput(
                    f"trust list {zone}: {what} {value} appears in more than one member"
                )
            seen.add(value)


@dataclasses.dataclass(frozen=True)
class TrustList:
    """A zone's membership at one version; members are unique by node id, TLS certificate and
    signing key (so a certificate or key identifies exactly one member)."""

    zone: str
    version: int
    issued_at: dt.datetime
    expires_at: dt.datetime
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        if not ZONE_RE.match(self.zone):
            raise InvalidInput(f"zone must be a lower-case slug like 'hjjw', got {self.zone!r}")
        if self.version < 1:
            raise InvalidInput(f"trust list {self.zone}: version starts at 1, got {self.version}")
        issued = _aware(self.issued_at, "trust list issued_at")
        expires = _aware(self.expires_at, "trust list expires_at")
        if expires <= issued:
            raise InvalidInput(
                f"trust list {self.zone} v{self.version}: expires_at {iso_z(expires)} is not "
                f"after issued_at {iso_z(issued)}"
            )
        object.__setattr__(self, "issued_at", issued)
        object.__setattr__(self, "expires_at", expires)
        members = tuple(self.members)
        check_members(self.zone, members)
        object.__setattr__(self, "members", members)

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.node_id == node_id), None)
