"""`creditnode tls reissue` (issue 14 §1, ADR 0013): new names in the node's TLS certificate,
for the same key, staged until the trust lists pin it. Two real nodes over mutual TLS: the node
presents its old certificate while the list in force pins it, then the new one, and the peer
reaches it at the new address the list gives; a bad --host changes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import pathlib
import stat
import sys
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner
from cryptography import x509

from devtools.federation import Federation, build, run_cli
from node import model, tls
from node.cli import main
from node.home import NodeHome
from node.keys import (
    PASSPHRASE_ENV,
    TLS_VALIDITY,
    NodeKeys,
    certificate_sha256,
    certificate_spki,
)
from node.runtime import NodeRuntime
from tests.federation_helpers import HUZHOU, JIAXING, company, subjects_of

CITIES = {HUZHOU: "湖州", JIAXING: "嘉兴"}
ZONES = {"hjjw": (HUZHOU, JIAXING)}


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


async def creditnode(*args: object) -> tuple[int, str]:
    """The real CLI in a child process (its exit statuses), while this event loop serves."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "node.cli", *map(str, args)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def init(home: pathlib.Path, *hosts: str) -> None:
    args = ["init", "--node-id", HUZHOU, "--name", "湖州", "--home", home]
    for host in hosts:
        args += ["--host", host]
    code, out = cli(*args)
    assert code == 0, out


def sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def snapshot(root: pathlib.Path) -> dict[pathlib.Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


# --- the certificate ------------------------------------------------------------------------


def test_reissue_stages_a_certificate_with_the_new_names_for_the_same_key(
    tmp_path: pathlib.Path,
) -> None:
    home = tmp_path / "hz"
    init(home, "127.0.0.2")
    keys = NodeKeys.open(NodeHome(home))
    current = keys.tls_certificate()
    before = snapshot(home)

    code, out = cli("tls", "reissue", "--host", "Node.Huzhou.example.", "--host", "10.1.2.3",
                    "--home", home)  # fmt: skip
    assert code == 0, out

    staged = keys.staged_tls_certificate()
    assert staged is not None
    cn = staged.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [a.value for a in cn] == [HUZHOU]
    names = sans(staged)
    assert x509.DNSName("node.huzhou.example") in names
    assert x509.IPAddress(ipaddress.ip_address("10.1.2.3")) in names
    assert x509.UniformResourceIdentifier(f"creditx://node/{HUZHOU}") in names
    assert x509.DNSName("localhost") in names
    assert x509.IPAddress(ipaddress.ip_address("127.0.0.2")) not in names  # replaced, not added
    assert certificate_spki(staged) == certificate_spki(current)  # the key is kept

    # Only the staged certificate is written, beside the one presented, and it is public.
    assert [p.name for p, data in snapshot(home).items() if before.get(p) != data] == [
        "tls.next.crt"
    ]
    assert stat.S_IMODE(keys.staged_tls_cert_path.stat().st_mode) == 0o644
    assert keys.tls_certificate() == current
    # The export carries what the coordinator must pin next.
    exported = json.loads(run_cli("identity", "export", "--home", home))
    assert exported["tls_cert_sha256"] == certificate_sha256(staged)
    assert f"staged TLS certificate sha256:{certificate_sha256(staged)}" in out
    assert "Next: send `creditnode identity export`" in out


def test_the_validity_is_counted_from_the_given_moment(tmp_path: pathlib.Path) -> None:
    home = tmp_path / "hz"
    init(home)
    moment = dt.datetime(2031, 3, 1, 8, 0, tzinfo=dt.UTC)
    cert = NodeKeys.open(NodeHome(home)).stage_tls_certificate(["node.huzhou.example"], moment)
    assert cert.not_valid_before_utc == moment - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == moment + TLS_VALIDITY


async def test_an_encrypted_home_needs_its_passphrase_and_writes_no_secret(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    home = tmp_path / "hz"
    init(home)
    monkeypatch.delenv(PASSPHRASE_ENV)
    before = snapshot(home)
    code, out = await creditnode("tls", "reissue", "--host", "node.huzhou.example", "--home", home)
    assert code == 6 and f"is encrypted: set {PASSPHRASE_ENV}" in out, out  # Exit.CONFIG
    assert snapshot(home) == before

    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    code, out = cli("tls", "reissue", "--host", "node.huzhou.example", "--home", home)
    assert code == 0, out
    assert [p.name for p, data in snapshot(home).items() if before.get(p) != data] == [
        "tls.next.crt"
    ]


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--host", "bad host"), "neither an IP address nor a DNS host name"),
        (("--host", "-lead.example"), "neither an IP address nor a DNS host name"),
        (("--host", "a" * 64 + ".example"), "neither an IP address nor a DNS host name"),
        (("--host", "x" * 300), "neither an IP address nor a DNS host name"),
        (("--host", "ok.example", "--host", "bad_name"), "neither an IP address"),
        (tuple(a for i in range(33) for a in ("--host", f"n{i}.example")), "at most 32"),
        ((), "give the names of the new certificate"),
        (("--host", "ok.example", "--activate"), "not both"),
    ],
)
async def test_bad_arguments_are_a_usage_error_and_change_nothing(
    tmp_path: pathlib.Path, args: tuple[str, ...], message: str
) -> None:
    home = tmp_path / "hz"
    init(home, "127.0.0.2")
    before = snapshot(home)
    code, out = await creditnode("tls", "reissue", *args, "--home", home)
    assert code == 2, out  # node.cli.exits.Exit.USAGE
    assert out.startswith("error: Invalid value for --") and message in out, out
    assert "x" * 100 not in out  # a long value is not echoed whole
    assert snapshot(home) == before


async def test_activating_with_nothing_staged_is_refused(tmp_path: pathlib.Path) -> None:
    home = tmp_path / "hz"
    init(home)
    before = snapshot(home)
    code, out = await creditnode("tls", "reissue", "--activate", "--home", home)
    assert code == 6, out  # node.cli.exits.Exit.CONFIG, as `keys rotate --activate`
    assert "no staged TLS certificate to activate" in out
    assert snapshot(home) == before


# --- two nodes over mutual TLS --------------------------------------------------------------


@pytest.fixture
async def pair(
    tmp_path: pathlib.Path,
) -> AsyncIterator[tuple[Federation, NodeRuntime, NodeRuntime]]:
    """Huzhou listens on every address of its port (the list first gives 127.0.0.1, then
    127.0.0.2, as for a node that gets a new public address); Jiaxing as built."""
    fed = build(tmp_path, CITIES, ZONES, subjects=30)
    huzhou, jiaxing = (
        NodeRuntime(NodeHome(fed.home(HUZHOU))),
        NodeRuntime(NodeHome(fed.home(JIAXING))),
    )
    try:
        await huzhou.start(listen=f"0.0.0.0:{fed.ports[HUZHOU]}")
        await jiaxing.start()
        yield fed, huzhou, jiaxing
    finally:
        await huzhou.stop()
        await jiaxing.stop()


async def both_ways_granted(fed: Federation, huzhou: NodeRuntime, jiaxing: NodeRuntime) -> None:
    """Jiaxing asks Huzhou (Huzhou's certificate as server) and Huzhou asks Jiaxing (as
    client): both GRANTED."""
    asked = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert asked.decision is model.Decision.GRANTED, asked.reason
    subject = model.SubjectRef(model.SubjectIdType.USCC, subjects_of(fed, JIAXING)["企业"][0])
    asking = await huzhou.ask(JIAXING, "hjjw", "xinyi-dai", subject)
    assert asking.decision is model.Decision.GRANTED, asking.reason


def presented(runtime: NodeRuntime) -> str:
    return tls.cert_sha256(runtime.tls_cert_pem)


async def test_the_new_certificate_is_presented_once_the_list_pins_it(
    pair: tuple[Federation, NodeRuntime, NodeRuntime],
) -> None:
    fed, huzhou, jiaxing = pair
    home = fed.home(HUZHOU)
    new_endpoint = f"127.0.0.2:{fed.ports[HUZHOU]}"
    old = presented(huzhou)
    await both_ways_granted(fed, huzhou, jiaxing)

    # 1. Staged: the lists in force still pin the old certificate, so the node presents it.
    code, out = await creditnode("tls", "reissue", "--host", "127.0.0.2", "--home", home)
    assert code == 0, out
    staged = NodeKeys.open(NodeHome(home)).staged_tls_certificate()
    assert staged is not None
    new = certificate_sha256(staged)
    await huzhou.refresh_trust()
    assert presented(huzhou) == old
    await both_ways_granted(fed, huzhou, jiaxing)

    # Activating before a list pins it is refused, naming the list, and changes nothing.
    before = snapshot(home / "keys")
    code, out = await creditnode("tls", "reissue", "--activate", "--home", home)
    assert code == 1, out
    assert f"sha256:{new} is not the one the trust list in force here pins" in out
    assert "in hjjw version 1" in out
    assert snapshot(home / "keys") == before

    # 2. The coordinator pins the new certificate, at the new endpoint, in version 2.
    identity = fed.root / "huzhou.reissued.identity.json"
    identity.write_text(run_cli("identity", "export", "--home", home))
    run_cli("zone", "add-member", "--zone", "hjjw", "--identity", identity,
            "--endpoint", new_endpoint, "--dir", fed.coordinator_dir())  # fmt: skip
    fed.install("hjjw", fed.sign_zone("hjjw", "reissued"), [HUZHOU, JIAXING])
    await jiaxing.refresh_trust()
    await huzhou.refresh_trust()
    assert presented(huzhou) == new  # no restart
    member = jiaxing.trust.member("hjjw", HUZHOU)
    assert member is not None
    assert (member.endpoint, member.tls_cert_sha256) == (new_endpoint, new)
    # Jiaxing reaches Huzhou at 127.0.0.2, which only the new certificate names.
    await both_ways_granted(fed, huzhou, jiaxing)

    # A reissue now would replace a certificate the list pins: refused, nothing written.
    before = snapshot(home / "keys")
    code, out = await creditnode("tls", "reissue", "--host", "127.0.0.3", "--home", home)
    assert code == 1 and "is pinned by the trust list in force here for hjjw version 2" in out
    assert snapshot(home / "keys") == before

    # 3. Activate: the staged certificate becomes tls.crt; the node presents it still.
    code, out = await creditnode("tls", "reissue", "--activate", "--home", home)
    assert code == 0, out
    assert "pinned by the trust lists in force here: hjjw version 2" in out
    keys = NodeKeys.open(NodeHome(home))
    assert keys.tls_certificate() == staged and keys.staged_tls_certificate() is None
    await huzhou.refresh_trust()
    assert presented(huzhou) == new
    await both_ways_granted(fed, huzhou, jiaxing)
