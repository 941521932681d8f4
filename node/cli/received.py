"""`creditnode received show`: a result a peer issued to us, as kept (its envelope beside its
recognised view, issue 11 §4), verified again offline with --verify."""

from __future__ import annotations

import json
import pathlib

import click

from node import model, wire
from node.cli import exits
from node.cli.options import home_option
from node.cli.recognised import Recognised, recognition_json, recognition_lines
from node.clock import SYSTEM
from node.errors import PeerError
from node.home import NodeHome
from node.identifiers import mask_resident_id
from node.received_check import verify_received
from node.recognition import RecognisedView, Recognition
from node.store import Store
from node.store.received import Received
from node.trust_files import load_home_trust


@click.group("received")
def received_group() -> None:
    """Results peers issued to us, kept with their signed envelopes."""


@received_group.command("show")
@click.argument("result_id")
@click.option("--issuer", default=None, help="The issuing node, when several issued that id.")
@click.option(
    "--verify",
    is_flag=True,
    help="Verify the kept envelope again, offline, against the trust lists held, and derive "
    "its recognised view again through the crosswalk version stored.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@home_option
def show(
    result_id: str, issuer: str | None, verify: bool, as_json: bool, home: pathlib.Path
) -> None:
    """Show a result a peer issued to us: the peer's level and ours side by side, the crosswalk
    used, whether a revocation notice has marked it. A resident id is shown masked.

    \b
    Exit status: 0 shown (and verified, with --verify), 5 the kept envelope or its recognition
    does not verify again, 1 no such result here.
    """
    node_home = NodeHome(home)
    config = node_home.load_config()
    with Store.open(node_home.db_url(config)) as store:
        kept = [
            k for k in store.received.with_result_id(result_id) if issuer in (None, k.issuer_node)
        ]
        if len(kept) > 1:
            raise click.UsageError(
                "several peers issued a result of that id: "
                f"give --issuer ({', '.join(k.issuer_node for k in kept)})"
            )
        if not kept:
            raise click.ClickException("no result received here has that id (and issuer)")
        trust = (
            load_home_trust(node_home, SYSTEM.now(), store.trust_floors).store if verify else None
        )
    [held] = kept
    result = wire.result_from_bytes(wire.envelope_from_bytes(held.envelope).payload)
    problem, again = "", None
    if trust is not None:
        recognition = Recognition.for_node(
            config.division_code, node_home.load_document(), str(node_home.config_file)
        )
        try:
            checked = verify_received(
                held, local_node=config.node_id, trust=trust, recognition=recognition
            )
        except PeerError as exc:
            problem = f"{exc.reason}: {exc.message}"
        else:
            result, again = checked.result, checked.recognised_again
            if not checked.recognition_holds(held):
                problem = "RECOGNITION_DIFFERS: its crosswalk version gives another view today"
    if as_json:
        doc = _kept_json(held, result)
        if verify:
            doc["verified"] = {"ok": not problem, "problem": problem or None}
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        click.echo(_kept_text(held, result))
        if verify:
            click.echo(_verified_text(held, problem, again))
    if problem:
        raise SystemExit(exits.Exit.REJECTED)


def _subject(result: model.CreditResult) -> str:
    subject = result.subject
    personal = subject.id_type is model.SubjectIdType.RESIDENT_ID
    return mask_resident_id(subject.id) if personal else subject.id


def _status(held: Received) -> str:
    if held.current:
        return "current"
    assert held.revoked_reason is not None and held.revoked_at is not None
    by = f" by {held.superseded_by}" if held.superseded_by else ""
    return f"REVOKED {held.revoked_reason.name}{by} at {held.revoked_at.isoformat()}"


def _kept_text(held: Received, result: model.CreditResult) -> str:
    head = (
        f"{held.issuer_node} result {held.result_id}: {_status(held)}\n"
        f"  {_subject(result)} {result.subject_name} [{result.subject_type.name}], "
        f"valid until {result.valid_until.date()}\n"
        f"  received in {held.zone} for {held.purpose} at {held.received_at.isoformat()}"
    )
    lines = recognition_lines(result, held.recognised)
    return "\n".join([head, *(f"  {line}" for line in lines)])


def _verified_text(held: Received, problem: str, again: Recognised) -> str:
    if problem:
        return f"NOT VERIFIED: {problem}"
    recognition = (
        f"; recognised again through {again.crosswalk or 'no crosswalk (our scheme)'}: the same"
        if isinstance(again, RecognisedView)
        else ""
    )
    return (
        f"verified offline: signed by {held.issuer_node} with a key of the trust lists held, "
        f"issued to this node{recognition}"
    )


def _kept_json(held: Received, result: model.CreditResult) -> dict[str, object]:
    personal = result.subject.id_type is model.SubjectIdType.RESIDENT_ID
    envelope = wire.envelope_from_bytes(held.envelope)
    return {
        "issuer_node": held.issuer_node,
        "result_id": held.result_id,
        "zone": held.zone,
        "purpose": held.purpose,
        "received_at": held.received_at.isoformat(),
        "current": held.current,
        "revoked_reason": held.revoked_reason.name if held.revoked_reason else None,
        "superseded_by": held.superseded_by or None,
        "result": {
            "subject": _subject(result),
            "subject_name": result.subject_name,
            "scheme": result.scheme,
            "native_level": result.native_level,
            "native_score": result.native_score,
            "level": result.level.name,
            "flags": list(result.flags),
            "valid_until": result.valid_until.isoformat(),
        },
        # A person's envelope is left out: its payload holds the resident id in clear.
        "envelope": None if personal else json.loads(envelope.to_json()),
        **recognition_json(held.recognised),
    }


def register(main: click.Group) -> None:
    main.add_command(received_group)
