"""Answering in a worker process, beside the gRPC server (docs/adr/0005-answer-worker.md).

`creditnode serve` terminates TLS and HTTP/2 and authenticates callers in its own process; a
worker process (`python -m node.answer_worker`) decides, signs and logs the answers. The two
share nothing but a socket pair and the database: the worker runs a sequencer of its own on
the same exchange log (the per-batch lock of docs/adr/0002 keeps one linear history with the
server's own appends, e.g. its ASKED entries). Both halves of the work then run at once,
instead of taking turns under one interpreter lock.

The socket carries frames `<message id: u32><length: u32><body>`; a body is a list of byte
fields, each `<length: u32><bytes>`, after a `<count: u32>`.

- request (server → worker): single ("1"/"0"), caller, zones given ("1"/"0"), the zones
  joined by newlines, then each query as received;
- reply (worker → server): "ok", the worker's committed log size, then per query its meta
  (refused "1"/"0" followed by the logged decision) and its serialized response; or "fault"
  and a message when the worker could not answer at all;
- the worker's first frame (id 0): "ready" and its log size.

If the worker stops, calls waiting on it fail as UNAVAILABLE (a peer retries those) and the
next call starts a new one. If the server dies, even by SIGKILL, the kernel kills its worker
(Linux: PR_SET_PDEATHSIG): no worker outlives its server to log answers nobody will receive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import pathlib
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet

from node.answering import Reply, count_decisions
from node.errors import NodeFault, StoreUnavailable
from node.home import NodeHome

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_LENGTH = struct.Struct("<I")
READY_ID = 0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
RESTART_INTERVAL_S = 1.0  # at most one new worker a second, should one keep dying
# Under load, a batch waits this long for company before it commits: fewer, larger commits.
# The unary bench (32 callers) measured about 3,000 calls/s without, 3,550 with 1 ms, 3,300
# with 2 ms, 2,950 with 3 ms (epoll's resolution is 1 ms, so shorter waits are 1 ms too).
COMMIT_DELAY_S = 0.001


def pack(fields: Sequence[bytes]) -> bytes:
    parts = [_LENGTH.pack(len(fields))]
    for field in fields:
        parts.append(_LENGTH.pack(len(field)))
        parts.append(field)
    return b"".join(parts)


def unpack(body: bytes) -> list[bytes]:
    (count,), offset = _LENGTH.unpack_from(body), _LENGTH.size
    fields = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        if offset + length > len(body):
            raise ValueError("truncated frame")
        fields.append(body[offset : offset + length])
        offset += length
    if offset != len(body):
        raise ValueError("trailing bytes in frame")
    return fields


def frame(message_id: int, fields: Sequence[bytes]) -> bytes:
    body = pack(fields)
    return _HEADER.pack(message_id, len(body)) + body


class Outbox:
    """Frames written in one turn of the event loop leave in one write: one system call for
    a batch's worth of requests or replies, not one each."""

    def __init__(self, writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.writer = writer
        self._loop = loop
        self._frames: list[bytes] = []

    def send(self, data: bytes) -> None:
        if not self._frames:
            self._loop.call_soon(self._flush)
        self._frames.append(data)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if not self.writer.is_closing():
            self.writer.write(b"".join(frames))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    message_id, length = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return message_id, unpack(await reader.readexactly(length))


# --- the server's side ------------------------------------------------------------------------


class WorkerAnswerer:
    """An `node.answering.Answerer` that asks a worker process. `on_log_size` hears the
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
        self, caller: str, queries: Sequence[bytes], *, single: bool,
        zones: AbstractSet[str] | None = None,
    ) -> list[Reply]:
        if self._outbox is None:
            await self._restart()
        outbox = self._outbox
        if outbox is None:
            raise StoreUnavailable("the answering worker is not running; ask again")
        self._next_id = self._next_id % 0xFFFF_FFFF + 1
        message_id = self._next_id
        future: asyncio.Future[list[bytes]] = self._loop.create_future()
        self._pending[message_id] = future
        outbox.send(frame(message_id, [
            b"1" if single else b"0", caller.encode(),
            b"0" if zones is None else b"1", "\n".join(sorted(zones or ())).encode(),
            *queries,
        ]))
        try:
            fields = await future
        finally:
            self._pending.pop(message_id, None)
        if fields[0] != b"ok":
            raise NodeFault(f"the answering worker failed: {fields[1].decode(errors='replace')}")
        self._on_log_size(int(fields[1]))
        replies = [Reply(data, meta[:1] == b"1", meta[1:].decode())
                   for meta, data in zip(fields[2::2], fields[3::2], strict=True)]
        if len(replies) != len(queries):
            raise NodeFault("the answering worker's reply does not match the request")
        count_decisions(replies)
        return replies

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
                [sys.executable, "-m", "node.answer_worker", "--home", str(self._home.path),
                 "--fd", str(theirs.fileno()), "--parent", str(os.getpid())],
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
                + (f" (it exited with status {code}; its errors are in this log)"
                   if code is not None else "")
            ) from exc
        if message_id != READY_ID or fields[:1] != [b"ready"]:
            writer.close()
            raise NodeFault("the answering worker sent no ready frame")
        self._on_log_size(int(fields[1]))
        self._outbox = Outbox(writer, self._loop)
        self._reader_task = asyncio.create_task(self._read(reader, self._outbox),
                                                name="worker-read")
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
                log.error("the answering worker stopped (%s); %d calls fail", exc,
                          len(self._pending))
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


# --- the worker's side ------------------------------------------------------------------------


async def work(home: NodeHome, sock: socket.socket) -> None:
    """Answer the server's requests until it closes the socket."""
    from node.runtime import NodeRuntime, settle_gc  # the runtime imports this module

    runtime = NodeRuntime(home)
    # This loop only reads requests and writes replies: it may wait for each commit itself,
    # and under load let a batch gather for COMMIT_DELAY_S first.
    await runtime.open_log(commit_on_loop=True, commit_delay=COMMIT_DELAY_S)
    answerer = runtime.local_answerer(count=False)
    settle_gc()
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    writer.write(frame(READY_ID, [b"ready", str(runtime.sequencer.tree.size).encode()]))
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    outbox = Outbox(writer, loop)

    async def handle(message_id: int, fields: list[bytes]) -> None:
        try:
            single, caller, has_zones, zones = fields[:4]
            replies = await answerer.answer(
                caller.decode(), fields[4:], single=single == b"1",
                zones=frozenset(zones.decode().split("\n")) - {""} if has_zones == b"1"
                else None)
        except Exception as exc:
            log.exception("answering failed")
            outbox.send(frame(message_id, [b"fault", type(exc).__name__.encode()]))
            return
        out = [b"ok", str(runtime.sequencer.tree.size).encode()]
        for reply in replies:
            out.append((b"1" if reply.refused else b"0") + reply.decision.encode())
            out.append(reply.data)
        outbox.send(frame(message_id, out))

    try:
        while True:
            try:
                message_id, fields = await read_frame(reader)
            except asyncio.IncompleteReadError:
                break  # the server closed: finish what is in hand, then leave
            task = loop.create_task(handle(message_id, fields))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    finally:
        writer.close()
        await runtime.sequencer.close()
        runtime.store.close()


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when `parent` (the server) dies, and leave at once
    if it is gone already. Where prctl is missing (not Linux), the worker still leaves when
    its socket closes, after finishing the requests in hand."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        log.warning("this system has no prctl: the worker outlives a killed server until "
                    "its socket closes")
    else:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before the line above took effect
        raise SystemExit("the server that started this worker is gone")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m node.answer_worker")
    parser.add_argument("--home", required=True, type=pathlib.Path)
    parser.add_argument("--fd", required=True, type=int)
    parser.add_argument("--parent", type=int, help="the server's process id: die with it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[worker] %(message)s")
    if args.parent is not None:
        die_with_parent(args.parent)
    # Ctrl-C reaches the whole process group: the server stops first and closes the socket,
    # which is this worker's signal to finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    os.set_inheritable(args.fd, False)
    asyncio.run(work(NodeHome(args.home), sock))


if __name__ == "__main__":
    main()
