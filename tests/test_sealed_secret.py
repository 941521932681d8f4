"""node.sealed_secret: the at-rest format of the subject HMAC key (issue 9 §7, ADR 0006)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from node import sealed_secret
from node.errors import KeyMaterialError

VECTOR = pathlib.Path(__file__).parent / "vectors" / "sealed_secret" / "subject-hmac-v1.json"


@pytest.fixture
def vector() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(VECTOR.read_text(encoding="utf-8"))
    return doc


def sealed_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode("ascii")


def test_the_v1_vector_opens(vector: dict[str, Any]) -> None:
    """issue 9 §7: a file sealed by v1 keeps opening (the format is part of every home)."""
    data = sealed_bytes(vector["sealed"])
    assert sealed_secret.is_sealed(data)
    secret = sealed_secret.unseal(data, vector["passphrase_utf8"].encode(), vector["purpose"])
    assert secret.hex() == vector["secret_hex"]


def test_seal_round_trips_with_a_fresh_salt_and_nonce() -> None:
    """issue 9 §7: sealing twice gives two different files that open to the same secret."""
    one = sealed_secret.seal(bytes(32), b"pw", "subject-hmac")
    two = sealed_secret.seal(bytes(32), b"pw", "subject-hmac")
    assert one != two
    assert sealed_secret.unseal(one, b"pw", "subject-hmac") == bytes(32)
    assert sealed_secret.unseal(two, b"pw", "subject-hmac") == bytes(32)
    assert not sealed_secret.is_sealed(bytes(32))


def _edit(path: str, value: object) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for name in parents:
            doc = doc[name]
        doc[leaf] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (_edit("ciphertext", "AAAA" + "A" * 60), sealed_secret.WrongPassphrase, "does not open"),
        (_edit("kdf.salt", "AAAAAAAAAAAAAAAAAAAAAA=="), sealed_secret.WrongPassphrase, "open"),
        (_edit("kdf.r", 9), sealed_secret.WrongPassphrase, "does not open"),
        (_edit("purpose", "tls"), KeyMaterialError, "sealed for 'tls'"),
        (_edit("version", 2), KeyMaterialError, "version 2 is not supported"),
        (_edit("kdf.name", "pbkdf2"), KeyMaterialError, "kdf must be scrypt"),
        (_edit("cipher.name", "aes-128-cbc"), KeyMaterialError, "cipher must be aes-256-gcm"),
        (_edit("kdf.n", 2**24), KeyMaterialError, "more than 1024 MiB"),
        (_edit("kdf.n", 1000), KeyMaterialError, "power of two"),
        (_edit("cipher.nonce", "AAAA"), KeyMaterialError, "12 bytes"),
    ],
    ids=[
        "ciphertext",
        "salt",
        "cost",
        "purpose",
        "version",
        "kdf",
        "cipher",
        "huge-n",
        "bad-n",
        "nonce",
    ],
)
def test_an_altered_document_is_refused(
    vector: dict[str, Any], edit: Any, error: type[Exception], message: str
) -> None:
    """issue 9 §7: every header field is authenticated or checked, and a crafted cost cannot
    make the loader spend unbounded memory."""
    doc = json.loads(json.dumps(vector["sealed"]))
    edit(doc)
    with pytest.raises(error, match=message):
        sealed_secret.unseal(sealed_bytes(doc), vector["passphrase_utf8"].encode(), "subject-hmac")


def test_a_wrong_passphrase_is_refused(vector: dict[str, Any]) -> None:
    """issue 9 §7: only the passphrase it was sealed with opens it."""
    with pytest.raises(sealed_secret.WrongPassphrase):
        sealed_secret.unseal(sealed_bytes(vector["sealed"]), b"wrong", vector["purpose"])
