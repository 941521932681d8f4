"""Answering in a worker process, beside the gRPC server (docs/adr/0005-answer-worker.md).

`creditnode serve` terminates TLS and HTTP/2 and authenticates callers in its own process; a
worker process (`python -m node.answer.worker`) decides, signs and logs the answers. The two
share nothing but a socket pair and the database: the worker runs a sequencer of its own on
the same exchange log (the per-batch lock of docs/adr/0002 keeps one linear history with the
server's own appends, e.g. its ASKED entries). Both halves of the work then run at once,
instead of taking turns under one interpreter lock.

The frames are in `node.answer.framing`; the server's side is `node.answer.worker_client`.
"""

import argparse
import asyncio
import ctypes
import json
import logging
import os
import pathlib
import signal
import socket
from collections.abc import Sequence

from node import log_output, policy
from node.answer.framing import POLICY, READY_ID, Outbox, frame, read_frame
from node.answer.parts import AnsweringParts
from node.home import NodeHome
from node.keys import KEYS_REFRESH_S
from node.process import settle_gc

log = logging.getLogger(__name__)

# Under load, a batch waits this long for company before it commits: fewer, larger commits
# (the figures that chose 1 ms are in docs/adr/0005).
COMMIT_DELAY_S = 0.001


async def work(home: NodeHome, sock: socket.socket) -> None:
    """Answer the server's requests until it closes the socket."""
    parts = AnsweringParts(home)
    # This loop only reads requests and writes replies: it may wait for each commit itself,
    # and under load let a batch gather for COMMIT_DELAY_S first.
    # Its batch sizes go to the server with the next reply: the server's metrics are the
    # ones scraped, and this process has no metrics endpoint of its own.
    batches: list[int] = []
    sequencer = parts.sequencer(
        on_batch=batches.append, commit_on_loop=True, commit_delay=COMMIT_DELAY_S
    )
    await sequencer.start()
    answerer = parts.local_answerer(sequencer, count=False)
    settle_gc()
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    writer.write(frame(READY_ID, [b"ready", str(sequencer.tree.size).encode()]))
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    outbox = Outbox(writer, loop)

    async def handle(message_id: int, fields: list[bytes]) -> None:
        try:
            if fields[0] == POLICY:
                await answerer.use_policy(
                    policy.policy_from_mapping(json.loads(fields[1]), "the serving process")
                )
                replies = []
            else:
                single, caller, ours, callers = fields[:4]
                replies = await answerer.answer(
                    caller.decode(),
                    fields[4:],
                    single=single == b"1",
                    membership=policy.Membership(_zones(ours), _zones(callers)),
                )
        except Exception as exc:
            log.exception("answering failed")
            outbox.send(frame(message_id, [b"fault", type(exc).__name__.encode()]))
            return
        out = [b"ok", str(sequencer.tree.size).encode(), ",".join(map(str, batches)).encode()]
        batches.clear()
        for reply in replies:
            out.append((b"1" if reply.refused else b"0") + reply.decision.encode())
            out.append(reply.data)
        outbox.send(frame(message_id, out))

    follow_keys = loop.create_task(_follow_keys(parts), name="follow-keys")
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
        follow_keys.cancel()
        writer.close()
        await sequencer.close()
        parts.store.close()


async def _follow_keys(parts: AnsweringParts) -> None:
    """Re-read keys.json as often as the server does: a key switch set by `keys rotate
    --activate` happens here at the same moment (node.keys.CurrentSigner)."""
    while True:
        await asyncio.sleep(KEYS_REFRESH_S)
        try:
            await asyncio.to_thread(parts.signers.refresh)
        except Exception:
            log.exception("re-reading the signing keys failed; signing on with the keys held")


def _zones(field: bytes) -> frozenset[str]:
    return frozenset(field.decode().split("\n")) - {""}


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when `parent` (the server) dies, and leave at once
    if it is gone already. Where prctl is missing (not Linux), the worker still leaves when
    its socket closes, after finishing the requests in hand."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        log.warning(
            "this system has no prctl: the worker outlives a killed server until its socket closes"
        )
    else:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before the line above took effect
        raise SystemExit("the server that started this worker is gone")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m node.answer.worker")
    parser.add_argument("--home", required=True, type=pathlib.Path)
    parser.add_argument("--fd", required=True, type=int)
    parser.add_argument("--parent", type=int, help="the server's process id: die with it")
    args = parser.parse_args(argv)
    log_output.configure(process_tag="[worker]")  # as its server's: set in the environment
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
