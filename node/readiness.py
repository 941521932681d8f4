"""Whether a running node is ready for peers' traffic (floor 6): the checks `/readyz` reports
(node.admin_http). A load balancer or orchestrator sends traffic only to a ready node.

Ready means: the store answers, a signing key and a TLS certificate valid now, at least one
served zone whose trust list is in force (else every query is refused), the log's sequencer
and the gRPC server running, and the witnessing loop alive. A witness that cannot be reached
is reported, not counted against readiness: every node of a zone would fail together.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from cryptography import x509

from node.admin_http import Check
from node.log.store import LogStore
from node.runtime import NodeRuntime
from node.store.engine import describe


async def checks(runtime: NodeRuntime) -> list[Check]:
    """The readiness checks of `runtime`, in the order /readyz lists them."""
    return [
        await _store(runtime),
        _keys(runtime),
        _trust_lists(runtime),
        _sequencer(runtime),
        await _witnesses(runtime),
    ]


async def _store(runtime: NodeRuntime) -> Check:
    def ping() -> None:
        with runtime.store.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        await asyncio.to_thread(ping)
    except Exception as exc:  # StoreUnavailable names where; anything else, its kind
        return Check("store", False, getattr(exc, "message", type(exc).__name__))
    return Check("store", True, describe(runtime.store.engine.url))


def _keys(runtime: NodeRuntime) -> Check:
    now = runtime.clock.now()
    try:
        signer = runtime.parts.signer
    except Exception as exc:
        return Check("keys", False, getattr(exc, "message", type(exc).__name__))
    cert = x509.load_pem_x509_certificate(runtime.tls_cert_pem)
    until = cert.not_valid_after_utc
    if not cert.not_valid_before_utc <= now < until:
        return Check("keys", False, f"the TLS certificate is not valid now (until {until:%F})")
    return Check("keys", True, f"signing key {signer.keyid[:16]}; TLS certificate until {until:%F}")


def _trust_lists(runtime: NodeRuntime) -> Check:
    now = runtime.clock.now()
    in_force = [z for z in runtime.trust.zones_in_force(now) if z in runtime.policy.zones]
    expired = runtime.trust.expired_zones(now)
    parts = [
        f"{zone} until {held.expires_at:%FT%TZ}"
        for zone in in_force
        if (held := runtime.trust.trust_list(zone)) is not None
    ]
    detail = "in force: " + (", ".join(parts) or "none")
    if expired:
        detail += "; expired: " + ", ".join(expired)
    return Check("trust_lists", bool(in_force), detail)


def _sequencer(runtime: NodeRuntime) -> Check:
    sequencer = getattr(runtime, "sequencer", None)  # set once the log is open
    if sequencer is None or not sequencer.running:
        return Check("sequencer", False, "the exchange log is not open yet")
    if runtime.server is None:
        return Check("sequencer", False, "the gRPC server is not listening yet")
    return Check("sequencer", True, f"log size {sequencer.tree.size}")


async def _witnesses(runtime: NodeRuntime) -> Check:
    peers = runtime.witness_config.peers
    if not peers:
        return Check("witnesses", True, "none configured")
    if not runtime.witnessing.alive:
        return Check("witnesses", False, "the witnessing loop is not running")
    summary = await asyncio.to_thread(LogStore(runtime.store).summary)
    cosigned = ", ".join(f"{w} up to {size}" for w, (size, _) in sorted(summary.cosigned.items()))
    unreachable = runtime.witnessing.stats.unreachable
    return Check(
        "witnesses",
        True,
        f"log size {summary.size}; cosigned: {cosigned or 'nothing yet'}; "
        f"checkpoints not delivered: {unreachable}",
    )
