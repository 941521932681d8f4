"""A raw secret sealed under a passphrase at rest (ADR 0006): scrypt (RFC 7914) derives an
AES-256-GCM key (NIST SP 800-38D) that encrypts the secret.

PKCS#8 wraps private keys only, so a raw secret (the subject HMAC key) is sealed in this small
JSON document instead. The associated data is the document without its ciphertext, so the
purpose and every parameter are authenticated: a secret sealed for one purpose does not open as
another's, and an edited header fails like a wrong passphrase. Pure functions on bytes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from node import b64
from node.errors import KeyMaterialError

FORMAT = "creditnode-sealed-secret"
VERSION = 1
KDF_SCRYPT = "scrypt"
CIPHER_AES_256_GCM = "aes-256-gcm"
# RFC 7914 §2 cost parameters (N=2^15, r=8: 32 MiB per derivation; docs/adr/0006): a key is
# unsealed once per process, so the cost falls on a guesser, not on serving.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MAX_SCRYPT_MEMORY = 2**30  # 128·N·r bytes (RFC 7914 §2): bounds what a crafted file costs us
SALT_BYTES = 16
NONCE_BYTES = 12  # SP 800-38D §8.2: 96-bit nonce, fresh per sealing
KEY_BYTES = 32


class WrongPassphrase(KeyMaterialError):
    """The passphrase does not open the sealed secret (or the document was altered)."""


def is_sealed(data: bytes) -> bool:
    """Whether `data` looks like a sealed-secret document (cheap; `unseal` checks it all)."""
    return data.lstrip().startswith(b"{") and FORMAT.encode("ascii") in data


def seal(secret: bytes, passphrase: bytes, purpose: str) -> bytes:
    """The sealed document for `secret`, with a fresh salt and nonce."""
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "purpose": purpose,
        "kdf": {
            "name": KDF_SCRYPT,
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": b64.encode(os.urandom(SALT_BYTES)),
        },
        "cipher": {"name": CIPHER_AES_256_GCM, "nonce": b64.encode(os.urandom(NONCE_BYTES))},
    }
    key = _derive_key(passphrase, header["kdf"])
    nonce = b64.decode(header["cipher"]["nonce"], "nonce", KeyMaterialError)
    ciphertext = AESGCM(key).encrypt(nonce, secret, _associated_data(header))
    doc = {**header, "ciphertext": b64.encode(ciphertext)}
    return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def unseal(data: bytes, passphrase: bytes, purpose: str) -> bytes:
    """The secret in a sealed document; `WrongPassphrase` when it does not authenticate."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyMaterialError("not a sealed-secret document (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyMaterialError(f"not a {FORMAT} document")
    if doc.get("version") != VERSION:
        raise KeyMaterialError(f"{FORMAT} version {doc.get('version')!r} is not supported")
    if doc.get("purpose") != purpose:
        raise KeyMaterialError(f"holds a secret sealed for {doc.get('purpose')!r}, not {purpose!r}")
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != KDF_SCRYPT:
        raise KeyMaterialError(f"kdf must be {KDF_SCRYPT}")
    if not isinstance(cipher, dict) or cipher.get("name") != CIPHER_AES_256_GCM:
        raise KeyMaterialError(f"cipher must be {CIPHER_AES_256_GCM}")
    nonce = b64.decode(cipher.get("nonce"), "cipher.nonce", KeyMaterialError)
    if len(nonce) != NONCE_BYTES:
        raise KeyMaterialError(f"cipher.nonce must be {NONCE_BYTES} bytes")
    ciphertext = b64.decode(doc.get("ciphertext"), "ciphertext", KeyMaterialError)
    header = {k: v for k, v in doc.items() if k != "ciphertext"}
    key = _derive_key(passphrase, kdf)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _associated_data(header))
    except InvalidTag:
        raise WrongPassphrase("the passphrase does not open it (or it was altered)") from None


def _derive_key(passphrase: bytes, kdf: dict[str, Any]) -> bytes:
    n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
    # RFC 7914 §2: N is a power of two greater than 1; r and p are small positive integers.
    if not (isinstance(n, int) and n > 1 and n & (n - 1) == 0):
        raise KeyMaterialError("kdf.n must be a power of two")
    if not (isinstance(r, int) and r >= 1 and isinstance(p, int) and 1 <= p <= 16):
        raise KeyMaterialError("kdf.r must be positive and kdf.p 1..16")
    if 128 * n * r > MAX_SCRYPT_MEMORY:
        raise KeyMaterialError(f"kdf asks for more than {MAX_SCRYPT_MEMORY >> 20} MiB")
    salt = b64.decode(kdf.get("salt"), "kdf.salt", KeyMaterialError)
    if len(salt) < SALT_BYTES:
        raise KeyMaterialError(f"kdf.salt must be at least {SALT_BYTES} bytes")
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase)


def _associated_data(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
