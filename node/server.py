"""The node's gRPC server (floor 6): services, mutual TLS, health and reflection.

`GrpcServer` wires already-built parts together; building those parts from a node home is
`node.runtime`'s job. Stopping is graceful: in-flight calls get a grace period.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node import wire
from node.services.status import map_errors

log = logging.getLogger(__name__)

# The largest request any method takes: a credit query is a few hundred bytes, a witness's
# AddCheckpoint a note and a proof of at most 64 hashes. Anything larger is refused by gRPC
# (RESOURCE_EXHAUSTED) before a handler sees it.
MAX_REQUEST_BYTES = 16 * 1024


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
        self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"could not listen on {address}")
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
