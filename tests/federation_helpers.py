"""Helpers for tests that run real nodes: a node home made by `creditnode init`, the cities of
a `devtools.federation` build, and subjects from Huzhou's generated export to ask about."""

from __future__ import annotations

import contextlib
import csv
import pathlib
from collections.abc import AsyncIterator

from devtools.federation import Federation, run_cli
from node import model
from node.runtime import NodeRuntime

HUZHOU, JIAXING, HANGZHOU, NINGBO, SHANGHAI = (
    "cn-330500",
    "cn-330400",
    "cn-330100",
    "cn-330200",
    "cn-310000",
)


Running = tuple[Federation, dict[str, NodeRuntime]]


@contextlib.asynccontextmanager
async def started(nodes: dict[str, NodeRuntime]) -> AsyncIterator[dict[str, NodeRuntime]]:
    """Start each of `nodes` in turn. However the block ends, and when a later start fails,
    stop every runtime `nodes` holds by then (one the block put in place of another, too):
    a gRPC server left to the garbage collector after its event loop has closed can hang the
    test process in gRPC's shutdown."""
    try:
        for runtime in nodes.values():
            await runtime.start()
        yield nodes
    finally:
        async with contextlib.AsyncExitStack() as stopping:  # each is stopped, come what may
            for runtime in nodes.values():
                stopping.push_async_callback(runtime.stop)


def subjects_of(fed: Federation, node_id: str) -> dict[str, list[str]]:
    """Subject ids of a node's generated export, by ZTLX (subject type)."""
    by_type: dict[str, list[str]] = {}
    with (fed.root / f"{node_id}-export.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_type.setdefault(row["ZTLX"], []).append(row["TYSHXYDM"])
    return by_type


def person(fed: Federation) -> model.SubjectRef:
    return model.SubjectRef(model.SubjectIdType.RESIDENT_ID, subjects_of(fed, HUZHOU)["自然人"][0])


def company(fed: Federation, index: int = 0) -> model.SubjectRef:
    return model.SubjectRef(model.SubjectIdType.USCC, subjects_of(fed, HUZHOU)["企业"][index])


def init_home(root: pathlib.Path, node_id: str, name: str) -> pathlib.Path:
    home = root / node_id
    run_cli("init", "--node-id", node_id, "--name", name, "--home", home)
    return home
