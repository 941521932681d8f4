"""`creditnode status`: what an operator checks first — the zones and their trust lists,
whether each peer accepts us, the witnesses' cosignatures, the exchange log, the store, and
whether `serve` runs on this home. `--json` prints the same as one object (docs/status.md).

It reads the home and its store and asks each peer one TLS handshake (node.tls_probe); it
changes nothing, and works whether or not `serve` runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import click
from cryptography.hazmat.primitives import serialization

from node.cli import exits
from node.cli.options import home_option
from node.clock import SYSTEM
from node.config import NodeConfig
from node.errors import CreditNodeError, StoreUnavailable
from node.home import NodeHome
from node.home_lock import holder
from node.keys import NodeKeys
from node.log.store import LogStore
from node.serving_config import ServingConfig
from node.store import Store
from node.store.engine import describe, parse_url
from node.tls_probe import Verdict, probe_client_certificate
from node.tls_rollout import presented_certificate
from node.trust import TrustStore
from node.trust_files import load_home_trust
from node.trust_model import Member

REACHABLE = {Verdict.ACCEPTED: "accepted", Verdict.REFUSED: "refused"}


def register(main: click.Group) -> None:
    main.add_command(status)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/status.md).")
@click.option("--no-probe", is_flag=True, help="Do not contact peers (reachable: not_probed).")
@home_option
def status(as_json: bool, no_probe: bool, home: pathlib.Path) -> None:
    """Zones, trust-list versions and expiry, peers reachable, witness state, log size, last
    checkpoint, store, and whether serve runs here.

    \b
    Exit status: 0 when the store answers, 1 when it does not (the rest is still shown).
    """
    doc = asyncio.run(collect(NodeHome(home), probe=not no_probe))
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2) if as_json else render(doc))
    raise SystemExit(exits.Exit.OK if doc["store"]["ok"] else exits.Exit.FAILED)


def _iso(when: dt.datetime | None) -> str | None:
    return (
        None
        if when is None
        else when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


async def collect(home: NodeHome, *, probe: bool = True) -> dict[str, Any]:
    """The status document of `home` (the schema is docs/status.md)."""
    config = home.load_config()
    document = home.load_document()
    serving = ServingConfig.from_document(document, str(home.config_file))
    served = {z for z, table in (document.get("zones") or {}).items() if isinstance(table, dict)}
    now = SYSTEM.now()
    url = home.db_url(config)
    store_doc: dict[str, Any] = {"where": describe(parse_url(url)), "ok": False, "error": None}
    summary = None
    store: Store | None = None
    try:
        store = Store.open(url, migrate=False)
        summary = LogStore(store).summary()
        store_doc["ok"] = True
    except StoreUnavailable as exc:
        store_doc["error"] = exc.message
    except Exception as exc:  # e.g. a schema older than this software: serve migrates it
        store_doc["error"] = f"cannot read the store ({type(exc).__name__})"
    try:
        trust = load_home_trust(home, now, store.trust_floors if store else None).store
    finally:
        if store is not None:
            store.close()
    zones = []
    peers: dict[str, dict[str, Any]] = {}
    for zone in sorted(set(trust.zones()) | served):
        held = trust.trust_list(zone)
        entry: dict[str, Any] = {"zone": zone, "served": zone in served, "trust_list": None}
        if held is not None:
            entry["trust_list"] = {
                "version": held.version,
                "issued_at": _iso(held.issued_at),
                "expires_at": _iso(held.expires_at),
                "in_force": now < held.expires_at,
                "expires_in_s": int((held.expires_at - now).total_seconds()),
                "members": len(held.members),
                "lists_this_node": any(m.node_id == config.node_id for m in held.members),
            }
            for member in held.members:
                if member.node_id != config.node_id:
                    peer = peers.setdefault(member.node_id, _peer(member))
                    peer["zones"].append(zone)
        zones.append(entry)
    if probe and peers:
        await _probe(home, config, trust, peers, now)
    log_doc: dict[str, Any] = {"size": None, "checkpoint": None}
    witnesses: list[dict[str, Any]] = []
    if summary is not None:
        log_doc["size"] = summary.size
        if summary.checkpoint is not None:
            size, at = summary.checkpoint
            log_doc["checkpoint"] = {
                "size": size,
                "signed_at": _iso(at),
                "age_s": int((now - at).total_seconds()),
            }
        for name, (size, at) in sorted(summary.cosigned.items()):
            witnesses.append(
                {
                    "witness": name,
                    "cosigned_size": size,
                    "behind": summary.size - size,
                    "received_at": _iso(at),
                }
            )
    pid = holder(home.data_dir)
    return {
        "node_id": config.node_id,
        "name": config.name,
        "checked_at": _iso(now),
        "serving": {"running": pid is not None, "pid": pid},
        "store": store_doc,
        "zones": zones,
        "peers": sorted(peers.values(), key=lambda p: str(p["node_id"])),
        "witnesses": {"peers": list(serving.witness.peers), "cosignatures": witnesses},
        "log": log_doc,
    }


def _peer(member: Member) -> dict[str, Any]:
    return {
        "node_id": member.node_id,
        "name": member.name,
        "endpoint": member.endpoint,
        "zones": [],
        "reachable": "not_probed",
    }


async def _probe(
    home: NodeHome,
    config: NodeConfig,
    trust: TrustStore,
    peers: Mapping[str, Any],
    now: dt.datetime,
) -> None:
    """One TLS handshake per peer, all at once: accepted, refused (our certificate), or
    unreachable (no answer within node.tls_probe's timeout, or not the pinned certificate)."""
    try:
        keys = NodeKeys.open(home, config)
        key_pem = keys.tls_private_key_pem()
        # The certificate serve presents: a reissued one once the lists pin it (ADR 0013).
        cert = presented_certificate(
            keys.tls_certificate(), keys.staged_tls_certificate(), trust, config.node_id, now
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    except CreditNodeError:
        return  # the keys are sealed (no passphrase given): peers stay not_probed
    members = {
        node_id: next(m for z in trust.zones() if (m := trust.member(z, node_id)) is not None)
        for node_id in peers
    }
    verdicts = await asyncio.gather(
        *(
            probe_client_certificate(m.endpoint, key_pem, cert_pem, m.tls_cert_pem)
            for m in members.values()
        )
    )
    for node_id, verdict in zip(members, verdicts, strict=True):
        peers[node_id]["reachable"] = REACHABLE.get(verdict, "unreachable")


def render(doc: Mapping[str, Any]) -> str:
    """The status for a person to read."""
    serving = doc["serving"]
    lines = [
        f"{doc['node_id']} ({doc['name']}) at {doc['checked_at']}",
        "serve: "
        + (f"running (process {serving['pid']})" if serving["running"] else "not running"),
        f"store: {doc['store']['where']}: "
        + ("ok" if doc["store"]["ok"] else f"NOT OK: {doc['store']['error']}"),
    ]
    log = doc["log"]
    checkpoint = log["checkpoint"]
    lines.append(
        f"log: {log['size'] if log['size'] is not None else '?'} entries; last checkpoint "
        + (f"{checkpoint['size']} at {checkpoint['signed_at']}" if checkpoint else "none")
    )
    lines.append("zones:")
    for zone in doc["zones"]:
        held = zone["trust_list"]
        state = (
            "no trust list"
            if held is None
            else f"list v{held['version']}, {held['members']} members, "
            + ("in force" if held["in_force"] else "EXPIRED")
            + f" until {held['expires_at']}"
        )
        lines.append(f"  {zone['zone']}{'' if zone['served'] else ' (not served)'}: {state}")
    lines.append("peers:")
    for peer in doc["peers"]:
        lines.append(
            f"  {peer['node_id']} {peer['name']} at {peer['endpoint']} "
            f"({', '.join(peer['zones'])}): {peer['reachable']}"
        )
    witnesses = doc["witnesses"]
    lines.append("witnesses: " + (", ".join(witnesses["peers"]) or "none configured"))
    for cosigned in witnesses["cosignatures"]:
        lines.append(
            f"  {cosigned['witness']} cosigned up to {cosigned['cosigned_size']} "
            f"({cosigned['behind']} behind) at {cosigned['received_at']}"
        )
    return "\n".join(lines)
