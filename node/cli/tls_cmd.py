"""`creditnode tls reissue`: change the names in the node's TLS certificate (issue 14 §1).

A thin shell over `NodeKeys.stage_tls_certificate` / `activate_staged_tls_certificate`, with
`node.tls_rollout` deciding from the trust lists in force whether a staged certificate may be
replaced or activated. The TLS key is kept (ADR 0013).
"""

from __future__ import annotations

import pathlib

import click

from node import trust_files
from node.cli.options import check_hosts, home_option, host_option
from node.clock import SYSTEM
from node.home import NodeHome
from node.keys import KEYS_REFRESH_S, NodeKeys, certificate_hosts, certificate_sha256, rfc3339
from node.store import Store
from node.tls_rollout import check_certificate_published, check_staged_unpublished
from node.trust import TrustStore


@click.group(name="tls")
def tls_group() -> None:
    """Manage this node's TLS certificate."""


@tls_group.command(name="reissue")
@host_option(
    "A name or address peers reach this node by, for the new certificate (repeatable; it "
    "replaces the names of the current one; localhost and 127.0.0.1 are always in it)."
)
@click.option(
    "--activate",
    is_flag=True,
    help="Make the staged certificate the node's certificate file, once every trust list in "
    "force here pins it.",
)
@home_option
def reissue_command(hosts: tuple[str, ...], activate: bool, home: pathlib.Path) -> None:
    """Change the names (SANs) in this node's TLS certificate without breaking peers.

    Peers trust exactly the certificate the trust list pins (its SHA-256), so the new one is
    staged, published, and presented only once the list pins it:

    \b
    1. `tls reissue --host NAME …`: a new self-signed certificate (CN and URI SAN the node
       id, the given names) for the SAME TLS key, staged beside the current one; this node
       keeps presenting the current one. `identity export` now carries the new one: send it
       to each zone's coordinator (with `zone add-member --endpoint` the new HOST:PORT if the
       endpoint changes).
    2. Once a list pinning it is in force here (and none pins another), a running serve
       presents the new certificate, to callers and when it calls peers, within seconds and
       without a restart.
    3. `tls reissue --activate`: the staged certificate becomes keys/tls.crt; refused while a
       list in force here pins another certificate for this node.

    The key is kept: a name change needs no new key (the pin is the certificate's, not the
    key's), no secret is written, and the key loaded by a running serve fits both
    certificates. A TLS key thought compromised needs a new identity (`init --force`).
    """
    if activate and hosts:
        raise click.BadParameter("give --host or --activate, not both", param_hint="--activate")
    if not activate and not hosts:
        raise click.BadParameter(
            "give the names of the new certificate (--host NAME_OR_IP, repeatable), or "
            "--activate to finish a reissue",
            param_hint="--host",
        )
    check_hosts(hosts)  # refused before anything is read or written
    node_home = NodeHome(home)
    keys = NodeKeys.open(node_home)
    if activate:
        _activate(node_home, keys)
    else:
        _stage(node_home, keys, hosts)


def _trust_in_force(node_home: NodeHome) -> TrustStore:
    with Store.open(node_home.db_url()) as store:
        return trust_files.load_home_trust(node_home, SYSTEM.now(), store.trust_floors).store


def _stage(node_home: NodeHome, keys: NodeKeys, hosts: tuple[str, ...]) -> None:
    node_id = keys.config.node_id
    current = keys.tls_certificate()
    earlier = keys.staged_tls_certificate()
    if earlier is not None:  # never replace one that peers may already pin
        check_staged_unpublished(_trust_in_force(node_home), node_id, earlier, SYSTEM.now())
    cert = keys.stage_tls_certificate(hosts, SYSTEM.now())
    click.echo(
        f"staged TLS certificate sha256:{certificate_sha256(cert)} for {node_id} (same TLS "
        f"key; valid until {rfc3339(cert.not_valid_after_utc)}) in {keys.staged_tls_cert_path}"
    )
    click.echo(f"  names: {', '.join(certificate_hosts(cert))}")
    click.echo(
        f"this node presents its current certificate sha256:{certificate_sha256(current)} "
        f"(names: {', '.join(certificate_hosts(current))}) until the trust lists pin the new one"
    )
    click.echo(
        "Next: send `creditnode identity export` to each zone coordinator (with the new "
        "endpoint, if it changed). A running serve presents the new certificate within "
        f"{KEYS_REFRESH_S:g} s of a list pinning it coming into force here; then run "
        "`creditnode tls reissue --activate`."
    )


def _activate(node_home: NodeHome, keys: NodeKeys) -> None:
    staged = keys.staged_tls_certificate()
    if staged is None:
        keys.activate_staged_tls_certificate()  # raises: nothing staged, with the next step
        return
    sha = certificate_sha256(staged)
    trust = _trust_in_force(node_home)
    publication = check_certificate_published(trust, keys.config.node_id, sha, SYSTEM.now())
    keys.activate_staged_tls_certificate()
    click.echo(
        f"TLS certificate sha256:{sha} is now this node's certificate ({keys.tls_cert_path}); "
        f"pinned by the trust lists in force here: {', '.join(publication.carrying) or 'none'}"
    )
    if not publication.carrying:
        click.echo("  (no trust list in force here lists this node: no peer pins its certificate)")
    click.echo(
        f"A running serve presents it within {KEYS_REFRESH_S:g} s, without a restart; the "
        "TLS key is unchanged."
    )


def register(main: click.Group) -> None:
    main.add_command(tls_group)
