"""The node's gRPC server (floor 6): services, mutual TLS, health and reflection.

`GrpcServer` wires already-built parts together; building those parts from a node home is
`node.runtime`'s job. Stopping is graceful: in-flight calls get a grace period.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node import wire
from node.services.status import ErrorMappingInterceptor

log = logging.getLogger(__name__)



class GrpcServer:
    def __init__(
        self,
        handlers: Sequence[grpc.GenericRpcHandler],
        credentials: grpc.ServerCredentials,
        address: str = "127.0.0.1:0",
        *,
        service_names: Sequence[str] = (),
    ) -> None:
        # Health and reflection speak only of the services actually served.
        self.service_names = tuple(service_names)
        self._server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
        self._server.add_generic_rpc_handlers(tuple(handlers))
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        services = [
            *self.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        # Reflection needs the descriptors in the default pool: importing wire loads them.
        assert wire.spb.DESCRIPTOR is not None
        reflection.enable_server_reflection(services, self._server)
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

    async def stop(self, grace: float = 2.0) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
