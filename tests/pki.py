"""Test certificates: a node's TLS key and self-signed certificate, made by the same code
`creditnode init` uses (node.keys.self_signed_tls_certificate)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from node.keys import self_signed_tls_certificate
from node.tls import cert_sha256


@dataclasses.dataclass(frozen=True)
class NodeTls:
    node_id: str
    key_pem: bytes
    cert_pem: bytes

    @property
    def fingerprint(self) -> str:
        return cert_sha256(self.cert_pem)


def make_node_tls(node_id: str) -> NodeTls:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_tls_certificate(node_id, key, dt.datetime.now(dt.UTC))
    return NodeTls(
        node_id,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )
