"""Sending our log's checkpoints to the nodes that witness it (DESIGN.md §7; floor 4).

Each time the sequencer signs a checkpoint, the newest one goes to every witness peer through
node.log.witness's `send_checkpoint`; a burst of batches is sent once. Nothing here raises into
the serving path: a witness that cannot be reached is counted and tried at the next checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc

from node import metrics, wire
from node.errors import ConfigError, CreditNodeError
from node.log import merkle, notes
from node.log.witness import WitnessingStats, send_checkpoint
from node.store import Store

log = logging.getLogger(__name__)
FLUSH_ON_STOP_S = 5.0  # how long `stop` waits for the last checkpoint to reach the witnesses


class WitnessClient(Protocol):
    """A mutual-TLS client of one witness (node.peer_client.PeerClient is one)."""

    @property
    def channel(self) -> grpc.aio.Channel: ...

    async def node_info(self) -> wire.pb.NodeInfo: ...

    async def refusal_of(self, exc: grpc.aio.AioRpcError) -> CreditNodeError | None:
        """The witness's refusal of our certificate behind a failed call, if that is it."""
        ...

    async def close(self) -> None: ...


class WitnessedLog(Protocol):
    """The log whose checkpoints are sent (node.log.sequencer.Sequencer is one)."""

    @property
    def latest_checkpoint(self) -> str: ...

    @property
    def tree(self) -> merkle.InMemoryTree: ...


class Witnessing:
    """Our log's checkpoints, sent to `peers`. `connect(peer)` gives a client of that peer, or
    ConfigError when it is on no trust list held.

    Wiring: pass `listener()` to the sequencer as its `on_checkpoint`, `follow` that sequencer,
    then `start`; `stop` sends what is still pending before it ends the loop.
    """

    def __init__(
        self, peers: Sequence[str], store: Store, connect: Callable[[str], WitnessClient]
    ) -> None:
        self.peers = tuple(peers)
        self.stats = WitnessingStats()
        self._store = store
        self._connect = connect
        self._pending: asyncio.Event | None = None  # set: a checkpoint not sent yet
        self._round = asyncio.Lock()  # one round of sends at a time: the loop's or a flush
        self._log: WitnessedLog | None = None
        self._task: asyncio.Task[None] | None = None

    def listener(self) -> Callable[[int, str], None]:
        """The sequencer's `on_checkpoint`, for a log opened on the running loop."""
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        pending = self._pending = asyncio.Event()

        def on_checkpoint(size: int, note: str) -> None:
            """From the commit thread, or from the loop itself (commit_on_loop): there, a
            thread-safe call would cost a wake-up through the loop's self-pipe per batch."""
            if threading.get_ident() == loop_thread:
                pending.set()
            else:
                loop.call_soon_threadsafe(pending.set)

        return on_checkpoint

    def follow(self, witnessed: WitnessedLog) -> None:
        """The log `listener` listens to: its newest checkpoint is what is sent."""
        self._log = witnessed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="witnessing")

    @property
    def alive(self) -> bool:
        """Whether the loop started by `start` still runs (a failing witness must not end it)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._pending is not None and self.peers:
            # Last checkpoints still go to the witnesses before we leave.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), timeout=FLUSH_ON_STOP_S)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        """Send the newest checkpoint to each witness peer; coalesces bursts of batches."""
        assert self._pending is not None
        while True:
            await self._pending.wait()
            await self.flush()

    async def flush(self) -> None:
        """Send the newest checkpoint to each witness peer if one is pending. A round the loop
        has under way is finished first: on return, every checkpoint signed before the call
        has been offered to every witness."""
        assert self._pending is not None and self._log is not None
        async with self._round:
            if not self._pending.is_set():
                return
            self._pending.clear()
            note = self._log.latest_checkpoint
            for peer in self.peers:
                await self.send(peer, note)

    async def send(self, peer: str, note: str) -> None:
        """Never raises: a witness we cannot reach is counted and tried at the next checkpoint."""
        assert self._log is not None
        try:
            client = self._connect(peer)
        except ConfigError:
            log.warning("witness %s is on no trust list held; checkpoint not sent", peer)
            return
        try:
            info = await client.node_info()
            key = notes.NoteVerifier.from_text(info.witness_verifier_key)
            await send_checkpoint(
                client.channel, self._store, self._log.tree, note, key, self.stats
            )
        except (grpc.aio.AioRpcError, CreditNodeError) as exc:
            self.stats.unreachable += 1
            metrics.WITNESS_UNREACHABLE.labels(peer).inc()
            refused = (
                await client.refusal_of(exc) if isinstance(exc, grpc.aio.AioRpcError) else None
            )
            log.warning("witness %s: cannot send checkpoint: %s", peer, refused or exc)
        finally:
            await client.close()
