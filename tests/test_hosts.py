"""`creditnode init --host` (issue 14 §1): the names peers reach a node by are in its TLS
certificate, so mutual TLS works on an address other than loopback's 127.0.0.1."""

from __future__ import annotations

import ipaddress
import pathlib

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node import tls
from node.cli import main
from node.home import NodeHome
from node.keys import PASSPHRASE_ENV, NodeKeys
from node.server import GrpcServer

HUZHOU, JIAXING = "cn-330500", "cn-330400"


def init(home: pathlib.Path, node_id: str, *hosts: str) -> str:
    args = ["init", "--node-id", node_id, "--name", "城市", "--home", str(home)]
    for host in hosts:
        args += ["--host", host]
    result = CliRunner().invoke(main, args)
    return f"{result.exit_code}\n{result.output}"


def sans(home: pathlib.Path) -> list[x509.GeneralName]:
    cert = NodeKeys.open(NodeHome(home)).tls_certificate()
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


def test_init_puts_every_host_in_the_certificate(tmp_path: pathlib.Path) -> None:
    out = init(tmp_path / "h", HUZHOU, "127.0.0.2", "Node.Huzhou.example.", "2001:db8::1")
    assert out.startswith("0\n"), out
    names = sans(tmp_path / "h")
    assert x509.IPAddress(ipaddress.ip_address("127.0.0.2")) in names
    assert x509.IPAddress(ipaddress.ip_address("2001:db8::1")) in names
    assert x509.DNSName("node.huzhou.example") in names
    assert x509.DNSName("localhost") in names  # loopback keeps working
    assert x509.UniformResourceIdentifier(f"creditx://node/{HUZHOU}") in names


@pytest.mark.parametrize("host", ["bad host", "-lead.example", "a" * 64 + ".example", "x" * 300])
def test_a_bad_host_is_refused_before_anything_is_written(
    tmp_path: pathlib.Path, host: str
) -> None:
    out = init(tmp_path / "h", HUZHOU, host)
    assert out.startswith("2\n") and "--host" in out, out
    assert "x" * 100 not in out  # a long value is not echoed whole
    assert not (tmp_path / "h" / "node.toml").exists()


def _creds(home: pathlib.Path) -> tuple[bytes, bytes]:
    keys = NodeKeys.open(NodeHome(home))
    return keys.tls_private_key_pem(), keys.tls_certificate_pem()


async def _health(server_home: pathlib.Path, client_home: pathlib.Path, host: str) -> str:
    """A health check over mutual TLS from the client node to the server node at `host`."""
    server_key, server_cert = _creds(server_home)
    client_key, client_cert = _creds(client_home)
    server = GrpcServer(
        {}, tls.server_credentials(server_key, server_cert, lambda: client_cert), f"{host}:0"
    )
    await server.start()
    try:
        creds = tls.channel_credentials(client_key, client_cert, server_cert)
        async with grpc.aio.secure_channel(server.target, creds) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                return str(exc.code().name)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    finally:
        await server.stop(0)


async def test_two_nodes_on_their_own_addresses_talk_mutual_tls(tmp_path: pathlib.Path) -> None:
    """Huzhou serves on 127.0.0.2 and Jiaxing on 127.0.0.3, each named in its certificate;
    each reaches the other. A node whose certificate does not name the address is refused by
    the caller's hostname check, as before this change."""
    assert init(tmp_path / "hz", HUZHOU, "127.0.0.2").startswith("0\n")
    assert init(tmp_path / "jx", JIAXING, "127.0.0.3").startswith("0\n")
    assert await _health(tmp_path / "hz", tmp_path / "jx", "127.0.0.2") == "SERVING"
    assert await _health(tmp_path / "jx", tmp_path / "hz", "127.0.0.3") == "SERVING"
    assert await _health(tmp_path / "jx", tmp_path / "hz", "127.0.0.2") == "UNAVAILABLE"


def test_add_member_warns_when_the_certificate_does_not_name_the_endpoint(
    tmp_path: pathlib.Path,
) -> None:
    assert init(tmp_path / "h", HUZHOU, "127.0.0.2", "node.huzhou.example").startswith("0\n")
    runner = CliRunner()
    identity = tmp_path / "huzhou.json"
    exported = runner.invoke(main, ["identity", "export", "--home", str(tmp_path / "h")])
    assert exported.exit_code == 0, exported.output
    identity.write_text(exported.stdout)
    coord = tmp_path / "coord"
    assert (
        runner.invoke(main, ["zone", "init", "--zone", "hjjw", "--dir", str(coord)]).exit_code == 0
    )

    def add(endpoint: str) -> str:
        args = ["zone", "add-member", "--zone", "hjjw", "--identity", str(identity)]
        result = runner.invoke(main, [*args, "--endpoint", endpoint, "--dir", str(coord)])
        assert result.exit_code == 0, result.output
        return result.stderr

    for named in ("127.0.0.2:7443", "NODE.huzhou.example.:7443", "localhost:7443"):
        assert add(named) == "", named
    warned = add("127.0.0.3:7443")
    assert "warning: cn-330500's TLS certificate names" in warned
    assert "not 127.0.0.3" in warned and "tls reissue --host 127.0.0.3" in warned
