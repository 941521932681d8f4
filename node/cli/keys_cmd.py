"""`creditnode keys rotate`: start signing with a new key, keep the old ones verify-only.

A thin shell over `NodeKeys.rotate_signing_key` (DESIGN.md §3 key rotation); the zone
coordinators then publish the new identity so peers verify both old and new results.
"""

from __future__ import annotations

import pathlib

import click

from node import signing
from node.cli.options import home_option
from node.home import NodeHome
from node.keys import NodeKeys


@click.group(name="keys")
def keys_group() -> None:
    """Manage this node's signing keys."""


@keys_group.command(name="rotate")
@click.option(
    "--algorithm",
    type=click.Choice([signing.ED25519, signing.ECDSA_P256]),
    default=signing.ED25519,
    show_default=True,
    help="Algorithm of the new signing key.",
)
@home_option
def rotate_command(algorithm: str, home: pathlib.Path) -> None:
    """Add a new active signing key; every older key becomes verify-only."""
    keys = NodeKeys.open(NodeHome(home))
    record = keys.rotate_signing_key(algorithm=algorithm)
    click.echo(f"new active signing key {record.keyid} ({record.algorithm})")
    for old in keys.signing_keys():
        if old.keyid != record.keyid:
            click.echo(f"  {old.keyid} is now {old.status}")
    click.echo(
        "Send `creditnode identity export` to each zone coordinator: peers verify results "
        "signed with the new key once the next trust list lists it."
    )


def register(main: click.Group) -> None:
    main.add_command(keys_group)
