"""Trust lists to sign and load: a member's TLS certificate and keys as DESIGN.md §3 names
them, and a list of members for a zone, issued at T0 and valid for 30 days unless told."""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from node import signing, trust

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def tls_cert_der(node_id: str, *, uri_only: bool = False) -> bytes:
    """A self-signed TLS certificate naming the node as DESIGN.md §3 says (CN and URI SAN)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cn = "creditnode" if uri_only else node_id
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - 30 * DAY)
        .not_valid_after(T0 + 365 * DAY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"creditx://node/{node_id}")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def key_info(
    signer: signing.Signer,
    status: str = trust.ACTIVE,
    not_before: dt.datetime = T0 - 10 * DAY,
    not_after: dt.datetime | None = None,
) -> trust.PublicKeyInfo:
    return trust.PublicKeyInfo(
        signer.keyid, signer.algorithm, signer.spki_der, not_before, not_after, status
    )


def make_member(
    node_id: str,
    *keys: trust.PublicKeyInfo,
    cert: bytes | None = None,
    endpoint: str | None = None,
) -> trust.Member:
    der = cert if cert is not None else tls_cert_der(node_id)
    return trust.Member(
        node_id=node_id,
        name=f"node {node_id}",
        division_code=node_id[3:],
        endpoint=endpoint or f"{node_id}.example.cn:7443",
        tls_cert_der=der,
        tls_cert_sha256=hashlib.sha256(der).hexdigest(),
        signing_keys=keys,
    )


def make_list(
    version: int,
    *members: trust.Member,
    zone: str = "hjjw",
    issued: dt.datetime = T0,
    valid: dt.timedelta = 30 * DAY,
) -> trust.TrustList:
    return trust.TrustList(zone, version, issued, issued + valid, members)
