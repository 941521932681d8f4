"""Whether a peer accepts this node's TLS client certificate, asked of the peer itself (floor 3;
docs/adr/0008-peer-refuses-our-certificate.md).

grpc reports a peer that refuses our client certificate as UNAVAILABLE "Socket closed", as it
does a peer that went away mid-handshake. `probe_client_certificate` tells the two apart: a
TLS 1.3 handshake with our certificate, the peer's checked against the one its trust list
pins, then the HTTP/2 preface. Under TLS 1.3 the client finishes its handshake before the
server has checked the client's certificate (RFC 8446 §4.4.2.4): a server that refuses ours
closes the connection, or sends an alert, before sending a byte, where a gRPC server that
accepts it sends its SETTINGS frame at once (RFC 9113 §3.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterator

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
# TLS alerts by which a server says it refuses the client's certificate (RFC 8446 §6.2), as
# OpenSSL names them.
_REFUSING_ALERTS = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)


class Verdict(enum.Enum):
    ACCEPTED = "accepted"  # the peer spoke HTTP/2 to us: our certificate passed
    REFUSED = "refused"  # the pinned peer ended the connection over our certificate
    UNDECIDED = "undecided"  # unreachable, slow, not the pinned certificate, or no probe here


async def probe_client_certificate(
    endpoint: str,
    key_pem: bytes,
    cert_pem: bytes,
    peer_cert_pem: bytes,
    timeout: float = PROBE_TIMEOUT_S,
) -> Verdict:
    """Whether the peer at `endpoint` (presenting `peer_cert_pem`) accepts our certificate."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        context = _client_context(key_pem, cert_pem, peer_cert_pem)
    except (OSError, ssl.SSLError) as exc:
        log.debug("no TLS probe of %s: %s", endpoint, exc)
        return Verdict.UNDECIDED
    try:
        async with asyncio.timeout(timeout):
            return await _probe(host, int(port), context)
    except (TimeoutError, OSError, ValueError) as exc:
        log.debug("TLS probe of %s undecided: %s", endpoint, exc)
        return Verdict.UNDECIDED


async def _probe(host: str, port: int, context: ssl.SSLContext) -> Verdict:
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=None if _is_ip(host) else host
        )
    except ssl.SSLCertVerificationError:
        return Verdict.UNDECIDED  # not the certificate pinned for it: not the peer we know
    except ssl.SSLError as exc:
        return Verdict.REFUSED if exc.reason in _REFUSING_ALERTS else Verdict.UNDECIDED
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.version() != "TLSv1.3":
            return Verdict.UNDECIDED  # before 1.3 a refusal fails the handshake itself
        writer.write(_H2_PREFACE)
        try:
            first = await reader.read(1)
        except ssl.SSLError as exc:
            return Verdict.REFUSED if exc.reason in _REFUSING_ALERTS else Verdict.UNDECIDED
        except ConnectionResetError:
            return Verdict.REFUSED
        return Verdict.ACCEPTED if first else Verdict.REFUSED
    finally:
        # At once, without TLS close_notify: waiting for the peer's would outlast the verdict.
        writer.transport.abort()


def _client_context(key_pem: bytes, cert_pem: bytes, peer_cert_pem: bytes) -> ssl.SSLContext:
    """Our certificate, trusting exactly the peer's pinned one (as node.tls does for grpc).
    The host name is not checked: grpc checks it; this asks only about our certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=peer_cert_pem.decode("ascii"))
    context.set_alpn_protocols(["h2"])
    with _in_memory_file(key_pem + b"\n" + cert_pem) as path:
        context.load_cert_chain(path)
    return context


@contextlib.contextmanager
def _in_memory_file(data: bytes) -> Iterator[str]:
    """A path to `data` that never touches a disk (the private key): an anonymous memory file
    (Linux). Elsewhere OSError, and the probe is not made."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        raise OSError("this system has no memfd_create")
    fd = memfd_create("creditnode-tls-probe", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
