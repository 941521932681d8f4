"""Sending our checkpoints to the witnesses (node.log.witnessing), against a witness that is
down: counted and never raised, and a flush that waits for the round the loop has under way.

Regression (tests/test_federation.py's witness-down test failed about one run in three): a
flush returned while the loop was still sending the same checkpoint, so nothing was counted
yet, and `stop` could end the loop in the middle of its last send.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import grpc
import pytest

from node.errors import ConfigError, CreditNodeError, PeerUnavailable
from node.log import merkle
from node.log.witnessing import WitnessClient, Witnessing
from node.store import Store
from node.wire import pb

JIAXING = "cn-330400"


@dataclasses.dataclass
class Log:
    latest_checkpoint: str = "creditx/cn-330500/log\n1\nAAAA\n"
    tree: merkle.InMemoryTree = dataclasses.field(default_factory=merkle.InMemoryTree)


class DownWitness:
    """A witness whose host is down: its NodeInfo fails after a while."""

    def __init__(self, asked: asyncio.Event) -> None:
        self.asked = asked
        self.closed = False

    @property
    def channel(self) -> grpc.aio.Channel:
        raise AssertionError("no checkpoint goes to a witness whose key is unknown")

    async def node_info(self) -> pb.NodeInfo:
        self.asked.set()
        await asyncio.sleep(0.2)
        raise PeerUnavailable(f"{JIAXING} is unavailable after 4 attempts")

    async def refusal_of(self, exc: grpc.aio.AioRpcError) -> CreditNodeError | None:
        return None  # nothing reached it to refuse

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url) as opened:
        yield opened


async def test_a_flush_waits_for_the_loops_round_and_a_down_witness_is_counted(
    store: Store,
) -> None:
    asked = asyncio.Event()
    clients: list[DownWitness] = []

    def connect(peer: str) -> WitnessClient:
        assert peer == JIAXING
        clients.append(DownWitness(asked))
        return clients[-1]

    witnessing = Witnessing([JIAXING], store, connect)
    on_checkpoint = witnessing.listener()
    witnessing.follow(Log())
    witnessing.start()
    on_checkpoint(1, Log().latest_checkpoint)
    await asyncio.wait_for(asked.wait(), timeout=5)  # the loop's round is under way
    await witnessing.flush()  # must not raise
    assert witnessing.stats.unreachable == 1
    assert witnessing.alive
    assert [c.closed for c in clients] == [True]
    await witnessing.stop()
    assert not witnessing.alive


async def test_a_witness_on_no_trust_list_is_skipped(store: Store) -> None:
    def connect(peer: str) -> WitnessClient:
        raise ConfigError(f"{peer} is on no trust list held here; cannot reach it")

    witnessing = Witnessing([JIAXING], store, connect)
    on_checkpoint = witnessing.listener()
    witnessing.follow(Log())
    on_checkpoint(1, Log().latest_checkpoint)
    await witnessing.flush()
    assert witnessing.stats == type(witnessing.stats)()  # nothing sent, nothing counted
    await witnessing.stop()
