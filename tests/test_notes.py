"""Signed notes, checkpoints and cosignatures against published and named vectors."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from node.errors import BadSignature, InvalidInput, UntrustedKey
from node.log import notes
from node.log.notes import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    WitnessSigner,
    add_signature_lines,
    cosign_checkpoint,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
    split_note,
    verify_cosignature,
)

VECTORS = pathlib.Path(__file__).parent / "vectors" / "notes"


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


GO = vector("golang-sumdb-note.json")
SPEC = vector("c2sp-cosigned-checkpoint.json")
OURS = vector("creditx-cosigned-checkpoint.json")


def seeded(seed_hex: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


def raw_public(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def peter_signer() -> NoteSigner:
    # Go's signer key text: PRIVATE+KEY+<name>+<hash>+base64(0x01 || 32-byte seed).
    raw = base64.b64decode(GO["peter_signer_key"].split("+", 4)[4])
    assert raw[0] == 0x01
    return NoteSigner("PeterNeumann", ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:]))


# --- golang.org/x/mod sumdb/note vectors -----------------------------------------------------


def test_go_verifier_keys_parse_and_print_back() -> None:
    for text in (GO["peter_verifier_key"], GO["enoch_verifier_key"]):
        verifier = NoteVerifier.from_text(text)
        assert verifier.to_text() == text
        assert verifier.signature_type == notes.SIG_ED25519
    assert NoteVerifier.from_text(GO["peter_verifier_key"]).key_hash.hex() == "c74f20a3"


def test_go_signer_key_gives_the_published_verifier_key_and_signature() -> None:
    signer = peter_signer()
    assert signer.verifier_key_text() == GO["peter_verifier_key"]
    # Ed25519 is deterministic: we reproduce Go's TestSign output byte for byte.
    assert sign_note(GO["text"], [signer]) == GO["text"] + "\n" + GO["peter_signature_line"] + "\n"


def test_go_note_opens_with_one_known_and_one_unknown_signature() -> None:
    note = GO["text"] + "\n" + GO["peter_signature_line"] + "\n" + GO["enoch_signature_line"] + "\n"
    peter = NoteVerifier.from_text(GO["peter_verifier_key"])
    enoch = NoteVerifier.from_text(GO["enoch_verifier_key"])

    opened = open_note(note, [peter])
    assert opened.text == GO["text"]
    assert opened.verified_names == ("PeterNeumann",)
    assert opened.unverified_lines == (GO["enoch_signature_line"],)

    both = open_note(note, [peter, enoch])
    assert both.verified_names == ("PeterNeumann", "EnochRoot")
    assert both.unverified_lines == ()

    with pytest.raises(UntrustedKey, match="not signed by any known key"):
        open_note(note, [])


@pytest.mark.parametrize("index", range(2))
def test_go_bad_verifier_keys_are_refused(index: int) -> None:
    with pytest.raises(InvalidInput):
        NoteVerifier.from_text(GO["bad_verifier_keys"][index])


def test_every_single_character_change_of_a_verifier_key_is_refused() -> None:
    text = GO["peter_verifier_key"]
    for i in range(len(text)):
        mangled = text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :]
        with pytest.raises(InvalidInput):
            NoteVerifier.from_text(mangled)
    for cut in (text[:-1], text[1:], text.replace("+", "", 1)):
        with pytest.raises(InvalidInput):
            NoteVerifier.from_text(cut)


def test_go_note_with_corrupted_signature_is_rejected() -> None:
    line = GO["peter_signature_line"]
    corrupted = line[:60] + "ABCD" + line[64:]
    peter = NoteVerifier.from_text(GO["peter_verifier_key"])
    with pytest.raises(BadSignature, match="PeterNeumann\\+c74f20a3"):
        open_note(GO["text"] + "\n" + corrupted + "\n", [peter])


@pytest.mark.parametrize(
    "note",
    [
        GO["text"],  # no signatures
        GO["text"] + "\n",  # blank line, no signature lines
        GO["text"] + "\n" + GO["peter_signature_line"],  # last line without newline
        "\x01" + GO["text"] + "\n" + GO["peter_signature_line"] + "\n",  # control character
        GO["text"] + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
        "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
        GO["text"] + "\n" + GO["peter_signature_line"] + "\nUnexpected line.\n",
        GO["text"] + "\n" + (GO["peter_signature_line"] + "\n") * 101,  # too many signatures
    ],
)
def test_malformed_notes_are_invalid_input(note: str) -> None:
    peter = NoteVerifier.from_text(GO["peter_verifier_key"])
    with pytest.raises(InvalidInput):
        open_note(note, [peter])


def test_repeated_signature_counts_once() -> None:
    peter = NoteVerifier.from_text(GO["peter_verifier_key"])
    note = GO["text"] + "\n" + (GO["peter_signature_line"] + "\n") * 3
    assert open_note(note, [peter]).verified_names == ("PeterNeumann",)


def test_two_different_keys_with_one_name_and_key_id_are_refused() -> None:
    peter = NoteVerifier.from_text(GO["peter_verifier_key"])
    # Not a real collision; we only need two unequal verifiers that claim the same identity.
    impostor = NoteVerifier("PeterNeumann", notes.SIG_COSIGNATURE_V1, peter.public_key)
    object.__setattr__(impostor, "key_hash", peter.key_hash)
    note = GO["text"] + "\n" + GO["peter_signature_line"] + "\n"
    with pytest.raises(InvalidInput, match="share name and key ID"):
        open_note(note, [peter, impostor])


# --- the key ID rule, computed independently --------------------------------------------------


@pytest.mark.parametrize("signature_type", [notes.SIG_ED25519, notes.SIG_COSIGNATURE_V1])
def test_key_hash_is_sha256_of_name_newline_type_and_key(signature_type: int) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = "creditx/cn-330500/witness"
    expected = hashlib.sha256(
        name.encode() + b"\x0a" + bytes([signature_type]) + raw_public(key)
    ).digest()[:4]
    signer_class = NoteSigner if signature_type == notes.SIG_ED25519 else WitnessSigner
    signer = signer_class(name, key)
    assert signer.key_hash == expected
    hash_hex, key64 = signer.verifier_key_text().split("+", 2)[1:]
    assert hash_hex == expected.hex()
    assert base64.b64decode(key64) == bytes([signature_type]) + raw_public(key)


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_body_round_trip_with_extension_lines() -> None:
    cp = Checkpoint("creditx/cn-330500/exchange-log", 0, hashlib.sha256(b"").digest(), ("ext",))
    body = cp.to_body()
    assert body == (
        "creditx/cn-330500/exchange-log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n"
    )
    assert Checkpoint.parse_body(body) == cp


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("o\n1\n" + "A" * 43 + "=", "end with a newline"),
        ("o\n1\n", "origin, size and root"),
        ("o\n01\n" + base64.b64encode(bytes(32)).decode() + "\n", "leading zeroes"),
        ("o\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n", "decimal"),
        ("o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n", "32 bytes"),
        ("o\n1\n!!!!\n", "base64"),
        ("\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", "origin"),
        ("o\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n", "extension"),
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Checkpoint.parse_body(body)


def test_spec_example_parses_and_its_cosignature_carries_the_spec_timestamp() -> None:
    text, signatures = split_note(SPEC["note"])
    cp = Checkpoint.parse_body(text)
    assert (cp.origin, cp.size) == (SPEC["origin"], SPEC["size"])
    assert base64.b64encode(cp.root_hash).decode() == SPEC["root_hash_b64"]
    log_sig, witness_sig = signatures
    assert log_sig.name == SPEC["origin"] and len(log_sig.signature) == 64
    # tlog-cosignature: key ID || u64 big-endian timestamp || Ed25519 signature.
    assert witness_sig.name == "witness.example.com/w1"
    assert len(witness_sig.signature) == 8 + 64
    assert struct.unpack(">Q", witness_sig.signature[:8])[0] == SPEC["witness_timestamp"]


def test_names_of_a_nodes_log_and_witness() -> None:
    assert notes.log_origin("cn-330500") == "creditx/cn-330500/exchange-log"
    assert notes.witness_key_name("cn-330500") == "creditx/cn-330500/witness"


# --- our named vector: a checkpoint signed by a log and cosigned by a witness ------------------


def ours_keys() -> tuple[NoteSigner, WitnessSigner]:
    log = NoteSigner(notes.log_origin("cn-330500"), seeded(OURS["log_seed_hex"]))
    witness = WitnessSigner(notes.witness_key_name("cn-330100"), seeded(OURS["witness_seed_hex"]))
    return log, witness


def test_named_vector_reproduces_and_verifies() -> None:
    log, witness = ours_keys()
    assert log.verifier_key_text() == OURS["log_verifier_key"]
    assert witness.verifier_key_text() == OURS["witness_verifier_key"]
    cp = Checkpoint.parse_body(OURS["body"])
    line = cosign_checkpoint(OURS["body"], witness, OURS["cosignature_timestamp"])
    assert line == OURS["cosignature_line"]
    assert add_signature_lines(sign_checkpoint(cp, log), [line]) == OURS["note"]

    log_vkey = NoteVerifier.from_text(OURS["log_verifier_key"])
    witness_vkey = NoteVerifier.from_text(OURS["witness_verifier_key"])
    verified = open_checkpoint(OURS["note"], log_vkey, [witness_vkey])
    assert verified.checkpoint == cp
    assert verified.note.timestamp_of(witness.name) == OURS["cosignature_timestamp"]
    assert verify_cosignature(line, OURS["body"], OURS["witness_verifier_key"]) == 1795000000


def test_cosignature_bytes_follow_the_spec_layout() -> None:
    _, witness = ours_keys()
    raw = base64.b64decode(OURS["cosignature_line"].split(" ")[2])
    key_id, timestamp, sig = raw[:4], raw[4:12], raw[12:]
    assert key_id == witness.key_hash
    assert int.from_bytes(timestamp, "big") == OURS["cosignature_timestamp"]
    message = b"cosignature/v1\ntime 1795000000\n" + OURS["body"].encode()
    # Checked with the library, not our verifier: the signed message is exactly the spec's.
    seeded(OURS["witness_seed_hex"]).public_key().verify(sig, message)


def test_open_checkpoint_requires_the_log_signature() -> None:
    log, witness = ours_keys()
    body = OURS["body"]
    only_cosigned = body + "\n" + cosign_checkpoint(body, witness, 5)
    with pytest.raises(UntrustedKey, match="not signed by the log key"):
        open_checkpoint(only_cosigned, log.verifier(), [witness.verifier()])


def test_open_checkpoint_refuses_an_origin_that_is_not_the_log() -> None:
    other_log = NoteSigner(notes.log_origin("cn-330100"), ed25519.Ed25519PrivateKey.generate())
    cp = Checkpoint(notes.log_origin("cn-330500"), 1, bytes(32))
    note = sign_note(cp.to_body(), [other_log])
    with pytest.raises(BadSignature, match="is not the log"):
        open_checkpoint(note, other_log.verifier())
    with pytest.raises(InvalidInput, match="not the checkpoint origin"):
        sign_checkpoint(cp, other_log)


def _change_size(note: str) -> str:
    return note.replace("\n8\n", "\n9\n", 1)


def _change_signature(note: str) -> str:
    lines = note.split("\n")
    log_line = lines[4]
    raw = bytearray(base64.b64decode(log_line.split(" ")[2]))
    raw[10] ^= 0x01
    lines[4] = " ".join([*log_line.split(" ")[:2], base64.b64encode(bytes(raw)).decode()])
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("tamper", "error"), [(_change_size, BadSignature), (_change_signature, BadSignature)]
)
def test_tampered_checkpoint_is_rejected(tamper: Any, error: type[Exception]) -> None:
    log_vkey = NoteVerifier.from_text(OURS["log_verifier_key"])
    with pytest.raises(error):
        open_checkpoint(tamper(OURS["note"]), log_vkey)


def test_wrong_log_key_is_untrusted() -> None:
    stranger = NoteSigner(notes.log_origin("cn-330500"), ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(UntrustedKey):
        open_checkpoint(OURS["note"], stranger.verifier())


def test_cosignature_over_another_body_or_time_or_key_is_rejected() -> None:
    _, witness = ours_keys()
    body = OURS["body"]
    line = OURS["cosignature_line"]
    other_body = Checkpoint.parse_body(body)
    other = Checkpoint(other_body.origin, other_body.size + 1, other_body.root_hash).to_body()
    with pytest.raises(BadSignature):
        verify_cosignature(line, other, witness.verifier())

    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 0x01  # the timestamp's last byte: the signature covers the time line
    moved = f"— {witness.name} {base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(BadSignature):
        verify_cosignature(moved, body, witness.verifier())

    stranger = WitnessSigner(witness.name, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(UntrustedKey, match="expected"):
        verify_cosignature(line, body, stranger.verifier())

    log, _ = ours_keys()
    with pytest.raises(InvalidInput, match="not a cosignature/v1"):
        verify_cosignature(line, body, log.verifier())


def test_a_log_key_of_the_same_ed25519_key_cannot_pass_for_a_witness() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    as_log = NoteSigner("creditx/cn-330100/witness", key)
    as_witness = WitnessSigner("creditx/cn-330100/witness", key)
    assert as_log.key_hash != as_witness.key_hash  # the type byte separates them
    body = Checkpoint("o", 1, bytes(32)).to_body()
    plain = sign_note(body, [as_log]).split("\n\n", 1)[1]
    with pytest.raises(UntrustedKey):
        verify_cosignature(plain, body, as_witness.verifier())


def test_adding_a_newer_cosignature_replaces_the_older_one() -> None:
    log, witness = ours_keys()
    body = OURS["body"]
    note = sign_checkpoint(Checkpoint.parse_body(body), log)
    first = add_signature_lines(note, [cosign_checkpoint(body, witness, 100)])
    second = add_signature_lines(first, [cosign_checkpoint(body, witness, 200)])
    assert second.count(witness.name) == 1
    opened = open_checkpoint(second, log.verifier(), [witness.verifier()]).note
    assert opened.timestamp_of(witness.name) == 200
    assert opened.verified_names == (log.name, witness.name)


def test_cosign_refuses_non_checkpoints_and_bad_timestamps() -> None:
    _, witness = ours_keys()
    with pytest.raises(InvalidInput):
        cosign_checkpoint("not a checkpoint\n", witness, 1)
    with pytest.raises(InvalidInput, match="2\\^63"):
        cosign_checkpoint(OURS["body"], witness, 2**63)
    with pytest.raises(InvalidInput, match="witness keys"):
        sign_note(OURS["body"], [witness])  # type: ignore[list-item]


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u3000b"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="key name"):
        NoteSigner(name, ed25519.Ed25519PrivateKey.generate())


def test_note_text_must_end_in_newline() -> None:
    log, _ = ours_keys()
    with pytest.raises(InvalidInput, match="newline"):
        sign_note("no newline", [log])
