"""The node's gRPC server (floor 6): services, mutual TLS, health and reflection.

`GrpcServer` wires already-built parts together; building those parts from a node home is
`node.runtime`'s job. Stopping is graceful: in-flight calls get a grace period.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node import wire
from node.errors import AddressInUse, ConfigError
from node.services.status import map_errors

log = logging.getLogger(__name__)

# The largest request any method takes: a credit query is a few hundred bytes, a witness's
# AddCheckpoint a note and a proof of at most 64 hashes. Anything larger is refused by gRPC
# (RESOURCE_EXHAUSTED) before a handler sees it.
MAX_REQUEST_BYTES = 16 * 1024


def check_can_listen(address: str) -> None:
    """Bind `address` (HOST:PORT) once and let it go: AddressInUse when another process
    listens there, ConfigError when it is no address of this host or no HOST:PORT at all."""
    host, sep, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 literal, RFC 3986 §3.2.2
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"listen address must be HOST:PORT with a port up to 65535: {address}")
    port = int(port_text)
    if port == 0:
        return  # any free port
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"cannot listen on {address}: no such host") from None
    problems: list[OSError] = []
    for family, kind, proto, _, sockaddr in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUse(
                        f"cannot listen on {address}: another process listens there"
                    ) from None
                problems.append(exc)
    if problems and len(problems) == len(found):
        raise ConfigError(f"cannot listen on {address}: {problems[0].strerror}")


class GrpcServer:
    def __init__(
        self,
        services: Mapping[str, Mapping[str, grpc.RpcMethodHandler]],
        credentials: grpc.ServerCredentials,
        address: str = "127.0.0.1:0",
        *,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        """`services`: each service's full name and its methods' handlers."""
        # Health and reflection speak only of the services actually served.
        self.service_names = tuple(services)
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
                # A port another process listens on is refused, not shared (issue 14 §6).
                ("grpc.so_reuseport", 0),
            ]
        )
        for name, methods in services.items():
            # Registered methods are found by name; our errors are mapped inside each one.
            self._server.add_registered_method_handlers(
                name, {method: map_errors(handler) for method, handler in methods.items()}
            )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        listed = [
            *self.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        # Reflection needs the descriptors in the default pool: importing wire loads them.
        assert wire.spb.DESCRIPTOR is not None
        reflection.enable_server_reflection(listed, self._server)
        check_can_listen(address)  # gRPC would say only that binding failed, not why
        try:
            self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError:  # taken between the check and now
            raise AddressInUse(f"cannot listen on {address}: it is in use") from None
        if self.port == 0:
            raise AddressInUse(f"cannot listen on {address}")
        self.host = address.rsplit(":", 1)[0]

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        await self._server.start()
        for name in ("", *self.service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving on %s", self.target)

    async def set_serving(self, service: str, serving: bool) -> None:
        """Report one served service as SERVING or NOT_SERVING in gRPC health."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        await self._health.set(service, status)

    async def stop(self, grace: float = 2.0) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
