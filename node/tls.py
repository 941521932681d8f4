"""Mutual TLS for the node's gRPC endpoints (DESIGN.md §3).

The server requires a client certificate that chains to one of the trust anchors (the TLS
certificates of every member on the trust lists we hold); which member a caller is comes from
the certificate's fingerprint, never from a request field. Anchors are re-read on every new
handshake, so a newly loaded trust list (and a reissued certificate it pins) takes effect
without a restart.

A certificate that chains to no anchor fails the handshake itself, so its caller sees
UNAVAILABLE rather than DESIGN.md §6's UNAUTHENTICATED: grpcio's Python API cannot ask for a
client certificate without verifying it (grpc/grpc#16547). A connection whose member has since
left every list is refused per call, as UNAUTHENTICATED, by the servicer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization


def cert_sha256(cert_pem_or_der: bytes) -> str:
    """Lowercase hex SHA-256 of a certificate's DER encoding."""
    if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
        der = x509.load_pem_x509_certificate(cert_pem_or_der).public_bytes(
            serialization.Encoding.DER
        )
    else:
        der = cert_pem_or_der
    return hashlib.sha256(der).hexdigest()


def server_credentials(
    key_pem: bytes, cert_pem: bytes | Callable[[], bytes], anchors_pem: Callable[[], bytes]
) -> grpc.ServerCredentials:
    """Server credentials requiring client certificates, with anchors — and the certificate
    presented, when `cert_pem` is a callable (a reissued one, ADR 0013) — fetched per
    handshake. Connections made before a change keep what they were made with."""
    presented = cert_pem if callable(cert_pem) else lambda: cert_pem
    current = (anchors_pem(), presented())

    def config() -> grpc.ServerCertificateConfiguration:
        anchors, cert = current
        return grpc.ssl_server_certificate_configuration(
            [(key_pem, cert)], root_certificates=anchors
        )

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        nonlocal current
        now = (anchors_pem(), presented())
        if now == current:
            return None  # unchanged: keep the configuration in force
        current = now
        return config()

    return grpc.dynamic_ssl_server_credentials(config(), fetch, require_client_authentication=True)


def channel_credentials(
    key_pem: bytes, cert_pem: bytes, peer_cert_pem: bytes
) -> grpc.ChannelCredentials:
    """Client credentials: our certificate, trusting exactly the peer's pinned certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=peer_cert_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def certificate_subject(cert_pem_or_der: bytes) -> str:
    """A certificate's subject as RFC 4514 text, e.g. `CN=cn-330500` (for log lines)."""
    if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(cert_pem_or_der)
    else:
        cert = x509.load_der_x509_certificate(cert_pem_or_der)
    return cert.subject.rfc4514_string()


def node_id_of_certificate(cert_pem: bytes) -> str:
    """The node id a certificate names (its CN); the URI SAN must agree when present."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
