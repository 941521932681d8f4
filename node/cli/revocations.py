"""`creditnode revocations watch`: apply one peer's revocation notices (node.revocation_watch).

`serve` follows every peer we hold results of by itself; this command is for a node that does
not serve (a city that only asks), for cron, or to catch up by hand.
"""

from __future__ import annotations

import asyncio
import pathlib

import click

from node.cli.options import home_option
from node.home import NodeHome
from node.revocation_watch import Applied


@click.group("revocations")
def revocations_group() -> None:
    """Revocation notices: results we received that their issuer revoked since."""


@revocations_group.command("watch")
@click.option("--peer", required=True, help="The issuing node (its node id).")
@click.option("--follow", is_flag=True, help="Keep running and apply notices as they come.")
@home_option
def watch(peer: str, follow: bool, home: pathlib.Path) -> None:
    """Apply PEER's revocation notices addressed to this node: each is verified (signature,
    addressee, order), logged in our exchange log, and the result we hold is marked. Resumes
    after the last notice applied; a notice that fails its checks stops the command with a
    non-zero exit and nothing of it applied."""
    applied = asyncio.run(_watch(NodeHome(home), peer, follow))
    click.echo(f"{applied} notices of {peer} applied")


async def _watch(home: NodeHome, peer: str, follow: bool) -> int:
    from node.runtime import NodeRuntime  # the runtime is a floor above the watch

    runtime = NodeRuntime(home)
    try:
        await runtime.open_log()
        watcher = runtime.revocation_watch(peer, on_applied=_show)
        try:
            if follow:
                await watcher.follow()
            else:
                await watcher.catch_up()
            return watcher.applied
        finally:
            await watcher.close()
    finally:
        await runtime.stop()


def _show(applied: Applied) -> None:
    notice = applied.notice
    by = f" by {notice.superseded_by}" if notice.superseded_by else ""
    held = "held here: marked" if applied.held else "not held here"
    click.echo(
        f"notice {notice.seq} of {notice.issuer_node}: {notice.result_id} "
        f"{notice.reason.name}{by} at {notice.revoked_at.isoformat()} ({held}; logged at "
        f"#{applied.log_index})"
    )


def register(main: click.Group) -> None:
    main.add_command(revocations_group)
