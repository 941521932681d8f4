"""Fixtures shared by the service tests: a Huzhou node on real gRPC with real mutual TLS."""

from tests.services.test_interchange_server import node, node_store, tls

__all__ = ["node", "node_store", "tls"]
