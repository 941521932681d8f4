"""DSSE envelopes (DESIGN.md §4): sign a payload under a payload type, verify the bytes received.

Invariants: a signature always covers PAE(payload_type, payload) of the exact bytes carried; a
payload is handed out only after a trusted key's signature over it verified. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from node.errors import (
    BadSignature,
    InvalidInput,
    KeyMaterialError,
    UnsignedEnvelope,
    UntrustedKey,
)

ED25519 = "ed25519"
ECDSA_P256 = "ecdsa-p256-sha256"
ALGORITHMS = (ED25519, ECDSA_P256)

# DESIGN.md §4: one payload type per signed object.
PAYLOAD_CREDIT_RESULT = "application/vnd.creditx.credit-result.v1+proto"
PAYLOAD_REVOCATION = "application/vnd.creditx.revocation.v1+proto"
PAYLOAD_TRUST_LIST = "application/vnd.creditx.trust-list.v1+proto"
PAYLOAD_CHANGE_BATCH = "application/vnd.creditx.change-batch.v1+proto"

_PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: the exact bytes every signature covers.

    "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload, LEN = byte length in ASCII decimal.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def keyid_for_spki(spki_der: bytes) -> str:
    """DESIGN.md §3: keyid = lowercase hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der).hexdigest()


def _spki_der(public_key: _PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Signer(Protocol):
    """Anything that signs DSSE messages with one key (pluggable: SM2 is planned, §3)."""

    @property
    def keyid(self) -> str: ...

    @property
    def algorithm(self) -> str: ...

    @property
    def spki_der(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class _KeySigner:
    """What both signers share: the key's SPKI, its keyid (DESIGN.md §3) and its public half."""

    algorithm: str

    def __init__(self, public_key: _PublicKey) -> None:
        self._spki_der = _spki_der(public_key)
        self._keyid = keyid_for_spki(self._spki_der)

    @property
    def keyid(self) -> str:
        return self._keyid

    @property
    def spki_der(self) -> bytes:
        return self._spki_der

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self._keyid, self.algorithm, self._spki_der)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keyid={self._keyid[:16]}…)"


class Ed25519Signer(_KeySigner):
    """An Ed25519 signing key (RFC 8032, pure Ed25519 over the PAE bytes)."""

    algorithm = ED25519

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise KeyMaterialError(
                f"an Ed25519 signer needs an Ed25519 private key, got {type(private_key).__name__}"
            )
        super().__init__(private_key.public_key())
        self._private_key = private_key

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @property
    def private_key(self) -> ed25519.Ed25519PrivateKey:
        return self._private_key

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)


class EcdsaP256Signer(_KeySigner):
    """An ECDSA P-256 signing key; signatures are DER-encoded (r, s) over SHA-256 of the PAE."""

    algorithm = ECDSA_P256

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise KeyMaterialError(
                f"an {ECDSA_P256} signer needs a P-256 private key, "
                f"got {type(private_key).__name__}"
            )
        super().__init__(private_key.public_key())
        self._private_key = private_key

    @classmethod
    def generate(cls) -> EcdsaP256Signer:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return self._private_key

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message, ec.ECDSA(hashes.SHA256()))


def _algorithm_of(public_key: object) -> str | None:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return ECDSA_P256
    return None


@dataclasses.dataclass(frozen=True)
class VerificationKey:
    """A public key that may verify signatures: checked once, on construction.

    Raises UntrustedKey when the algorithm is unknown, the SPKI does not parse, the SPKI's key
    type is not the named algorithm, or the keyid is not the SHA-256 of the SPKI.
    """

    keyid: str
    algorithm: str
    spki_der: bytes
    _public_key: _PublicKey = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise UntrustedKey(
                f"key {self.keyid}: algorithm {self.algorithm!r} is not accepted "
                f"(use {ED25519} or {ECDSA_P256})"
            )
        try:
            public_key = serialization.load_der_public_key(self.spki_der)
        except (ValueError, TypeError) as exc:
            raise UntrustedKey(
                f"key {self.keyid}: spki_der is not a DER SubjectPublicKeyInfo ({exc})"
            ) from None
        actual = _algorithm_of(public_key)
        if actual != self.algorithm:
            raise UntrustedKey(
                f"key {self.keyid} is declared {self.algorithm} but its SPKI holds "
                f"{actual or type(public_key).__name__}"
            )
        if self.keyid != keyid_for_spki(self.spki_der):
            raise UntrustedKey(
                f"keyid {self.keyid} is not the SHA-256 of its SPKI "
                f"(expected {keyid_for_spki(self.spki_der)})"
            )
        assert isinstance(public_key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
        object.__setattr__(self, "_public_key", public_key)

    @classmethod
    def from_spki_der(cls, spki_der: bytes, algorithm: str | None = None) -> VerificationKey:
        """The key for a DER SPKI; the algorithm is read from the SPKI unless one is named."""
        if algorithm is None:
            try:
                algorithm = _algorithm_of(serialization.load_der_public_key(spki_der)) or "unknown"
            except (ValueError, TypeError) as exc:
                raise UntrustedKey(f"not a DER SubjectPublicKeyInfo ({exc})") from None
        return cls(keyid_for_spki(spki_der), algorithm, spki_der)

    def verify(self, message: bytes, sig: bytes) -> bool:
        """True when `sig` is this key's signature over `message`; False for any bad signature."""
        try:
            if isinstance(self._public_key, ed25519.Ed25519PublicKey):
                self._public_key.verify(sig, message)
            else:
                self._public_key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclasses.dataclass(frozen=True)
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclasses.dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: the payload bytes exactly as signed, and its signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def to_json(self) -> str:
        """DSSE's standard JSON form (standard base64, padded)."""
        return json.dumps(
            {
                "payloadType": self.payload_type,
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "signatures": [
                    {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                    for s in self.signatures
                ],
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        """Parse DSSE's JSON form; raise InvalidInput naming what is malformed."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"DSSE envelope is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidInput("DSSE envelope must be a JSON object")
        payload_type = _require_str(doc, "payloadType", "DSSE envelope")
        payload = _decode_b64(_require_str(doc, "payload", "DSSE envelope"), "payload")
        raw_sigs = doc.get("signatures")
        if not isinstance(raw_sigs, list):
            raise InvalidInput("DSSE envelope field 'signatures' must be a list")
        signatures = []
        for i, raw in enumerate(raw_sigs):
            where = f"DSSE signature {i}"
            if not isinstance(raw, dict):
                raise InvalidInput(f"{where} must be a JSON object")
            keyid = raw.get("keyid", "")  # DSSE: keyid is optional; we then cannot match it
            if not isinstance(keyid, str):
                raise InvalidInput(f"{where}: 'keyid' must be a string")
            sig = _decode_b64(_require_str(raw, "sig", where), f"signatures[{i}].sig")
            signatures.append(EnvelopeSignature(keyid, sig))
        return cls(payload_type, payload, tuple(signatures))


@dataclasses.dataclass(frozen=True)
class VerifiedPayload:
    """Payload bytes whose signature verified, and the keyid that signed them."""

    payload: bytes
    keyid: str


def sign_envelope(payload_type: str, payload: bytes, signers: Sequence[Signer]) -> Envelope:
    """Sign PAE(payload_type, payload) with every signer (DESIGN.md §4)."""
    if not signers:
        raise InvalidInput("sign_envelope needs at least one signer")
    message = pae(payload_type, payload)
    return Envelope(
        payload_type,
        payload,
        tuple(EnvelopeSignature(s.keyid, s.sign(message)) for s in signers),
    )


def verify_envelope(
    envelope: Envelope, *, payload_type: str, keys: Mapping[str, VerificationKey]
) -> VerifiedPayload:
    """Return the payload once a signature by one of `keys` verifies over the received bytes.

    Raises BadSignature when the payload type is not the expected one or no signature by a
    known key verifies (its subclass UnsignedEnvelope when there is no signature at all);
    UntrustedKey when no signature names a known keyid.
    """
    # 1. The payload type is signed, but we check it first so a valid signature over another
    #    kind of object is refused with a clear reason (type confusion).
    if envelope.payload_type != payload_type:
        raise BadSignature(
            f"envelope payload type is {envelope.payload_type!r}, expected {payload_type!r}"
        )
    if not envelope.signatures:
        raise UnsignedEnvelope("envelope carries no signatures")
    # 2. PAE over the bytes as received, never a re-serialization (§4).
    message = pae(envelope.payload_type, envelope.payload)
    tried: list[str] = []
    for signature in envelope.signatures:
        key = keys.get(signature.keyid)
        if key is None or key.keyid != signature.keyid:
            continue
        tried.append(signature.keyid)
        if key.verify(message, signature.sig):
            return VerifiedPayload(envelope.payload, signature.keyid)
    if not tried:
        named = ", ".join(s.keyid or "(no keyid)" for s in envelope.signatures)
        raise UntrustedKey(f"no signature is by a trusted key (envelope signed by: {named})")
    raise BadSignature(
        f"signature by key {', '.join(tried)} does not verify over the {payload_type} payload"
    )


def _require_str(doc: Mapping[str, Any], field: str, where: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str):
        raise InvalidInput(f"{where} field {field!r} must be a string")
    return value


def _decode_b64(text: str, field: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the DSSE envelope spec allows either)."""
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise InvalidInput(f"{field} mixes standard and URL-safe base64 alphabets")
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64") from None
