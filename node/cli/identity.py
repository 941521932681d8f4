"""`creditnode init` and `creditnode identity export`: create a node's identity, show it.

init writes node.toml and every key into the home and refuses to replace an existing identity
unless --force is given; export prints the public identity (no passphrase needed).
"""

from __future__ import annotations

import contextlib
import pathlib

import click

from node import divisions, signing
from node.cli.options import check_hosts, home_option, host_option
from node.config import NodeConfig, division_of
from node.errors import ConfigError, InvalidIdentifier
from node.home import NodeHome
from node.keys import PASSPHRASE_ENV, NodeKeys, identity_json, passphrase_from_env


def register(main: click.Group) -> None:
    main.add_command(init)
    main.add_command(identity)


@click.command()
@click.option("--node-id", required=True, help="This node's id: cn- and its GB/T 2260 code.")
@click.option("--name", required=True, help="The city's name, e.g. 湖州.")
@click.option(
    "--signing-algorithm",
    type=click.Choice([signing.ED25519, signing.ECDSA_P256]),
    default=signing.ED25519,
    show_default=True,
    help="Algorithm of the DSSE signing key.",
)
@host_option(
    "A name or address peers reach this node by, put in its TLS certificate "
    "(repeatable; localhost and 127.0.0.1 are always in it; `tls reissue` changes them)."
)
@click.option("--force", is_flag=True, help="Replace an existing identity (destroys its keys).")
@home_option
def init(
    node_id: str,
    name: str,
    signing_algorithm: str,
    hosts: tuple[str, ...],
    force: bool,
    home: pathlib.Path,
) -> None:
    """Create a node identity: node.toml and keys/ in the home.

    Private keys are written with mode 0600; set $CREDITNODE_KEY_PASSPHRASE to encrypt them.
    """
    try:
        code = division_of(node_id)
    except ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="--node-id") from None
    try:
        city = divisions.name_of(code)
    except InvalidIdentifier as exc:
        raise click.BadParameter(exc.message, param_hint="--node-id") from None
    if not divisions.is_name_of(name, code):  # a typo in either, most likely in --node-id
        shown = name if len(name) <= 40 else name[:40] + "…"
        click.echo(
            f"warning: --name {shown!r} is not the name of division {code} ({city}); "
            "check --node-id and --name: peers see both in the trust list",
            err=True,
        )

    check_hosts(hosts)  # refused before anything is written
    node_home = NodeHome(home)
    config = NodeConfig.for_node(node_id, name)
    keys = NodeKeys(node_home, config, passphrase=passphrase_from_env())
    existing = ([node_home.config_file] if node_home.has_config() else []) + keys.existing_files()
    if existing and not force:
        raise click.ClickException(
            f"{node_home.path} already holds a node identity "
            f"({', '.join(p.name for p in existing)}); refusing to overwrite it. "
            "Pass --force to replace it: the old keys are destroyed, and peers will no longer "
            "trust this node until its new identity is in their trust lists."
        )
    # keys/ and data/ private (0700) first: a home that cannot be made so keeps its old keys.
    try:
        node_home.ensure_layout()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    if existing:
        if node_home.has_config():
            # Remove the files the *old* config names, which may differ from the new defaults.
            with contextlib.suppress(ConfigError):
                NodeKeys(node_home, node_home.load_config(), passphrase=None).remove()
        keys.remove()

    keys.generate(signing_algorithm=signing_algorithm, hosts=hosts)
    node_home.write_config(config)

    identity_info = keys.public_identity()
    click.echo(f"created node {node_id} ({name}; division {code} {city}) in {node_home.path}")
    click.echo(f"  signing key     {identity_info.signing_keys[0].keyid} ({signing_algorithm})")
    click.echo(f"  log key         {identity_info.log_verifier_key}")
    click.echo(f"  witness key     {identity_info.witness_verifier_key}")
    click.echo(f"  TLS certificate sha256:{identity_info.tls_cert_sha256}")
    if keys.encrypted:
        click.echo(f"  private keys are encrypted with ${PASSPHRASE_ENV}")
    else:
        click.echo(f"  private keys are NOT encrypted (set ${PASSPHRASE_ENV} to encrypt them)")
    if any(node_home.data_dir.iterdir()):
        click.echo(
            f"warning: {node_home.data_dir} holds data written under the old identity", err=True
        )


@click.group()
def identity() -> None:
    """Show this node's identity."""


@identity.command("export")
@home_option
def export(home: pathlib.Path) -> None:
    """Print the public identity as JSON: node id, signing keys, log and witness verifier
    keys, TLS certificate and its SHA-256 fingerprint."""
    node_home = NodeHome(home)
    keys = NodeKeys(node_home, node_home.load_config(), passphrase=None)
    click.echo(identity_json(keys.public_identity()))
