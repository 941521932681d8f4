"""`creditnode keys rotate|protect`: a new signing key (old ones verify-only); seal a subject
HMAC key left in clear.

Thin shells over `NodeKeys.rotate_signing_key` (DESIGN.md §3 key rotation; the zone
coordinators then publish the new identity so peers verify both old and new results) and
`NodeKeys.protect_subject_hmac_key` (ADR 0006). Both refuse a passphrase that does not fit the
home's keys before writing anything.
"""

from __future__ import annotations

import pathlib

import click

from node import signing
from node.cli.options import home_option
from node.home import NodeHome
from node.keys import PASSPHRASE_ENV, NodeKeys


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
    protection = f"encrypted with ${PASSPHRASE_ENV}" if keys.encrypted else "NOT encrypted"
    click.echo(f"new active signing key {record.keyid} ({record.algorithm}; {protection})")
    for old in keys.signing_keys():
        if old.keyid != record.keyid:
            click.echo(f"  {old.keyid} is now {old.status}")
    click.echo(
        "Send `creditnode identity export` to each zone coordinator: peers verify results "
        "signed with the new key once the next trust list lists it."
    )


@keys_group.command(name="protect")
@home_option
def protect_command(home: pathlib.Path) -> None:
    """Seal subject-hmac.key under $CREDITNODE_KEY_PASSPHRASE in a home whose keys are
    encrypted (homes initialised before it was sealed keep it in clear). The secret itself
    does not change."""
    keys = NodeKeys.open(NodeHome(home))
    if keys.protect_subject_hmac_key():
        click.echo(f"{keys.subject_hmac_key_path}: sealed with ${PASSPHRASE_ENV}")
    else:
        click.echo(f"{keys.subject_hmac_key_path}: already sealed; nothing to do")


def register(main: click.Group) -> None:
    main.add_command(keys_group)
