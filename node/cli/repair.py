"""`creditnode repair`: credit repair (信用修复) of penalty records (node.credit_repair)."""

from __future__ import annotations

import pathlib
import re

import click

from node import credit_repair
from node.cli.options import home_option
from node.clock import SYSTEM
from node.home import NodeHome
from node.store import Store

_DAYS = re.compile(r"^(\d{1,4})d?\Z")


class _RepairGroup(click.Group):
    """`repair RECORD --reason …` beside the subcommands `due` and `expire-due`."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["record", *args]
        return super().resolve_command(ctx, args)


@click.group("repair", cls=_RepairGroup)
def repair_group() -> None:
    """Credit repair: `repair RECORD --reason TEXT` repairs one penalty record (refused, with
    the earliest allowed date, before its minimum publicity under NDRC Order No. 36);
    `repair due --within 30d` lists records that become repairable or expire soon;
    `repair expire-due` expires records past their maximum publicity (serve does it by itself;
    this is for cron). A repaired or expired record's flag leaves its subject's results, and
    every peer that received the old result is sent a revocation notice."""


def _store(home: pathlib.Path) -> Store:
    node_home = NodeHome(home)
    return Store.open(node_home.db_url(node_home.load_config()))


@repair_group.command("record", hidden=True)
@click.argument("record_id", metavar="RECORD")
@click.option("--reason", required=True, help="Why: e.g. the repair decision's number.")
@home_option
def repair_record(record_id: str, reason: str, home: pathlib.Path) -> None:
    with _store(home) as store:
        reissued = credit_repair.repair_record(store, record_id, reason, SYSTEM)
    click.echo(
        f"repaired {record_id[:128]}: {len(reissued.replaced)} results re-issued without its flag"
    )
    for old, new in sorted(reissued.replaced.items()):
        click.echo(f"  {old} -> {new}")


@repair_group.command("due")
@click.option(
    "--within", default="30d", show_default=True, help="How far ahead, in days (e.g. 30d)."
)
@home_option
def repair_due(within: str, home: pathlib.Path) -> None:
    """List records that become repairable or expire within the window."""
    found = _DAYS.match(within.strip())
    if found is None:
        raise click.BadParameter("give a number of days, e.g. 30d", param_hint="--within")
    with _store(home) as store:
        items = credit_repair.due(store, SYSTEM, int(found.group(1)))
    for item in items:
        click.echo(f"{item.on}  {item.event:<10}  {item.record_id}")
    click.echo(f"{len(items)} records due within {int(found.group(1))} days")


@repair_group.command("expire-due")
@home_option
def repair_expire_due(home: pathlib.Path) -> None:
    """Expire every record past its maximum publicity now."""
    with _store(home) as store:
        expired = credit_repair.expire_due(store, SYSTEM)
    for record_id in expired:
        click.echo(f"expired {record_id}")
    click.echo(f"{len(expired)} records expired")


def register(main: click.Group) -> None:
    main.add_command(repair_group)
