"""The server's side of answering in a worker process (docs/adr/0005-answer-worker.md):
`WorkerAnswerer` starts the worker (`python -m node.answer.worker`), hands it each call's
queries over a socket pair (`node.answer.framing`) and returns its replies.

If the worker stops, calls waiting on it fail as UNAVAILABLE (a peer retries those) and the
next call starts a new one. If the server dies, even by SIGKILL, the kernel kills its worker
(Linux: PR_SET_PDEATHSIG): no worker outlives its server to log answers nobody will receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from node import metrics
from node import policy as policies
from node.answer.framing import POLICY, READY_ID, Outbox, frame, read_frame
from node.answer.local import Reply, count_decisions
from node.errors import NodeFault, StoreUnavailable
from node.home import NodeHome

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
RESTART_INTERVAL_S = 1.0  # at most one new worker a second, should one keep dying


class WorkerAnswerer:
    """An `node.answer.local.Answerer` that asks a worker process. `on_log_size` hears the
    worker's committed log size after each reply (the server's sequencer catches up)."""

    def __init__(self, home: NodeHome, on_log_size: Callable[[int], None]) -> None:
        self._home = home
        self._on_log_size = on_log_size
        self._process: subprocess.Popen[bytes] | None = None
        self._outbox: Outbox | None = None  # to the running worker; None while there is none
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[list[bytes]]] = {}
        self._next_id = READY_ID
        self._starting = asyncio.Lock()
        self._last_start = float("-inf")
        self._closed = False
        self._policy: policies.Policy | None = None  # the last one reloaded, if any
        # Made on the serving loop; looked up once (each lookup is a getpid() on Python 3.11).
        self._loop = asyncio.get_running_loop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the worker and wait until it answers (its keys, store and log are open)."""
        async with self._starting:
            if self._outbox is None:
                await self._spawn()

    async def answer(
        self,
        caller: str,
        queries: Sequence[bytes],
        *,
        single: bool,
        membership: policies.Membership,
    ) -> list[Reply]:
        if self._outbox is None:
            await self._restart()
        outbox = self._outbox
        if outbox is None:
            raise StoreUnavailable("the answering worker is not running; ask again")
        fields = await self._exchange(
            outbox,
            [
                b"1" if single else b"0",
                caller.encode(),
                "\n".join(sorted(membership.ours)).encode(),
                "\n".join(sorted(membership.callers)).encode(),
                *queries,
            ],
        )
        replies = [
            Reply(data, meta[:1] == b"1", meta[1:].decode())
            for meta, data in zip(fields[3::2], fields[4::2], strict=True)
        ]
        if len(replies) != len(queries):
            raise NodeFault("the answering worker's reply does not match the request")
        count_decisions(caller, replies)
        return replies

    async def use_policy(self, policy: policies.Policy) -> None:
        """Hand the worker `policy` and wait until it decides by it. A worker started later
        is handed it too, before its first query."""
        self._policy = policy
        if self._outbox is not None:
            await self._send_policy(self._outbox, policy)

    async def _send_policy(self, outbox: Outbox, policy: policies.Policy) -> None:
        await self._exchange(
            outbox, [POLICY, json.dumps(policies.policy_to_mapping(policy)).encode()]
        )

    async def _exchange(self, outbox: Outbox, request: list[bytes]) -> list[bytes]:
        """Send one request frame and return the worker's "ok" reply's fields."""
        self._next_id = self._next_id % 0xFFFF_FFFF + 1
        message_id = self._next_id
        future: asyncio.Future[list[bytes]] = self._loop.create_future()
        self._pending[message_id] = future
        outbox.send(frame(message_id, request))
        try:
            fields = await future
        finally:
            self._pending.pop(message_id, None)
        if fields[0] != b"ok":
            raise NodeFault(f"the answering worker failed: {fields[1].decode(errors='replace')}")
        self._on_log_size(int(fields[1]))
        for size in filter(None, fields[2].split(b",")):
            metrics.LOG_BATCH_SIZE.observe(int(size))  # committed there, scraped here
        return fields

    async def close(self) -> None:
        self._closed = True
        outbox, process = self._outbox, self._process
        self._outbox = None
        if outbox is not None:
            outbox.writer.close()  # the worker finishes what it has and leaves on end of input
        if process is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("answering worker %d did not stop; killing it", process.pid)
                process.kill()
                await asyncio.to_thread(process.wait)
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    async def _restart(self) -> None:
        async with self._starting:
            if self._outbox is not None or self._closed:
                return
            wait = self._last_start + RESTART_INTERVAL_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._spawn()

    async def _spawn(self) -> None:
        self._last_start = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Started from the serving loop's thread: the worker's parent-death signal fires
            # when the thread that started it ends, and this one lasts as long as the server.
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "node.answer.worker",
                    "--home",
                    str(self._home.path),
                    "--fd",
                    str(theirs.fileno()),
                    "--parent",
                    str(os.getpid()),
                ],
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        try:
            message_id, fields = await asyncio.wait_for(read_frame(reader), START_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            code = self._process.poll()
            raise NodeFault(
                "the answering worker did not start"
                + (
                    f" (it exited with status {code}; its errors are in this log)"
                    if code is not None
                    else ""
                )
            ) from exc
        if message_id != READY_ID or fields[:1] != [b"ready"]:
            writer.close()
            raise NodeFault("the answering worker sent no ready frame")
        self._on_log_size(int(fields[1]))
        outbox = Outbox(writer, self._loop)
        self._reader_task = asyncio.create_task(self._read(reader, outbox), name="worker-read")
        if self._policy is not None:  # reloaded since node.toml was read at start
            await self._send_policy(outbox, self._policy)
        self._outbox = outbox
        log.info("answering worker %d started", self._process.pid)

    async def _read(self, reader: asyncio.StreamReader, outbox: Outbox) -> None:
        try:
            while True:
                message_id, fields = await read_frame(reader)
                future = self._pending.get(message_id)
                if future is not None and not future.done():
                    future.set_result(fields)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            if not self._closed:
                log.error(
                    "the answering worker stopped (%s); %d calls fail", exc, len(self._pending)
                )
        finally:
            if self._outbox is outbox:
                self._outbox = None
            outbox.writer.close()
            stopped = StoreUnavailable("the answering worker stopped; ask again")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(stopped)
            if self._process is not None and self._process.poll() is None and not self._closed:
                self._process.kill()  # it broke the protocol: make room for a new one
