"""The zone coordinator's CLI end to end: two real `creditnode init` homes, a coordinator
directory, signed lists installed and picked up by a running node's refresh, key rotation."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import stat
import time
import tomllib
from typing import Any

import pytest
from click.testing import CliRunner, Result

from node import trust_files
from node.cli import main
from node.errors import KeyMaterialError, RolledBackTrustList, UntrustedKey
from node.home import NodeHome
from node.keys import PASSPHRASE_ENV, NodeKeys


def run(*args: str | pathlib.Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: str | pathlib.Path) -> str:
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def export_identity(home: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    text = ok("identity", "export", "--home", home)
    out.write_text(text)
    doc: dict[str, Any] = json.loads(text)
    return doc


@pytest.fixture
def homes(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, pathlib.Path]:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    homes = {"cn-330500": tmp_path / "huzhou", "cn-330400": tmp_path / "jiaxing"}
    for (node_id, home), name in zip(homes.items(), ("湖州", "嘉兴"), strict=True):
        ok("init", "--node-id", node_id, "--name", name, "--home", home)
    return homes


@pytest.fixture
def coord(tmp_path: pathlib.Path) -> pathlib.Path:
    directory = tmp_path / "coordinator"
    ok("zone", "init", "--zone", "hjjw", "--dir", directory)
    return directory


def test_zone_init_writes_a_private_key_0600_and_refuses_to_overwrite_it(
    coord: pathlib.Path,
) -> None:
    key = coord / "hjjw.coordinator.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    draft = json.loads((coord / "hjjw.draft.json").read_text())
    assert draft == {"zone": "hjjw", "version": 0, "members": []}
    before = key.read_bytes()

    result = run("zone", "init", "--zone", "hjjw", "--dir", coord)
    assert isinstance(result.exception, KeyMaterialError)
    assert "pass --force" in str(result.exception)
    assert key.read_bytes() == before

    ok("zone", "init", "--zone", "hjjw", "--dir", coord, "--force")
    assert key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_zone_lifecycle_between_two_initialised_nodes(
    tmp_path: pathlib.Path, homes: dict[str, pathlib.Path], coord: pathlib.Path
) -> None:
    huzhou, jiaxing = homes["cn-330500"], homes["cn-330400"]
    pub = coord / "hjjw.coordinator.pub.pem"
    id_huzhou = export_identity(huzhou, tmp_path / "huzhou.json")
    id_jiaxing = export_identity(jiaxing, tmp_path / "jiaxing.json")

    # The coordinator builds the draft; re-adding a node replaces its entry.
    ok(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        tmp_path / "huzhou.json",
        "--endpoint",
        "huzhou.example.cn:7443",
        "--dir",
        coord,
    )
    ok(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        tmp_path / "jiaxing.json",
        "--endpoint",
        "old.example.cn:7443",
        "--dir",
        coord,
    )
    out = ok(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        tmp_path / "jiaxing.json",
        "--endpoint",
        "jiaxing.example.cn:7443",
        "--roles",
        "node,witness",
        "--dir",
        coord,
    )
    assert "replaced cn-330400" in out and "2 member(s)" in out

    out = ok(
        "zone",
        "sign",
        "--zone",
        "hjjw",
        "--valid-days",
        "7",
        "--out",
        tmp_path / "v1.json",
        "--dir",
        coord,
    )
    assert "signed version 1 with 2 member(s)" in out

    shown = ok("zone", "show", tmp_path / "v1.json", "--coordinator-key", pub)
    assert "zone hjjw version 1: verified with coordinator key" in shown
    assert "cn-330400 嘉兴 jiaxing.example.cn:7443 roles=node,witness" in shown
    assert "NOT VERIFIED" in ok("zone", "show", tmp_path / "v1.json")

    # Huzhou pins the coordinator and installs the list; a running node loads it.
    ok("zone", "pin", "--zone", "hjjw", "--coordinator-key", pub, "--home", huzhou)
    doc = tomllib.loads((huzhou / "node.toml").read_text())
    assert doc["node"]["node_id"] == "cn-330500"  # the node's own tables are kept
    assert set(doc["trust"]) == {"hjjw"}
    ok("zone", "install", "--zone", "hjjw", tmp_path / "v1.json", "--home", huzhou)
    files = trust_files.load_home_trust(NodeHome(huzhou))
    store = files.store
    [(zone, member)] = store.member_by_cert_sha256(id_jiaxing["tls_cert_sha256"])
    assert (zone, member.node_id, member.endpoint) == (
        "hjjw",
        "cn-330400",
        "jiaxing.example.cn:7443",
    )
    assert store.member("hjjw", "cn-330500").name == "湖州"  # type: ignore[union-attr]
    assert id_huzhou["tls_cert_pem"].encode() in store.anchors_pem()

    # Jiaxing signs a result, then rotates its signing key; the coordinator publishes v2.
    jiaxing_keys = NodeKeys.open(NodeHome(jiaxing))
    old_record = jiaxing_keys.signing_keys()[0]
    message = b"a credit result issued before the rotation"
    sig = jiaxing_keys.active_signer().sign(message)
    while dt.datetime.now(dt.UTC).replace(microsecond=0) <= old_record.not_before:
        time.sleep(0.05)  # the manifest keeps whole seconds: rotate in a later second
    out = ok("keys", "rotate", "--home", jiaxing)
    assert f"{old_record.keyid} is now verify-only" in out
    rotated = export_identity(jiaxing, tmp_path / "jiaxing.json")
    assert [k["status"] for k in rotated["signing_keys"]] == ["verify-only", "active"]
    new_keyid = rotated["signing_keys"][1]["keyid"]
    ok(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        tmp_path / "jiaxing.json",
        "--endpoint",
        "jiaxing.example.cn:7443",
        "--dir",
        coord,
    )
    ok("zone", "sign", "--zone", "hjjw", "--out", tmp_path / "v2.json", "--dir", coord)
    ok("zone", "install", "--zone", "hjjw", tmp_path / "v2.json", "--home", huzhou)

    assert files.refresh() == ["hjjw"]  # no restart
    signed_at = old_record.not_before
    assert store.signing_key("cn-330400", old_record.keyid, signed_at).verify(message, sig)
    with pytest.raises(UntrustedKey, match="verify-only"):
        store.signing_key("cn-330400", old_record.keyid, dt.datetime.now(dt.UTC))
    assert store.signing_key("cn-330400", new_keyid, dt.datetime.now(dt.UTC)).keyid == new_keyid

    # An older list is refused at install and the installed one stays.
    result = run("zone", "install", "--zone", "hjjw", tmp_path / "v1.json", "--home", huzhou)
    assert isinstance(result.exception, RolledBackTrustList)
    assert "version 2 stays installed" in result.output
    assert files.refresh() == []
    assert store.trust_list("hjjw").version == 2  # type: ignore[union-attr]

    # Removing Jiaxing: once v3 loads, its certificate no longer identifies a member.
    ok("zone", "remove-member", "--zone", "hjjw", "--node-id", "cn-330400", "--dir", coord)
    ok("zone", "sign", "--zone", "hjjw", "--out", tmp_path / "v3.json", "--dir", coord)
    ok("zone", "install", "--zone", "hjjw", tmp_path / "v3.json", "--home", huzhou)
    assert files.refresh() == ["hjjw"]
    assert store.member_by_cert_sha256(id_jiaxing["tls_cert_sha256"]) == []
    assert id_jiaxing["tls_cert_pem"].encode() not in store.anchors_pem()


def test_install_refuses_a_list_signed_by_another_coordinator(
    tmp_path: pathlib.Path, homes: dict[str, pathlib.Path], coord: pathlib.Path
) -> None:
    huzhou = homes["cn-330500"]
    export_identity(huzhou, tmp_path / "huzhou.json")
    rogue = tmp_path / "rogue"
    ok("zone", "init", "--zone", "hjjw", "--dir", rogue)
    ok(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        tmp_path / "huzhou.json",
        "--endpoint",
        "huzhou.example.cn:7443",
        "--dir",
        rogue,
    )
    ok("zone", "sign", "--zone", "hjjw", "--out", tmp_path / "rogue.json", "--dir", rogue)
    ok(
        "zone",
        "pin",
        "--zone",
        "hjjw",
        "--coordinator-key",
        coord / "hjjw.coordinator.pub.pem",
        "--home",
        huzhou,
    )

    result = run("zone", "install", "--zone", "hjjw", tmp_path / "rogue.json", "--home", huzhou)
    assert isinstance(result.exception, UntrustedKey)
    assert not trust_files.trust_list_path(huzhou, "hjjw").exists()
    result = run(
        "zone",
        "show",
        tmp_path / "rogue.json",
        "--coordinator-key",
        coord / "hjjw.coordinator.pub.pem",
    )
    assert isinstance(result.exception, UntrustedKey)


def test_install_of_an_unpinned_zone_says_how_to_pin_it(
    tmp_path: pathlib.Path, homes: dict[str, pathlib.Path], coord: pathlib.Path
) -> None:
    ok("zone", "sign", "--zone", "hjjw", "--out", tmp_path / "v1.json", "--dir", coord)
    result = run(
        "zone", "install", "--zone", "hjjw", tmp_path / "v1.json", "--home", homes["cn-330500"]
    )
    assert "creditnode zone pin --zone hjjw" in str(result.exception)


def test_remove_member_that_is_not_there_names_the_members(
    tmp_path: pathlib.Path, homes: dict[str, pathlib.Path], coord: pathlib.Path
) -> None:
    export_identity(homes["cn-330500"], tmp_path / "huzhou.json")
    ok(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        tmp_path / "huzhou.json",
        "--endpoint",
        "huzhou.example.cn:7443",
        "--dir",
        coord,
    )
    result = run(
        "zone", "remove-member", "--zone", "hjjw", "--node-id", "cn-330700", "--dir", coord
    )
    assert "cn-330700 is not in the draft of zone hjjw (members: cn-330500)" in str(
        result.exception
    )


def test_add_member_with_a_bad_endpoint_leaves_the_draft_unchanged(
    tmp_path: pathlib.Path, homes: dict[str, pathlib.Path], coord: pathlib.Path
) -> None:
    export_identity(homes["cn-330500"], tmp_path / "huzhou.json")
    before = (coord / "hjjw.draft.json").read_bytes()
    result = run(
        "zone",
        "add-member",
        "--zone",
        "hjjw",
        "--identity",
        tmp_path / "huzhou.json",
        "--endpoint",
        "huzhou.example.cn",
        "--dir",
        coord,
    )
    assert "endpoint must be host:port" in str(result.exception)
    assert (coord / "hjjw.draft.json").read_bytes() == before
