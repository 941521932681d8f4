"""Node identity on disk: node.toml, key files, `creditnode init` and `identity export`."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import pathlib
import socket
import ssl
import stat
import threading
import tomllib
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node import signing
from node.cli import main
from node.config import KeyPaths, NodeConfig
from node.errors import ConfigError, KeyMaterialError
from node.home import NodeHome, dumps_toml
from node.keys import ACTIVE, PASSPHRASE_ENV, VERIFY_ONLY, NodeKeys
from node.log import notes


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def init(home: pathlib.Path, node_id: str = "cn-330500", *extra: str) -> Result:
    result = run("init", "--node-id", node_id, "--name", "湖州", "--home", str(home), *extra)
    return result


def export(home: pathlib.Path) -> dict[str, Any]:
    result = run("identity", "export", "--home", str(home))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def node_keys(home: pathlib.Path) -> NodeKeys:
    return NodeKeys.open(NodeHome(home))


@pytest.fixture
def home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.delenv("CREDITNODE_DB_URL", raising=False)
    path = tmp_path / "huzhou"
    result = init(path)
    assert result.exit_code == 0, result.output
    return path


PRIVATE_FILES = [
    "keys/log.key",
    "keys/witness.key",
    "keys/tls.key",
    "keys/subject-hmac.key",
]


# --- init -------------------------------------------------------------------------------------


def test_init_writes_config_and_private_files_with_mode_0600(home: pathlib.Path) -> None:
    config = NodeHome(home).load_config()
    assert (config.node_id, config.name, config.division_code) == ("cn-330500", "湖州", "330500")
    assert (config.listen, config.audit_listen) == ("127.0.0.1:7443", "127.0.0.1:8080")
    signing_files = sorted((home / "keys").glob("signing-*.key"))
    assert len(signing_files) == 1
    for path in [home / p for p in PRIVATE_FILES] + signing_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700
    assert len((home / "keys/subject-hmac.key").read_bytes()) == 32


def test_init_refuses_to_overwrite_without_force(home: pathlib.Path) -> None:
    before = export(home)
    result = init(home)
    assert result.exit_code == 1
    assert "already holds a node identity" in result.output
    assert "--force" in result.output
    assert export(home) == before  # nothing was touched

    forced = init(home, "cn-330500", "--force")
    assert forced.exit_code == 0, forced.output
    after = export(home)
    assert after["signing_keys"][0]["keyid"] != before["signing_keys"][0]["keyid"]
    assert len(list((home / "keys").glob("signing-*.key"))) == 1  # the old key is gone


def test_init_refuses_when_only_a_key_file_is_left(tmp_path: pathlib.Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "tls.key").write_text("left over")
    result = init(tmp_path)
    assert result.exit_code == 1
    assert "tls.key" in result.output


@pytest.mark.parametrize(
    ("node_id", "message"),
    [("330500", "cn-330500"), ("cn-33050", "cn-330500"), ("cn-330599", "not in the GB/T 2260")],
)
def test_init_rejects_bad_node_ids(tmp_path: pathlib.Path, node_id: str, message: str) -> None:
    result = init(tmp_path, node_id)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "node.toml").exists()


def test_init_with_ecdsa_signing_key(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    assert init(tmp_path, "cn-330100", "--signing-algorithm", "ecdsa-p256-sha256").exit_code == 0
    [key] = export(tmp_path)["signing_keys"]
    assert key["algorithm"] == signing.ECDSA_P256
    signer = node_keys(tmp_path).active_signer()
    envelope = signing.sign_envelope(signing.PAYLOAD_CREDIT_RESULT, b"r", [signer])
    spki = base64.b64decode(key["spki"])
    keys = {key["keyid"]: signing.VerificationKey.from_spki_der(spki)}
    assert signing.verify_envelope(envelope, payload_type=signing.PAYLOAD_CREDIT_RESULT, keys=keys)


# --- passphrase ---------------------------------------------------------------------------------


LOADERS = ["active_signer", "log_signer", "witness_signer", "tls_private_key"]


@pytest.fixture
def encrypted_home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    result = init(tmp_path)
    assert result.exit_code == 0, result.output
    assert "encrypted" in result.output
    return tmp_path


# RFC 7468 §11 label, split so no tracked line looks like the start of a private key block.
_PEM_ENCRYPTED_PKCS8 = b"".join(
    (
        b"-----BEGIN ",
        b"ENCRYPTED PRIVATE KEY-----",
    )
)


def test_private_keys_are_encrypted_pkcs8(encrypted_home: pathlib.Path) -> None:
    for path in [*(encrypted_home / "keys").glob("signing-*.key"), encrypted_home / "keys/log.key"]:
        assert path.read_bytes().startswith(_PEM_ENCRYPTED_PKCS8)


@pytest.mark.parametrize("loader", LOADERS)
def test_encrypted_key_needs_the_passphrase(
    encrypted_home: pathlib.Path, monkeypatch: pytest.MonkeyPatch, loader: str
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(KeyMaterialError, match=f"is encrypted: set {PASSPHRASE_ENV}"):
        getattr(node_keys(encrypted_home), loader)()
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(KeyMaterialError, match="cannot decrypt"):
        getattr(node_keys(encrypted_home), loader)()
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    assert getattr(node_keys(encrypted_home), loader)() is not None


def test_export_needs_no_passphrase(
    encrypted_home: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV)
    assert export(encrypted_home)["node_id"] == "cn-330500"


# --- the TLS certificate ----------------------------------------------------------------------


def test_certificate_names_the_node_and_serves_both_ends(home: pathlib.Path) -> None:
    cert = x509.load_pem_x509_certificate((home / "keys/tls.crt").read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["cn-330500"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["creditx://node/cn-330500"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=729) < lifetime <= dt.timedelta(days=730)
    cert.verify_directly_issued_by(cert)
    key = node_keys(home).tls_private_key()
    assert key.public_key() == cert.public_key()


def test_two_nodes_complete_a_mutual_tls_handshake(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    peer = tmp_path / "hangzhou"
    assert init(peer, "cn-330100").exit_code == 0
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(home / "keys/tls.crt", home / "keys/tls.key")
    server.load_verify_locations(peer / "keys/tls.crt")  # the peer's certificate is the anchor
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_cert_chain(peer / "keys/tls.crt", peer / "keys/tls.key")
    client.load_verify_locations(home / "keys/tls.crt")
    for context in (server, client):
        context.verify_flags |= ssl.VERIFY_X509_STRICT

    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, Any] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with server.wrap_socket(conn, server_side=True) as tls:
            seen["client"] = tls.getpeercert()
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    port = listener.getsockname()[1]
    with client.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"
    ) as tls:
        assert tls.recv(2) == b"ok"
        server_cert = tls.getpeercert()
    assert server_cert is not None
    assert ("URI", "creditx://node/cn-330500") in server_cert["subjectAltName"]
    thread.join(timeout=10)
    listener.close()
    assert ("URI", "creditx://node/cn-330100") in seen["client"]["subjectAltName"]


# --- export -----------------------------------------------------------------------------------


def test_export_matches_the_key_files(home: pathlib.Path) -> None:
    exported = export(home)
    keys = node_keys(home)
    assert (exported["node_id"], exported["name"], exported["division_code"]) == (
        "cn-330500",
        "湖州",
        "330500",
    )
    [key] = exported["signing_keys"]
    signer = keys.active_signer()
    assert key["keyid"] == signer.keyid == hashlib.sha256(signer.spki_der).hexdigest()
    assert base64.b64decode(key["spki"]) == signer.spki_der
    assert (key["algorithm"], key["status"]) == ("ed25519", "active")
    assert dt.datetime.fromisoformat(key["not_before"]) <= dt.datetime.now(dt.UTC)

    assert exported["log_origin"] == "creditx/cn-330500/exchange-log"
    assert exported["log_verifier_key"] == keys.log_signer().verifier_key_text()
    assert exported["witness_verifier_key"] == keys.witness_signer().verifier_key_text()
    assert exported["witness_verifier_key"].startswith("creditx/cn-330500/witness+")

    cert_pem = (home / "keys/tls.crt").read_text()
    assert exported["tls_cert_pem"] == cert_pem
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    assert exported["tls_cert_sha256"] == hashlib.sha256(der).hexdigest()


def test_loaded_keys_sign_what_the_exported_identity_verifies(home: pathlib.Path) -> None:
    exported = export(home)
    keys = node_keys(home)
    log = keys.log_signer()
    cp = notes.Checkpoint(exported["log_origin"], 3, bytes(32))
    note = notes.sign_checkpoint(cp, log)
    body = cp.to_body()
    note = notes.add_signature_lines(
        note, [notes.cosign_checkpoint(body, keys.witness_signer(), 9)]
    )
    log_vkey = notes.NoteVerifier.from_text(exported["log_verifier_key"])
    witness_vkey = notes.NoteVerifier.from_text(exported["witness_verifier_key"])
    opened = notes.open_checkpoint(note, log_vkey, [witness_vkey])
    assert opened.note.timestamp_of("creditx/cn-330500/witness") == 9


def test_swapped_key_files_are_detected(home: pathlib.Path) -> None:
    log, witness = home / "keys/log.key", home / "keys/witness.key"
    log_pem, witness_pem = log.read_bytes(), witness.read_bytes()
    log.write_bytes(witness_pem)
    witness.write_bytes(log_pem)
    with pytest.raises(KeyMaterialError, match="does not match the public key"):
        node_keys(home).log_signer()


def test_keys_of_another_node_are_refused(home: pathlib.Path) -> None:
    config = dataclasses.replace(
        NodeHome(home).load_config(), node_id="cn-330100", division_code="330100"
    )
    with pytest.raises(KeyMaterialError, match="holds the keys of cn-330500"):
        NodeKeys(NodeHome(home), config, passphrase=None).public_identity()


def test_rotation_keeps_the_old_key_for_verification(home: pathlib.Path) -> None:
    keys = node_keys(home)
    old = keys.active_signer()
    old_envelope = signing.sign_envelope(signing.PAYLOAD_CREDIT_RESULT, b"before", [old])
    new_record = keys.rotate_signing_key()
    assert keys.active_signer().keyid == new_record.keyid != old.keyid
    statuses = {k["keyid"]: k["status"] for k in export(home)["signing_keys"]}
    assert statuses == {old.keyid: VERIFY_ONLY, new_record.keyid: ACTIVE}
    verified = signing.verify_envelope(
        old_envelope, payload_type=signing.PAYLOAD_CREDIT_RESULT, keys=keys.verification_keys()
    )
    assert verified.keyid == old.keyid


def test_a_key_not_yet_valid_is_not_used(home: pathlib.Path) -> None:
    keys = node_keys(home)
    first = keys.signing_keys()[0]
    with pytest.raises(KeyMaterialError, match="no active signing key"):
        keys.active_signer(now=first.not_before - dt.timedelta(seconds=1))


# --- node.toml --------------------------------------------------------------------------------


GOOD_NODE = {"node_id": "cn-330500", "name": "湖州", "division_code": "330500"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "missing [node] table"),
        ({"node": {**GOOD_NODE, "lisen": "x"}}, "[node] unknown key 'lisen'"),
        ({"node": {"name": "湖州", "division_code": "330500"}}, "[node] node_id is missing"),
        ({"node": {**GOOD_NODE, "node_id": "cn-3305"}}, "[node] node_id must look like"),
        ({"node": {**GOOD_NODE, "division_code": "330100"}}, "does not match node_id"),
        ({"node": {**GOOD_NODE, "listen": "7443"}}, "[node] listen must be host:port"),
        ({"node": {**GOOD_NODE, "audit_listen": "h:99999"}}, "audit_listen must be host:port"),
        ({"node": {**GOOD_NODE, "legacy_uscc_allowed": True}}, "List the known legacy"),
        ({"node": {**GOOD_NODE, "name": 5}}, "[node] name must be a string"),
        ({"node": {**GOOD_NODE, "db_url": "node.db"}}, "db_url must be a database URL"),
        ({"node": GOOD_NODE, "keys": {"tls_crt": "x"}}, "[keys] unknown key 'tls_crt'"),
        ({"node": GOOD_NODE, "keys": {"tls_cert": ""}}, "[keys] tls_cert must be"),
    ],
)
def test_bad_config_names_file_table_and_key(
    tmp_path: pathlib.Path, doc: dict[str, Any], message: str
) -> None:
    (tmp_path / "node.toml").write_text(dumps_toml(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        NodeHome(tmp_path).load_config()
    assert message in caught.value.message
    assert str(tmp_path / "node.toml") in caught.value.message


def test_missing_or_broken_node_toml_says_what_to_do(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="creditnode init"):
        NodeHome(tmp_path).load_config()
    (tmp_path / "node.toml").write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        NodeHome(tmp_path).load_config()


def test_config_round_trips_and_keeps_tables_owned_by_others(tmp_path: pathlib.Path) -> None:
    home = NodeHome(tmp_path)
    zones = {"yrd": {"members": ["cn-310000", "cn-330500"], "purposes": [{"id": "xinyi-dai"}]}}
    (tmp_path / "node.toml").write_text(dumps_toml({"zones": zones}), encoding="utf-8")
    config = NodeConfig.for_node(
        "cn-330500",
        '湖州 "Huzhou" \\ test',
        listen="0.0.0.0:7443",
        db_url="postgresql+psycopg://u@db/credit",
        keys=KeyPaths(tls_cert="/etc/creditnode/tls.crt"),
    )
    home.write_config(config)
    assert home.load_config() == config
    assert home.load_document()["zones"] == zones


@pytest.mark.parametrize(
    "value",
    ["plain", 'quote " and \\ backslash', "line\nbreak\ttab", "湖州\u3000市", "del\x7f", ""],
)
def test_toml_writer_round_trips_strings(value: str) -> None:
    doc = {"t": {"s": value, "list": [value, 1, 2.5, True], "weird key": value}}
    assert tomllib.loads(dumps_toml(doc)) == doc


def test_db_url_precedence(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDITNODE_DB_URL", raising=False)
    home = NodeHome(tmp_path / "rel" / "..")
    assert home.db_url() == f"sqlite:///{tmp_path}/data/node.db"
    assert home.db_url().startswith("sqlite:////")  # an absolute path
    home.write_config(NodeConfig.for_node("cn-330500", "湖州", db_url="postgresql://db/x"))
    assert home.db_url() == "postgresql://db/x"
    monkeypatch.setenv("CREDITNODE_DB_URL", "postgresql://env/y")
    assert home.db_url() == "postgresql://env/y"
