"""Keys at rest (issue 9 §7): in a home whose keys are encrypted, every command that writes key
material writes it encrypted under the home's passphrase and 0600, and refuses before writing
anything when the passphrase is missing, wrong, or the home's keys are in clear."""

from __future__ import annotations

import json
import pathlib
import re
import stat

import click
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from node import sealed_secret
from node.cli import main
from node.errors import KeyMaterialError
from node.home import NodeHome
from node.keys import PASSPHRASE_ENV, NodeKeys

PASSPHRASE = "correct horse battery staple"

# Every leaf command, split by whether it writes key material. A new command must be put in
# one of the two sets, and a key writer must be walked by the test below.
KEY_WRITERS = {"init", "keys rotate", "keys protect", "zone init"}
NOT_KEY_WRITERS = {
    "adapters",
    "auditor add",
    "auditor list",
    "auditor remove",
    "gen-data",
    "greenloan-sync",
    "identity export",
    "ingest",
    "log export",
    "log verify",
    "policy example",
    "query",
    "received show",
    "repair due",
    "repair expire-due",
    "repair record",
    "revocations watch",
    "serve",
    "status",
    "tls reissue",  # a new certificate for the same TLS key: public, nothing secret
    "zone add-member",
    "zone install",
    "zone pin",
    "zone remove-member",
    "zone serve",
    "zone show",
    "zone sign",
}
# Files the key writers produce that hold no secret.
PUBLIC_NAMES = {"node.toml", "keys.json", "tls.crt"}
PUBLIC_SUFFIXES = (".pub.pem", ".draft.json")

# RFC 7468 §11 labels, split so no tracked line looks like the start of a private key block.
ENCRYPTED_PEM = b"-----BEGIN " + b"ENCRYPTED PRIVATE KEY-----"
CLEAR_PEM = b"-----BEGIN " + b"PRIVATE KEY-----"


def run(*args: str | pathlib.Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: str | pathlib.Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def init(home: pathlib.Path, *extra: str) -> Result:
    return run("init", "--node-id", "cn-330500", "--name", "湖州", "--home", home, *extra)


def set_passphrase(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    else:
        monkeypatch.setenv(PASSPHRASE_ENV, value)


def snapshot(root: pathlib.Path) -> dict[pathlib.Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def written(before: dict[pathlib.Path, bytes], root: pathlib.Path) -> list[pathlib.Path]:
    return [p for p, data in snapshot(root).items() if before.get(p) != data]


def is_public(path: pathlib.Path) -> bool:
    return path.name in PUBLIC_NAMES or path.name.endswith(PUBLIC_SUFFIXES)


def assert_encrypted_and_0600(path: pathlib.Path, passphrase: bytes) -> None:
    """The file is 0600 and opens only with the passphrase (checked with the libraries, not
    with the code under test's own idea of "encrypted")."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    data = path.read_bytes()
    assert CLEAR_PEM not in data, f"{path} holds a private key in clear"
    if data.startswith(ENCRYPTED_PEM):
        with pytest.raises(TypeError):  # "Password was not given but private key is encrypted"
            serialization.load_pem_private_key(data, password=None)
        serialization.load_pem_private_key(data, password=passphrase)
        return
    assert data.startswith(b"{"), f"{path} is neither an encrypted PEM key nor a sealed secret"
    doc = json.loads(data)
    assert doc["format"] == sealed_secret.FORMAT, path
    with pytest.raises(sealed_secret.WrongPassphrase):
        sealed_secret.unseal(data, b"not the passphrase", doc["purpose"])
    assert len(sealed_secret.unseal(data, passphrase, doc["purpose"])) == 32


def leaf_commands(command: click.Command, prefix: tuple[str, ...] = ()) -> set[str]:
    if isinstance(command, click.Group):
        return {
            leaf
            for name, sub in command.commands.items()
            for leaf in leaf_commands(sub, (*prefix, name))
        }
    return {" ".join(prefix)}


@pytest.fixture
def encrypted_home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    home = tmp_path / "huzhou"
    ok("init", "--node-id", "cn-330500", "--name", "湖州", "--home", home)
    return home


def test_every_command_is_classified_as_key_writer_or_not() -> None:
    """issue 9 §7: the walk below covers every command that writes a key; a new command is
    classified here, so a new key writer cannot be missed."""
    commands = leaf_commands(main)
    assert commands == KEY_WRITERS | NOT_KEY_WRITERS, (
        f"unclassified: {sorted(commands - KEY_WRITERS - NOT_KEY_WRITERS)}; "
        f"gone: {sorted((KEY_WRITERS | NOT_KEY_WRITERS) - commands)}"
    )


def test_every_key_writer_writes_encrypted_0600_files_in_an_encrypted_home(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 9 §7: with the passphrase set, each command that writes key material (init,
    init --force, keys rotate for both algorithms and --stage, keys protect, zone init, zone
    init --force) writes every private file encrypted and 0600; before, the subject HMAC key
    was 32 raw bytes."""
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    home, coordinator = tmp_path / "huzhou", tmp_path / "coordinator"

    def legacy_hmac_key() -> None:
        # A home encrypted before the HMAC key was sealed: 32 raw bytes beside encrypted keys.
        path = home / "keys/subject-hmac.key"
        path.unlink()
        path.write_bytes(bytes(range(32)))
        path.chmod(0o600)

    steps: list[tuple[str, tuple[str | pathlib.Path, ...], object]] = [
        ("init", ("init", "--node-id", "cn-330500", "--name", "湖州", "--home", home), None),
        ("keys rotate", ("keys", "rotate", "--home", home), None),
        (
            "keys rotate",
            ("keys", "rotate", "--algorithm", "ecdsa-p256-sha256", "--home", home),
            None,
        ),
        ("keys rotate", ("keys", "rotate", "--stage", "--home", home), None),
        ("keys protect", ("keys", "protect", "--home", home), legacy_hmac_key),
        (
            "init",
            ("init", "--node-id", "cn-330500", "--name", "湖州", "--home", home, "--force"),
            None,
        ),
        ("zone init", ("zone", "init", "--zone", "hjjw", "--dir", coordinator), None),
        ("zone init", ("zone", "init", "--zone", "hjjw", "--dir", coordinator, "--force"), None),
    ]
    walked = set()
    for command, argv, prepare in steps:
        if callable(prepare):
            prepare()
        before = snapshot(tmp_path)
        ok(*argv)
        private = [p for p in written(before, tmp_path) if not is_public(p)]
        assert private, f"`{' '.join(map(str, argv))}` wrote no private file"
        for path in private:
            assert_encrypted_and_0600(path, PASSPHRASE.encode())
        walked.add(command)
    assert walked == KEY_WRITERS


@pytest.mark.parametrize(
    ("home_passphrase", "rotate_passphrase", "message"),
    [
        (PASSPHRASE, None, f"are encrypted: set {PASSPHRASE_ENV}"),
        (PASSPHRASE, "wrong", f"cannot decrypt .*: {PASSPHRASE_ENV} is not the passphrase"),
        (None, PASSPHRASE, f"are not encrypted: unset {PASSPHRASE_ENV}"),
    ],
    ids=["encrypted-home-no-passphrase", "encrypted-home-wrong-passphrase", "clear-home"],
)
def test_rotate_refuses_a_passphrase_that_does_not_fit_and_writes_nothing(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    home_passphrase: str | None,
    rotate_passphrase: str | None,
    message: str,
) -> None:
    """issue 9 §7: `keys rotate` without the passphrase of an encrypted home (or with a wrong
    one, or with one in a home whose keys are in clear) refuses and leaves every file as it
    was; before, it wrote the new active signing key unencrypted."""
    home = tmp_path / "home"
    set_passphrase(monkeypatch, home_passphrase)
    assert init(home).exit_code == 0
    before = snapshot(tmp_path)
    set_passphrase(monkeypatch, rotate_passphrase)
    result = run("keys", "rotate", "--home", home)
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyMaterialError)
    assert re.search(message, result.exception.message), result.exception.message
    assert snapshot(tmp_path) == before


def test_subject_hmac_key_is_sealed_and_opens_only_with_the_passphrase(
    encrypted_home: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 9 §7: an encrypted home's subject HMAC key is not readable without the
    passphrase; before, it was the 32 raw bytes."""
    path = encrypted_home / "keys/subject-hmac.key"
    assert len(path.read_bytes()) != 32
    secret = NodeKeys.open(NodeHome(encrypted_home)).subject_hmac_key()
    assert secret not in path.read_bytes()
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(KeyMaterialError, match=f"is encrypted: set {PASSPHRASE_ENV}"):
        NodeKeys.open(NodeHome(encrypted_home)).subject_hmac_key()
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(KeyMaterialError, match="cannot decrypt"):
        NodeKeys.open(NodeHome(encrypted_home)).subject_hmac_key()


def test_a_raw_hmac_key_keeps_loading_and_protect_seals_the_same_secret(
    encrypted_home: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """issue 9 §7: a raw subject HMAC key in an encrypted home (written before sealing) still
    loads, with a warning, and `keys protect` seals it without changing the secret, so
    pseudonyms already logged stay comparable."""
    path = encrypted_home / "keys/subject-hmac.key"
    path.unlink()
    path.write_bytes(bytes(range(32)))
    path.chmod(0o600)
    assert NodeKeys.open(NodeHome(encrypted_home)).subject_hmac_key() == bytes(range(32))
    assert "keys protect" in caplog.text

    assert "sealed with" in ok("keys", "protect", "--home", encrypted_home).output
    assert_encrypted_and_0600(path, PASSPHRASE.encode())
    assert NodeKeys.open(NodeHome(encrypted_home)).subject_hmac_key() == bytes(range(32))
    sealed = path.read_bytes()
    assert "nothing to do" in ok("keys", "protect", "--home", encrypted_home).output
    assert path.read_bytes() == sealed
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_a_clear_home_keeps_its_raw_hmac_key(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 9 §7: without a passphrase nothing changes: the HMAC key is the 32 raw bytes it
    always was, and `keys protect` has no passphrase to seal it with."""
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    assert init(tmp_path).exit_code == 0
    raw = (tmp_path / "keys/subject-hmac.key").read_bytes()
    assert NodeKeys.open(NodeHome(tmp_path)).subject_hmac_key() == raw
    assert len(raw) == 32
    result = run("keys", "protect", "--home", tmp_path)
    assert isinstance(result.exception, KeyMaterialError)
    assert "not encrypted" in result.exception.message
    assert (tmp_path / "keys/subject-hmac.key").read_bytes() == raw


def test_an_encrypted_coordinator_key_signs_only_with_the_passphrase(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 9 §7: `zone init` with the passphrase set encrypts the coordinator key, and
    `zone sign` then needs the passphrase (before, the key was written in clear)."""
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    ok("zone", "init", "--zone", "hjjw", "--dir", tmp_path)
    out = tmp_path / "hjjw.json"
    monkeypatch.delenv(PASSPHRASE_ENV)
    result = run("zone", "sign", "--zone", "hjjw", "--out", out, "--dir", tmp_path)
    assert isinstance(result.exception, KeyMaterialError)
    assert f"is encrypted: set {PASSPHRASE_ENV}" in result.exception.message
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    result = run("zone", "sign", "--zone", "hjjw", "--out", out, "--dir", tmp_path)
    assert isinstance(result.exception, KeyMaterialError)
    assert "cannot decrypt" in result.exception.message
    assert not out.exists()
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    ok("zone", "sign", "--zone", "hjjw", "--out", out, "--dir", tmp_path)
    assert out.exists()
