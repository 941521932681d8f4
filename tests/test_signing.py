"""DSSE envelopes: PAE bytes, both algorithms, tampering, JSON form and a reproducible vector."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import pathlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from node import signing
from node.errors import (
    BadSignature,
    InvalidInput,
    KeyMaterialError,
    UnsignedEnvelope,
    UntrustedKey,
)
from node.signing import (
    ECDSA_P256,
    ED25519,
    PAYLOAD_CREDIT_RESULT,
    PAYLOAD_REVOCATION,
    EcdsaP256Signer,
    Ed25519Signer,
    Envelope,
    EnvelopeSignature,
    VerificationKey,
    pae,
    sign_envelope,
    verify_envelope,
)

VECTORS = pathlib.Path(__file__).parent / "vectors" / "dsse"
# RFC 8032 §7.1 TEST 1 public key, for the seed used by the vector file.
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def keys_of(*signers: Ed25519Signer | EcdsaP256Signer) -> dict[str, VerificationKey]:
    return {s.keyid: s.verification_key() for s in signers}


def test_payload_type_strings_are_the_wire_contract() -> None:
    assert signing.PAYLOAD_CREDIT_RESULT == "application/vnd.creditx.credit-result.v1+proto"
    assert signing.PAYLOAD_REVOCATION == "application/vnd.creditx.revocation.v1+proto"
    assert signing.PAYLOAD_TRUST_LIST == "application/vnd.creditx.trust-list.v1+proto"
    assert signing.PAYLOAD_CHANGE_BATCH == "application/vnd.creditx.change-batch.v1+proto"
    assert (ED25519, ECDSA_P256) == ("ed25519", "ecdsa-p256-sha256")


@pytest.mark.parametrize(
    ("payload_type", "payload", "expected"),
    [
        (
            PAYLOAD_CREDIT_RESULT,
            b"hello",
            b"DSSEv1 46 application/vnd.creditx.credit-result.v1+proto 5 hello",
        ),
        (PAYLOAD_REVOCATION, b"", b"DSSEv1 43 application/vnd.creditx.revocation.v1+proto 0 "),
        # LEN counts bytes, not characters: "信用" is 6 bytes of UTF-8.
        ("信用", b"a b", "DSSEv1 6 信用 3 a b".encode()),
        # The DSSE spec's own example (secure-systems-lab/dsse protocol.md).
        (
            "http://example.com/HelloWorld",
            b"hello world",
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world",
        ),
    ],
)
def test_pae_matches_bytes_written_by_hand(
    payload_type: str, payload: bytes, expected: bytes
) -> None:
    assert pae(payload_type, payload) == expected


def test_signature_covers_exactly_the_pae_bytes() -> None:
    signer = Ed25519Signer.generate()
    envelope = sign_envelope(PAYLOAD_CREDIT_RESULT, b"hello", [signer])
    public = signer.private_key.public_key()
    # Verified with the library directly, over the literal PAE, not via our verifier.
    public.verify(
        envelope.signatures[0].sig,
        b"DSSEv1 46 application/vnd.creditx.credit-result.v1+proto 5 hello",
    )


@pytest.mark.parametrize("make_signer", [Ed25519Signer.generate, EcdsaP256Signer.generate])
def test_both_algorithms_sign_and_verify(make_signer: object) -> None:
    signer = make_signer()  # type: ignore[operator]
    envelope = sign_envelope(PAYLOAD_CREDIT_RESULT, b"\x0a\x03abc", [signer])
    verified = verify_envelope(envelope, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys_of(signer))
    assert verified.payload == b"\x0a\x03abc"
    assert verified.keyid == signer.keyid
    assert signer.keyid == hashlib.sha256(signer.spki_der).hexdigest()


def test_ecdsa_signature_is_der_over_sha256() -> None:
    signer = EcdsaP256Signer.generate()
    envelope = sign_envelope(PAYLOAD_CREDIT_RESULT, b"x", [signer])
    signer.private_key.public_key().verify(
        envelope.signatures[0].sig, pae(PAYLOAD_CREDIT_RESULT, b"x"), ec.ECDSA(hashes.SHA256())
    )
    assert envelope.signatures[0].sig[0] == 0x30  # DER SEQUENCE, not raw r||s


def _tamper_payload(env: Envelope) -> Envelope:
    return dataclasses.replace(env, payload=env.payload + b"!")


def _tamper_signature(env: Envelope) -> Envelope:
    sig = env.signatures[0]
    flipped = bytes([sig.sig[0] ^ 0x01]) + sig.sig[1:]
    return dataclasses.replace(env, signatures=(EnvelopeSignature(sig.keyid, flipped),))


def _tamper_keyid(env: Envelope) -> Envelope:
    sig = env.signatures[0]
    return dataclasses.replace(env, signatures=(EnvelopeSignature("00" * 32, sig.sig),))


def _tamper_type(env: Envelope) -> Envelope:
    return dataclasses.replace(env, payload_type=PAYLOAD_REVOCATION)


@pytest.mark.parametrize("make_signer", [Ed25519Signer.generate, EcdsaP256Signer.generate])
@pytest.mark.parametrize(
    ("tamper", "error", "message"),
    [
        (_tamper_payload, BadSignature, "does not verify"),
        (_tamper_signature, BadSignature, "does not verify"),
        (_tamper_keyid, UntrustedKey, "no signature is by a trusted key"),
        (_tamper_type, BadSignature, "payload type"),
    ],
)
def test_tampered_envelope_is_rejected(
    make_signer: object, tamper: object, error: type[Exception], message: str
) -> None:
    signer = make_signer()  # type: ignore[operator]
    envelope = tamper(sign_envelope(PAYLOAD_CREDIT_RESULT, b"payload", [signer]))  # type: ignore[operator]
    with pytest.raises(error, match=message):
        verify_envelope(envelope, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys_of(signer))


def test_signature_under_another_payload_type_is_refused_even_when_expected_type_matches() -> None:
    signer = Ed25519Signer.generate()
    revocation = sign_envelope(PAYLOAD_REVOCATION, b"payload", [signer])
    relabelled = dataclasses.replace(revocation, payload_type=PAYLOAD_CREDIT_RESULT)
    with pytest.raises(BadSignature, match="does not verify"):
        verify_envelope(relabelled, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys_of(signer))


def test_unknown_key_is_untrusted_and_unsigned_envelope_is_refused() -> None:
    signer, stranger = Ed25519Signer.generate(), Ed25519Signer.generate()
    envelope = sign_envelope(PAYLOAD_CREDIT_RESULT, b"p", [stranger])
    with pytest.raises(UntrustedKey, match=stranger.keyid):
        verify_envelope(envelope, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys_of(signer))
    unsigned = Envelope(PAYLOAD_CREDIT_RESULT, b"p", ())
    with pytest.raises(UnsignedEnvelope, match="no signatures"):
        verify_envelope(unsigned, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys_of(signer))


def test_one_good_signature_among_unknown_ones_is_enough() -> None:
    ours, theirs = EcdsaP256Signer.generate(), Ed25519Signer.generate()
    envelope = sign_envelope(PAYLOAD_CREDIT_RESULT, b"p", [theirs, ours])
    verified = verify_envelope(envelope, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys_of(ours))
    assert verified.keyid == ours.keyid


def test_key_listed_under_a_foreign_keyid_never_verifies() -> None:
    signer, other = Ed25519Signer.generate(), Ed25519Signer.generate()
    envelope = sign_envelope(PAYLOAD_CREDIT_RESULT, b"p", [signer])
    # A mapping that files another key under the signer's keyid must not be trusted for it.
    keys = {signer.keyid: other.verification_key()}
    with pytest.raises(UntrustedKey):
        verify_envelope(envelope, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys)


def test_verification_key_checks_its_invariants() -> None:
    ed = Ed25519Signer.generate()
    p256 = EcdsaP256Signer.generate()
    assert VerificationKey.from_spki_der(ed.spki_der) == ed.verification_key()
    assert VerificationKey.from_spki_der(p256.spki_der).algorithm == ECDSA_P256
    with pytest.raises(UntrustedKey, match="declared ecdsa-p256-sha256"):
        VerificationKey(ed.keyid, ECDSA_P256, ed.spki_der)
    with pytest.raises(UntrustedKey, match="not the SHA-256 of its SPKI"):
        VerificationKey(p256.keyid, ED25519, ed.spki_der)
    with pytest.raises(UntrustedKey, match="not accepted"):
        VerificationKey(ed.keyid, "rsa", ed.spki_der)
    with pytest.raises(UntrustedKey, match="not a DER"):
        VerificationKey.from_spki_der(b"\x30\x00")
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(UntrustedKey, match="declared ecdsa-p256-sha256"):
        VerificationKey.from_spki_der(p384, ECDSA_P256)


def test_verify_returns_false_on_garbage_signature() -> None:
    for signer in (Ed25519Signer.generate(), EcdsaP256Signer.generate()):
        key = signer.verification_key()
        assert key.verify(b"m", signer.sign(b"m"))
        assert not key.verify(b"m", b"")
        assert not key.verify(b"m", b"\x30\x02\x01")


def test_signers_refuse_the_wrong_kind_of_key() -> None:
    with pytest.raises(KeyMaterialError):
        EcdsaP256Signer(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(KeyMaterialError):
        Ed25519Signer(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]


def test_json_round_trip_keeps_exact_bytes() -> None:
    signers: list[Ed25519Signer | EcdsaP256Signer] = [
        Ed25519Signer.generate(),
        EcdsaP256Signer.generate(),
    ]
    envelope = sign_envelope(PAYLOAD_CREDIT_RESULT, bytes(range(256)), signers)
    again = Envelope.from_json(envelope.to_json())
    assert again == envelope
    assert verify_envelope(again, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys_of(*signers))
    doc = json.loads(envelope.to_json())
    assert set(doc) == {"payloadType", "payload", "signatures"}
    assert set(doc["signatures"][0]) == {"keyid", "sig"}


def test_json_accepts_url_safe_unpadded_base64() -> None:
    payload = b"\xfb\xff\xfe"  # standard base64 "+//+", URL-safe "-__-"
    doc = {"payloadType": "t", "payload": "-__-", "signatures": [{"keyid": "k", "sig": "AQ"}]}
    envelope = Envelope.from_json(json.dumps(doc))
    assert envelope.payload == payload
    assert envelope.signatures[0].sig == b"\x01"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"payload": "", "signatures": []}', "payloadType"),
        ('{"payloadType": "t", "payload": "***", "signatures": []}', "payload is not valid base64"),
        ('{"payloadType": "t", "payload": "a+b_", "signatures": []}', "mixes"),
        ('{"payloadType": "t", "payload": "", "signatures": {}}', "'signatures' must be a list"),
        ('{"payloadType": "t", "payload": "", "signatures": ["x"]}', "signature 0 must be"),
        ('{"payloadType": "t", "payload": "", "signatures": [{"sig": "!"}]}', "sig is not valid"),
        ('{"payloadType": "t", "payload": "", "signatures": [{"keyid": 1, "sig": ""}]}', "keyid"),
    ],
)
def test_malformed_json_is_invalid_input(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Envelope.from_json(text)


def test_named_vector_reproduces_byte_for_byte() -> None:
    vector = json.loads((VECTORS / "ed25519-credit-result.json").read_text(encoding="utf-8"))
    seed = bytes.fromhex(vector["ed25519_seed_hex"])
    signer = Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    spki = base64.b64decode(vector["spki_der_b64"])
    assert spki[-32:].hex() == RFC8032_TEST1_PUBLIC
    assert signer.spki_der == spki
    assert signer.keyid == vector["keyid"] == hashlib.sha256(spki).hexdigest()

    payload = vector["payload_utf8"].encode("utf-8")
    assert pae(vector["payload_type"], payload).hex() == vector["pae_hex"]
    # Ed25519 is deterministic: signing again gives the stored envelope exactly.
    envelope = sign_envelope(vector["payload_type"], payload, [signer])
    assert json.loads(envelope.to_json()) == vector["envelope"]

    stored = Envelope.from_json(json.dumps(vector["envelope"]))
    keys = {signer.keyid: VerificationKey.from_spki_der(spki)}
    verified = verify_envelope(stored, payload_type=PAYLOAD_CREDIT_RESULT, keys=keys)
    assert verified.payload == payload
