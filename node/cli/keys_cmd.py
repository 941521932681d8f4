"""`creditnode keys rotate|protect`: a new signing key (old ones verify-only); seal a subject
HMAC key left in clear.

Thin shells over `NodeKeys.rotate_signing_key`, or `stage_signing_key` then
`activate_pending_key` once `node.key_rollout` finds the key in the lists in force (DESIGN.md
§3 key rotation, issue 14 §4: the zone coordinators publish the new identity so peers verify
both old and new results, before the node signs with it), and
`NodeKeys.protect_subject_hmac_key` (ADR 0006). Both refuse a passphrase that does not fit the
home's keys before writing anything.
"""

from __future__ import annotations

import datetime as dt
import pathlib

import click

from node import signing, trust_files
from node.cli.options import home_option
from node.clock import SYSTEM
from node.errors import KeyMaterialError
from node.home import NodeHome
from node.key_rollout import check_key_published
from node.keys import KEYS_REFRESH_S, PASSPHRASE_ENV, NodeKeys, rfc3339
from node.store import Store

# A running serve (and its answer worker) re-reads keys.json every KEYS_REFRESH_S: a switch
# set at least twice that far ahead is seen by both before it happens.
MIN_SWITCH_DELAY_S = int(2 * KEYS_REFRESH_S)
DEFAULT_SWITCH_DELAY_S = 60


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
@click.option(
    "--stage",
    is_flag=True,
    help="Create the next key as pending: keep signing with the current one until --activate.",
)
@click.option(
    "--activate",
    is_flag=True,
    help="Switch to the pending key, once every trust list in force here carries it.",
)
@click.option(
    "--after",
    "after_s",
    type=click.IntRange(min=MIN_SWITCH_DELAY_S),
    default=DEFAULT_SWITCH_DELAY_S,
    show_default=True,
    help="With --activate: switch this many seconds from now (a running serve re-reads "
    f"its keys every {KEYS_REFRESH_S:g} s).",
)
@home_option
def rotate_command(
    algorithm: str, stage: bool, activate: bool, after_s: int, home: pathlib.Path
) -> None:
    """Rotate the signing key without an outage, in two steps:

    \b
    1. `keys rotate --stage`: a new key, pending; send `creditnode identity export` to each
       zone's coordinator, who lists it (valid from now) in the next trust list.
    2. `keys rotate --activate`: once that list is in force here, switch to the new key
       (--after seconds from now; a running serve switches then, no restart). The old key
       becomes verify-only, ending at the switch; export the identity once more so the next
       list says so.

    Without --stage or --activate, the new key signs at once (after a restart of serve):
    peers reject its answers as UNTRUSTED_KEY until their lists carry it.
    """
    if stage and activate:
        raise click.BadParameter("give --stage or --activate, not both", param_hint="--stage")
    node_home = NodeHome(home)
    keys = NodeKeys.open(node_home)
    if activate:
        _activate(node_home, keys, after_s)
        return
    record = (keys.stage_signing_key if stage else keys.rotate_signing_key)(algorithm=algorithm)
    protection = f"encrypted with ${PASSPHRASE_ENV}" if keys.encrypted else "NOT encrypted"
    if stage:
        click.echo(
            f"staged signing key {record.keyid} ({record.algorithm}; {protection}); this node "
            "keeps signing with its current key"
        )
        click.echo(
            "Next: send `creditnode identity export` to each zone coordinator; once the list "
            "they sign is in force here, run `creditnode keys rotate --activate`."
        )
        return
    click.echo(f"new active signing key {record.keyid} ({record.algorithm}; {protection})")
    for old in keys.signing_keys():
        if old.keyid != record.keyid:
            click.echo(f"  {old.keyid} is now {old.status}")
    click.echo(
        "Send `creditnode identity export` to each zone coordinator: peers verify results "
        "signed with the new key once the next trust list lists it."
    )


def _activate(node_home: NodeHome, keys: NodeKeys, after_s: int) -> None:
    pending = keys.pending_key()
    if pending is None:
        raise KeyMaterialError(
            "no pending signing key to activate: stage one first (creditnode keys rotate --stage)"
        )
    now = SYSTEM.now()
    switch_at = now + dt.timedelta(seconds=after_s)
    with Store.open(node_home.db_url()) as store:
        trust = trust_files.load_home_trust(node_home, now, store.trust_floors).store
    publication = check_key_published(trust, keys.config.node_id, pending.keyid, switch_at, now)
    record, retired = keys.activate_pending_key(switch_at)
    click.echo(
        f"signing key {record.keyid} signs from {rfc3339(switch_at)} (in {after_s} s); "
        f"it is in the trust lists in force here: {', '.join(publication.carrying) or 'none'}"
    )
    if not publication.carrying:
        click.echo("  (no trust list in force here lists this node: no peer checks its answers)")
    for old in retired:
        click.echo(f"  {old.keyid} signs until then, and is verify-only from then on")
    click.echo(
        "A running serve switches then, without a restart. Send `creditnode identity export` "
        "to each zone coordinator again: the next list marks the old key verify-only."
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
