"""`creditnode greenloan-sync`: the reference Green Loan Link sync job (node.greenloan_sync)."""

from __future__ import annotations

import asyncio
import pathlib
import sys

import click
from tqdm import tqdm

from node import model
from node.cli.options import home_option
from node.errors import ConfigError
from node.greenloan_sink import GreenLoanSink
from node.greenloan_sync import SyncJob, SyncProgress
from node.home import NodeHome
from node.trust import TrustStore

SUBJECT_TYPES = [t.name for t in model.SubjectType]


def find_source(trust: TrustStore, target: str) -> tuple[str, str]:
    """(node id, zone) of the member `target` names: a node id or its endpoint HOST:PORT."""
    for zone in trust.zones():
        held = trust.trust_list(zone)
        for member in held.members if held is not None else ():
            if target in (member.node_id, member.endpoint):
                return member.node_id, zone
    raise ConfigError(
        f"no trust list held here has a member at {target[:100]!r}: the source node must be on a "
        "list this home holds (`creditnode zone install`), named by node id or by its endpoint"
    )


@click.command("greenloan-sync")
@click.option(
    "--target",
    required=True,
    help="The node to pull from: its endpoint HOST:PORT as on the trust list, or its node id.",
)
@click.option(
    "--sink",
    "sink_url",
    required=True,
    help="Sink database URL: sqlite:///path/sink.db or postgresql+psycopg://user@host/db.",
)
@click.option("--follow", is_flag=True, help="Keep running and apply live changes as they come.")
@click.option(
    "--subject-type",
    "subject_types",
    multiple=True,
    type=click.Choice(SUBJECT_TYPES, case_sensitive=False),
    help="Only these subject types (repeatable; default: all the green-loan purpose allows).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(0, 1000),
    default=0,
    show_default="the node's default, 500",
    help="Changes per signed batch.",
)
@home_option
def greenloan_sync(
    target: str,
    sink_url: str,
    follow: bool,
    subject_types: tuple[str, ...],
    max_batch: int,
    home: pathlib.Path,
) -> None:
    """Pull a node's signed changefeed into a sink database in the Green Loan Link record
    format (adapters/greenloan.md), as this home's identity (its certificate must hold the
    role green-loan-sync on a trust list the node is on).

    Every batch's signature and continuity is checked and the batch is committed together with
    the cursor; run again (or after a crash) to resume where the sink stands. A tampered,
    reordered, gapped or replayed batch stops the job with a non-zero exit and nothing of it
    applied.
    """
    types = tuple(model.SubjectType[name.upper()] for name in subject_types)
    progress = asyncio.run(_sync(NodeHome(home), target, sink_url, follow, types, max_batch))
    click.echo(
        f"synced: sink at seq {progress.cursor} of head {progress.head} (lag {progress.lag}); "
        f"this run applied {progress.batches} batches: {progress.upserted} upserts, "
        f"{progress.revoked} revocations"
    )


async def _sync(
    home: NodeHome,
    target: str,
    sink_url: str,
    follow: bool,
    subject_types: tuple[model.SubjectType, ...],
    max_batch: int,
) -> SyncProgress:
    from node.runtime import NodeRuntime  # the runtime is a floor above this module's job

    runtime = NodeRuntime(home)
    sink = None
    bar = tqdm(unit="chg", disable=not sys.stderr.isatty(), dynamic_ncols=True)
    try:
        source, zone = find_source(runtime.trust, target)
        client = runtime.peer_client(source, zone)
        sink = GreenLoanSink.open(sink_url)

        def show(state: SyncProgress) -> None:
            bar.total = state.head
            bar.n = state.cursor
            bar.set_postfix_str(f"lag {state.lag}", refresh=True)

        job = SyncJob(
            channel=client.channel,
            source=source,
            audience=runtime.node_id,
            key_for=lambda node, keyid: runtime.trust.peer_key(node, keyid),
            sink=sink,
            clock=runtime.clock,
            subject_types=subject_types,
            max_batch=max_batch,
            progress=show,
        )
        try:
            return await job.run(follow=follow)
        finally:
            await client.close()
    finally:
        bar.close()
        if sink is not None:
            sink.close()
        await runtime.stop()


def register(main: click.Group) -> None:
    main.add_command(greenloan_sync)
