"""`creditnode auditor add|remove|list`: who may use the auditor service (node.audit.access).

The token is printed once, by `add`; the home keeps its SHA-256 only. A running `serve` takes
a change within a request: the file is re-read when it changes.
"""

from __future__ import annotations

import json
import pathlib

import click

from node.audit.access import ROLES, AuditorFile
from node.cli.options import home_option
from node.clock import SYSTEM
from node.errors import InvalidInput
from node.home import NodeHome


def register(main: click.Group) -> None:
    main.add_command(auditor)


@click.group()
def auditor() -> None:
    """Tokens for the auditor service (the exchange log's web page and API)."""


@auditor.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="auditor",
    show_default=True,
    help="auditor: reads the log; operator: also reads who read it, and repairs penalty records.",
)
@click.option(
    "--zone",
    "zones",
    multiple=True,
    required=True,
    help='A zone whose entries it may read (repeat); "*" for every entry.',
)
@click.option(
    "--personal", is_flag=True, help="It may see residents' pseudonyms whole (masked otherwise)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the token as JSON.")
@home_option
def add(
    name: str, role: str, zones: tuple[str, ...], personal: bool, as_json: bool, home: pathlib.Path
) -> None:
    """Add an auditor and print its token (shown this once: keep it)."""
    node_home = NodeHome(home)
    node_home.load_config()  # a home that is not one is named as such
    try:
        added, token = AuditorFile(node_home).add(
            name, role, zones, personal=personal, now=SYSTEM.now()
        )
    except InvalidInput as exc:
        raise click.BadParameter(exc.message) from None
    if as_json:
        click.echo(json.dumps({"name": added.name, "role": added.role, "token": token}))
        return
    click.echo(f"auditor {added.name} ({added.role}; zones {', '.join(added.zones_text)})")
    click.echo(f"token: {token}")
    click.echo("The token is not kept here: give it to the auditor now.")


@auditor.command("remove")
@click.argument("name")
@home_option
def remove(name: str, home: pathlib.Path) -> None:
    """Remove an auditor: its token stops working at once."""
    if not AuditorFile(NodeHome(home)).remove(name):
        raise click.ClickException(f"no auditor named {name[:64]!r}")
    click.echo(f"auditor {name} removed")


@auditor.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@home_option
def list_(as_json: bool, home: pathlib.Path) -> None:
    """The auditors and operators, their zones and whether they see residents' pseudonyms."""
    found = AuditorFile(NodeHome(home)).auditors()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": a.name,
                        "role": a.role,
                        "zones": a.zones_text,
                        "personal": a.personal,
                        "added_at": a.added_at.isoformat(),
                    }
                    for a in found
                ]
            )
        )
        return
    for a in found:
        personal = ", personal" if a.personal else ""
        click.echo(
            f"{a.name}\t{a.role}\t{','.join(a.zones_text)}{personal}\tadded {a.added_at:%Y-%m-%d}"
        )
