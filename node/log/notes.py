"""C2SP signed notes, tlog checkpoints and Ed25519 witness cosignatures (DESIGN.md §7).

Specs: c2sp.org/signed-note (format, key IDs, verifier keys), c2sp.org/tlog-checkpoint (body),
c2sp.org/tlog-cosignature (type 0x04). Note text is trusted only after a known key's signature
over it verified; unknown signatures are kept aside, never trusted. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from node.errors import BadSignature, InvalidInput, KeyMaterialError, UntrustedKey

# signed-note §Signature types.
SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
_SIGNATURE_TYPE_NAMES = {SIG_ED25519: "Ed25519 note key", SIG_COSIGNATURE_V1: "cosignature/v1"}

EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "
# signed-note: verifiers MUST accept at least 16 signatures; we bound the work like Go's
# golang.org/x/mod/sumdb/note does.
MAX_SIGNATURES = 100
_MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1
_COSIGNATURE_LEN = 8 + 64  # u64 timestamp || Ed25519 signature
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_SIZE = re.compile(r"0|[1-9][0-9]*")


def log_origin(node_id: str) -> str:
    """DESIGN.md §7: a node's exchange log origin, also its log key's name."""
    return f"creditx/{node_id}/exchange-log"


def witness_key_name(node_id: str) -> str:
    """DESIGN.md §7: the key name a node cosigns other nodes' checkpoints under."""
    return f"creditx/{node_id}/witness"


def is_valid_key_name(name: str) -> bool:
    """signed-note: key names are non-empty and contain no Unicode spaces and no '+'."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() for c in name)
        and (_CONTROL.search(name) is None)
    )


def key_hash(name: str, signature_type: int, public_key: bytes) -> bytes:
    """signed-note: key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key
    ).digest()[:4]


def _raw_public(private_key: ed25519.Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def _check_text(text: str, what: str) -> None:
    """signed-note: valid UTF-8, no ASCII control characters other than newline."""
    if _CONTROL.search(text):
        raise InvalidInput(f"{what} contains an ASCII control character other than newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8 text") from None


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what} is not valid standard base64") from None


def cosignature_message(body: str, timestamp: int) -> bytes:
    """tlog-cosignature §Ed25519 signed message: header line, time line, whole checkpoint body."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode("utf-8")


@dataclasses.dataclass(frozen=True)
class NoteVerifier:
    """A verifier key: `<name>+<8 hex key ID>+<base64(type byte || 32-byte Ed25519 key)>`.

    Type 0x01 verifies plain Ed25519 note signatures (log checkpoints); type 0x04 verifies
    timestamped witness cosignatures over the same note text.
    """

    name: str
    signature_type: int
    public_key: bytes
    key_hash: bytes = dataclasses.field(init=False)
    _key: ed25519.Ed25519PublicKey = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise InvalidInput(f"key name {self.name!r} must be non-empty, without spaces or '+'")
        if self.signature_type not in _SIGNATURE_TYPE_NAMES:
            raise InvalidInput(
                f"signature type 0x{self.signature_type:02x} is not supported "
                "(0x01 Ed25519 note key, 0x04 cosignature/v1)"
            )
        if len(self.public_key) != 32:
            raise InvalidInput(f"Ed25519 public key must be 32 bytes, got {len(self.public_key)}")
        try:
            key = ed25519.Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise InvalidInput(f"verifier key {self.name}: not an Ed25519 key ({exc})") from None
        object.__setattr__(self, "_key", key)
        object.__setattr__(
            self, "key_hash", key_hash(self.name, self.signature_type, self.public_key)
        )

    @classmethod
    def from_text(cls, vkey: str) -> NoteVerifier:
        """Parse verifier key text; the key ID in it must match the name and key."""
        name, _, rest = vkey.partition("+")
        hash_hex, sep, key64 = rest.partition("+")  # the base64 part may itself contain '+'
        if not sep or len(hash_hex) != 8 or not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
            raise InvalidInput(f"verifier key {vkey!r} is not <name>+<8 hex key ID>+<base64 key>")
        raw = _b64decode(key64, f"verifier key {name!r} public key")
        if len(raw) < 1:
            raise InvalidInput(f"verifier key {name!r} has an empty public key")
        verifier = cls(name, raw[0], raw[1:])
        if verifier.key_hash.hex() != hash_hex:
            raise InvalidInput(
                f"verifier key {name!r} says key ID {hash_hex} but its name and key give "
                f"{verifier.key_hash.hex()}"
            )
        return verifier

    def to_text(self) -> str:
        encoded = base64.b64encode(bytes([self.signature_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    def verify(self, text: str, signature: bytes) -> int | None:
        """Check `signature` (after the key ID) over note `text`.

        Returns None for a valid note signature (type 0x01), the cosignature's timestamp for a
        valid cosignature (type 0x04); raises BadSignature when it does not verify.
        """
        timestamp: int | None = None
        message = text.encode("utf-8")
        if self.signature_type == SIG_COSIGNATURE_V1:
            if len(signature) != _COSIGNATURE_LEN:
                raise BadSignature(
                    f"cosignature by {self.name} is {len(signature)} bytes, expected "
                    f"{_COSIGNATURE_LEN} (8-byte timestamp and Ed25519 signature)"
                )
            (timestamp,) = struct.unpack(">Q", signature[:8])
            if timestamp > _MAX_TIMESTAMP:
                raise BadSignature(f"cosignature by {self.name} has timestamp above 2^63-1")
            message = cosignature_message(text, timestamp)
            signature = signature[8:]
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise BadSignature(
                f"signature by {self.name}+{self.key_hash.hex()} does not verify over the note"
            ) from None
        return timestamp


class _Ed25519NoteKey:
    signature_type: int

    def __init__(self, name: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        if not is_valid_key_name(name):
            raise InvalidInput(f"key name {name!r} must be non-empty, without spaces or '+'")
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise KeyMaterialError(
                f"note key {name} must be an Ed25519 private key, got {type(private_key).__name__}"
            )
        self.name = name
        self._private_key = private_key
        self._verifier = NoteVerifier(name, self.signature_type, _raw_public(private_key))

    @property
    def key_hash(self) -> bytes:
        return self._verifier.key_hash

    def verifier(self) -> NoteVerifier:
        return self._verifier

    def verifier_key_text(self) -> str:
        return self._verifier.to_text()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._verifier.to_text()!r})"


class NoteSigner(_Ed25519NoteKey):
    """Signs note text with Ed25519 (signed-note type 0x01): the log key signs checkpoints."""

    signature_type = SIG_ED25519

    def signature_line(self, text: str) -> str:
        sig = self._private_key.sign(text.encode("utf-8"))
        return _line(self.name, self.key_hash + sig)


class WitnessSigner(_Ed25519NoteKey):
    """Cosigns checkpoints (tlog-cosignature type 0x04). Use one key per witness name: the
    signed message does not commit to the name."""

    signature_type = SIG_COSIGNATURE_V1

    def cosignature_line(self, body: str, timestamp: int) -> str:
        if not 0 <= timestamp <= _MAX_TIMESTAMP:
            raise InvalidInput(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
        sig = self._private_key.sign(cosignature_message(body, timestamp))
        return _line(self.name, self.key_hash + struct.pack(">Q", timestamp) + sig)


def _line(name: str, raw: bytes) -> str:
    return f"{_SIG_PREFIX}{name} {base64.b64encode(raw).decode('ascii')}\n"


@dataclasses.dataclass(frozen=True)
class NoteSignature:
    """One parsed signature line: key name, 4-byte key ID, the bytes after it, the line."""

    name: str
    key_hash: bytes
    signature: bytes
    line: str  # without the final newline


@dataclasses.dataclass(frozen=True)
class VerifiedSignature:
    name: str
    key_hash: bytes
    timestamp: int | None  # set for cosignatures (type 0x04)


@dataclasses.dataclass(frozen=True)
class OpenedNote:
    """A note whose text verified under at least one known key."""

    text: str
    verified: tuple[VerifiedSignature, ...]
    unverified_lines: tuple[str, ...]  # signature lines by keys we do not know

    @property
    def verified_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.verified)

    def timestamp_of(self, name: str) -> int | None:
        """The cosignature time of the named witness, if it cosigned and verified."""
        return next((v.timestamp for v in self.verified if v.name == name), None)


def split_note(note: str) -> tuple[str, tuple[NoteSignature, ...]]:
    """Parse a signed note into its text and signature lines (nothing is verified here).

    signed-note §Format: text ending in newline, a blank line, then one or more lines
    "— <name> base64(4-byte key ID || signature)"; the last blank line separates them.
    """
    _check_text(note, "signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise InvalidInput("signed note has no blank line before its signature lines")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise InvalidInput("signed note must end with signature lines, each ending in newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidInput(f"signed note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    return text, tuple(parse_signature_line(line) for line in lines)


def parse_signature_line(line: str) -> NoteSignature:
    """Parse one "— <name> <base64>" line (a final newline is allowed)."""
    line = line.removesuffix("\n")
    if not line.startswith(_SIG_PREFIX):
        raise InvalidInput(f"signature line {line[:40]!r} does not start with '— '")
    name, sep, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not is_valid_key_name(name) or not encoded:
        raise InvalidInput(f"signature line {line[:40]!r} is not '— <key name> <base64>'")
    raw = _b64decode(encoded, f"signature by {name}")
    if len(raw) < 5:
        raise InvalidInput(f"signature by {name} is too short to hold a key ID and signature")
    return NoteSignature(name, raw[:4], raw[4:], line)


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign note text with Ed25519 note keys; returns the whole signed note.

    Witness keys never sign here: they cosign checkpoints with `cosign_checkpoint`.
    """
    _check_note_text(text)
    if not signers:
        raise InvalidInput("sign_note needs at least one signer")
    for signer in signers:
        if not isinstance(signer, NoteSigner):
            raise InvalidInput(
                f"{signer!r} is not an Ed25519 note key; witness keys use cosign_checkpoint"
            )
    return text + "\n" + "".join(signer.signature_line(text) for signer in signers)


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise InvalidInput("note text must end with a newline")
    _check_text(text, "note text")


def open_note(note: str, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Verify a signed note against known keys (signed-note §Signatures).

    Signatures from unknown (name, key ID) pairs are ignored and returned as unverified lines.
    A known key's signature that does not verify rejects the whole note (BadSignature). With
    no verified signature at all, raises UntrustedKey.
    """
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        previous = known.setdefault((v.name, v.key_hash), v)
        if previous != v:
            raise InvalidInput(
                f"two different verifier keys share name and key ID {v.name}+{v.key_hash.hex()}"
            )
    text, signatures = split_note(note)
    verified: list[VerifiedSignature] = []
    unverified: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_hash))
        if verifier is None:
            if sig.line not in unverified:
                unverified.append(sig.line)
            continue
        if (sig.name, sig.key_hash) in seen:  # a repeated signature by one key counts once
            continue
        seen.add((sig.name, sig.key_hash))
        timestamp = verifier.verify(text, sig.signature)
        verified.append(VerifiedSignature(sig.name, sig.key_hash, timestamp))
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_hash.hex()}" for s in signatures)
        raise UntrustedKey(f"note is not signed by any known key (signed by: {names})")
    return OpenedNote(text, tuple(verified), tuple(unverified))


def add_signature_lines(note: str, lines: Iterable[str]) -> str:
    """Append signature lines (e.g. cosignatures) to a signed note.

    A new line replaces an existing one by the same (name, key ID), so a witness's newer
    cosignature supersedes its older one. Lines are parsed, not verified: verify each with
    `verify_cosignature` before adding it.
    """
    text, existing = split_note(note)
    new = [parse_signature_line(line) for line in lines]
    replaced = {(s.name, s.key_hash) for s in new}
    kept = [s for s in existing if (s.name, s.key_hash) not in replaced]
    merged = kept + new
    if len(merged) > MAX_SIGNATURES:
        raise InvalidInput(f"a note may carry at most {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(s.line + "\n" for s in merged)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise InvalidInput("checkpoint origin must be a non-empty single line")
        _check_text(self.origin, "checkpoint origin")
        if not 0 <= self.size < 2**64:
            raise InvalidInput(f"checkpoint size {self.size} is outside 0..2^64-1")
        if len(self.root_hash) != 32:
            raise InvalidInput(
                f"checkpoint root hash must be 32 bytes (SHA-256), got {len(self.root_hash)}"
            )
        for line in self.extensions:
            if not line or "\n" in line:
                raise InvalidInput("checkpoint extension lines must be non-empty single lines")
            _check_text(line, "checkpoint extension line")

    def to_body(self) -> str:
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note text (tlog-checkpoint §Note text)."""
        if not body.endswith("\n"):
            raise InvalidInput("checkpoint body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise InvalidInput("checkpoint body needs origin, size and root hash lines")
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise InvalidInput(f"checkpoint size {size!r} must be decimal without leading zeroes")
        return cls(origin, int(size), _b64decode(root, "checkpoint root hash"), tuple(extensions))


@dataclasses.dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    note: OpenedNote


def sign_checkpoint(checkpoint: Checkpoint, log_signer: NoteSigner) -> str:
    """The checkpoint as a signed note by the log key (key name SHOULD be the origin)."""
    if log_signer.name != checkpoint.origin:
        raise InvalidInput(
            f"log key name {log_signer.name!r} is not the checkpoint origin {checkpoint.origin!r}"
        )
    return sign_note(checkpoint.to_body(), [log_signer])


def open_checkpoint(
    note: str, log_verifier: NoteVerifier, witnesses: Iterable[NoteVerifier] = ()
) -> VerifiedCheckpoint:
    """Verify a checkpoint note: the log key MUST have signed it and its origin must be the
    log key's name; known witnesses' cosignatures are verified too (see `note.verified`)."""
    if log_verifier.signature_type != SIG_ED25519:
        raise InvalidInput("the log verifier key must be an Ed25519 note key (type 0x01)")
    opened = open_note(note, [log_verifier, *witnesses])
    if not any(
        v.key_hash == log_verifier.key_hash and v.name == log_verifier.name for v in opened.verified
    ):
        raise UntrustedKey(f"checkpoint is not signed by the log key {log_verifier.name}")
    checkpoint = Checkpoint.parse_body(opened.text)
    if checkpoint.origin != log_verifier.name:
        raise BadSignature(
            f"checkpoint origin {checkpoint.origin!r} is not the log {log_verifier.name!r}"
        )
    return VerifiedCheckpoint(checkpoint, opened)


def cosign_checkpoint(body: str, witness: WitnessSigner, timestamp: int) -> str:
    """A tlog-cosignature v1 line (ending in newline) by `witness` over checkpoint `body`."""
    Checkpoint.parse_body(body)  # a witness only ever cosigns a well-formed checkpoint
    _check_note_text(body)
    return witness.cosignature_line(body, timestamp)


def verify_cosignature(line: str, body: str, vkey: NoteVerifier | str) -> int:
    """Verify one witness cosignature line over checkpoint `body`; return its timestamp.

    Raises UntrustedKey when the line is not by `vkey` (name or key ID differ), BadSignature
    when it does not verify, InvalidInput when the line or key is malformed.
    """
    verifier = NoteVerifier.from_text(vkey) if isinstance(vkey, str) else vkey
    if verifier.signature_type != SIG_COSIGNATURE_V1:
        raise InvalidInput(f"{verifier.name} is not a cosignature/v1 (type 0x04) verifier key")
    _check_note_text(body)
    sig = parse_signature_line(line)
    if (sig.name, sig.key_hash) != (verifier.name, verifier.key_hash):
        raise UntrustedKey(
            f"cosignature is by {sig.name}+{sig.key_hash.hex()}, expected "
            f"{verifier.name}+{verifier.key_hash.hex()}"
        )
    timestamp = verifier.verify(body, sig.signature)
    assert timestamp is not None
    return timestamp


def checkpoint_size(note: str) -> int:
    """The tree size a signed checkpoint note states; 0 for no checkpoint ("")."""
    if not note:
        return 0
    text, _ = split_note(note)
    return Checkpoint.parse_body(text).size
