"""The sequencer: the exchange log's only writer, with group commit (DESIGN.md §7).

Order of work for one append: reserve the next index, let the caller build its entry for that
index (a signed result names it), store the entry, the completed tree nodes, the new tree state
and one signed checkpoint for the whole batch in ONE transaction, commit (one fsync), and only
then release the callers' receipts. A caller whose entry cannot be built gets a FAILED entry in
its reserved index, so the log never has a hole.

Callers hand in items with a `Planner`: for each batch, the planner reads what its items need
inside the batch's transaction (`read`, once for all its items), then builds each item's
entry for the index reserved for it (`build`), or the FAILED entry when that raised
(`failed`). So an answer is decided on what the database holds at the moment its entry is
written, and one thread hop and one transaction serve the whole batch. A build returns what
it logs and what its caller gets back (`Planned`); one with nothing to log (a replayed
request id) takes no index. A batch committed one by one after a conflict is read and built
again from scratch: a planner keeps no state between its calls.

The database work runs one batch at a time, on the sequencer's own thread, or on the event loop
itself for a process whose loop has nothing else to do (`commit_on_loop`, the answer worker);
either way the builds, and whatever state they touch, never run concurrently.

Several processes may share one PostgreSQL database: each batch first takes the row lock on
`log_state` (an UPDATE), so exactly one process sequences at a time and every batch starts from
the size the database holds (docs/adr/0002-sequencer-election.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import sqlalchemy as sa

from node import metrics
from node.clock import SYSTEM, Clock
from node.errors import Conflict, NodeFault, StoreUnavailable
from node.log import merkle, notes
from node.log import store as log_store
from node.log.store import AnswerReplaced
from node.store.engine import SQLITE_BEGIN, SQLITE_BEGIN_BY_CALLER

log = logging.getLogger(__name__)

FOLLOW_INTERVAL_S = 0.5  # how often to catch up with another process's appends, at most


@dataclasses.dataclass(frozen=True, slots=True)
class LogWrite:
    """What one caller writes: the entry bytes and, for an answer, its idempotency row."""

    entry: bytes
    requester: str = ""
    request_id: str = ""
    answer: bytes = b""  # the serialized response, replayed for a repeated request id
    # The log index of the stored answer this one takes the place of (a repeated request id
    # decided again: DESIGN.md §6); None for a request id answered the first time.
    replaces: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Receipt:
    log_index: int
    leaf_hash: bytes
    checkpoint: str
    inclusion_proof: tuple[bytes, ...]


# Two per appended item: named tuples, which cost less to make than dataclasses.


class Planned(NamedTuple):
    """What a build logs (None: nothing, and it takes no index) and what its caller gets
    back once the batch is durable."""

    write: LogWrite | None
    outcome: Any = None


class Appended(NamedTuple):
    """An item's outcome (as its build planned it) and its receipt (None: nothing logged)."""

    outcome: Any
    receipt: Receipt | None


ItemT = TypeVar("ItemT")
ItemT_contra = TypeVar("ItemT_contra", contravariant=True)


class Planner(Protocol[ItemT_contra]):
    """How a caller's items become log entries, called one batch at a time where the
    sequencer writes (its thread, or its event loop), never concurrently."""

    def read(self, conn: sa.Connection, items: Sequence[ItemT_contra]) -> Sequence[Any]:
        """What each item's build needs from the database, in the batch's transaction."""
        ...

    def build(self, item: ItemT_contra, read: Any, index: int) -> Planned:
        """The item's entry for log index `index`, given what `read` returned for it."""
        ...

    def failed(self, item: ItemT_contra, index: int, error: BaseException) -> bytes:
        """The FAILED entry logged in `index` when `build` raised `error`."""
        ...


SignCheckpoint = Callable[[int, bytes], str]  # (tree size, root hash) -> signed note text
Result = Appended | BaseException  # an item's fate: appended, or kept out of the log by this


class _Entries:
    """A planner for callers that only append entry bytes (`Sequencer.append`)."""

    def read(self, conn: sa.Connection, items: Sequence[Any]) -> Sequence[Any]:
        return [None] * len(items)

    def build(
        self,
        item: tuple[Callable[[int], LogWrite | None], Callable[[int, BaseException], bytes]],
        read: Any,
        index: int,
    ) -> Planned:
        return Planned(item[0](index))

    def failed(
        self,
        item: tuple[Callable[[int], LogWrite | None], Callable[[int, BaseException], bytes]],
        index: int,
        error: BaseException,
    ) -> bytes:
        return item[1](index, error)


_ENTRIES = _Entries()


class _Group:
    """The appends of one call: one future for all of them, resolved when the last is settled
    (a group may span batches), so a batch of N items costs one wake-up, not N."""

    __slots__ = ("future", "outcomes", "remaining", "settled")

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[list[Result]] = loop.create_future()
        self.outcomes: list[Result] = [_UNSETTLED] * size
        self.settled = [False] * size
        self.remaining = size

    def settle(self, slot: int, outcome: Result) -> None:
        if self.settled[slot]:
            return
        self.settled[slot] = True
        self.outcomes[slot] = outcome
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.outcomes)


@dataclasses.dataclass(slots=True)
class _Pending:
    planner: Planner[Any]
    item: Any
    group: _Group
    slot: int


class Sequencer:
    """Group-committing appender. `append` returns only after the entry is durable."""

    def __init__(
        self,
        engine: sa.Engine,
        sign_checkpoint: SignCheckpoint,
        *,
        max_batch: int = 512,
        on_checkpoint: Callable[[int, str], None] | None = None,
        on_batch: Callable[[int], None] = metrics.LOG_BATCH_SIZE.observe,
        commit_on_loop: bool = False,
        commit_delay: float = 0.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self._engine = engine
        self._clock = clock  # stamps entries' created_at
        self._sign_checkpoint = sign_checkpoint
        self._max_batch = max_batch
        self._on_checkpoint = on_checkpoint
        # Hears each committed batch's entry count: the histogram, or for the answer worker,
        # whose metrics nobody scrapes, the frames that carry it to the serving process.
        self._on_batch = on_batch
        # Commit on the event loop itself, blocking it for the batch's transaction: for a
        # process whose loop has nothing else to do meanwhile (the answer worker), this saves
        # the hand-over to a thread and back for every batch (docs/adr/0005).
        self._commit_on_loop = commit_on_loop
        # Under load (the last batch had company), wait this long before taking a batch, so
        # that appends on their way join it: fewer, larger commits (PostgreSQL's commit_delay).
        # A lone caller never waits.
        self._commit_delay = commit_delay
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        # Looked up once: on Python 3.11 every asyncio.get_running_loop() is a getpid() call.
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._conn: sa.Connection | None = None  # the sequencer thread's; see _connection
        self._observed = 0  # the largest log size another process told us of
        self._refresher: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._tree = merkle.InMemoryTree()
        self._tree_lock = threading.Lock()
        self.latest_checkpoint = ""

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sequencer")
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(self._thread, self._load)
        self._worker = self._loop.create_task(self._run(), name="sequencer")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._thread is not None:
            if self._commit_on_loop:
                self._drop_connection()
            else:
                await self.loop.run_in_executor(self._thread, self._drop_connection)
            self._thread.shutdown(wait=True)
            self._thread = None

    @property
    def running(self) -> bool:
        """Whether appends are taken: started, not closed, its worker task alive."""
        return self._worker is not None and not self._worker.done()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the sequencer runs on (its callers' loop)."""
        if self._loop is None:
            raise NodeFault("the exchange log sequencer is not running")
        return self._loop

    def observe(self, size: int) -> None:
        """Another process (an answering worker) committed the log up to `size`: catch up in
        the background, at most every FOLLOW_INTERVAL_S, so that checkpoints and witnessing
        follow without costing this process a database read per batch. (Proof and checkpoint
        requests for a larger tree catch up at once: `refresh`.)"""
        if size <= self._tree.size or self._thread is None:
            return
        self._observed = max(self._observed, size)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._follow(), name="sequencer-follow")

    @property
    def behind(self) -> bool:
        """Another process told of appends this sequencer has not caught up with yet."""
        return self._observed > self._tree.size

    async def _follow(self) -> None:
        while self._observed > self._tree.size:
            try:
                await self.refresh()
            except Exception:
                log.exception("catching up with the exchange log failed; will retry")
            await asyncio.sleep(FOLLOW_INTERVAL_S)

    async def refresh(self) -> None:
        """Catch up with what other processes committed: entries and the latest checkpoint."""
        if self._thread is None:
            raise NodeFault("the exchange log sequencer is not running")
        await asyncio.get_running_loop().run_in_executor(self._thread, self._refresh)

    def _refresh(self) -> None:
        before = self._tree.size
        known = notes.checkpoint_size(self.latest_checkpoint)
        with self._engine.connect() as conn:
            # The checkpoint first, then the leaves: the tree always covers the checkpoint.
            latest = log_store.latest_checkpoint(conn)
            self._catch_up(conn)
        metrics.LOG_ENTRIES.inc(self._tree.size - before)
        if latest is not None and latest[0] > known:
            self.latest_checkpoint = latest[1]
            if self._on_checkpoint is not None:
                self._on_checkpoint(*latest)

    @property
    def tree(self) -> merkle.InMemoryTree:
        """The committed tree, for proofs (covers at least every committed checkpoint)."""
        return self._tree

    def receipt_for(self, index: int) -> Receipt:
        """A receipt for an earlier entry against the latest checkpoint (for replays)."""
        with self._tree_lock:
            size = notes.checkpoint_size(self.latest_checkpoint)
            if not 0 <= index < size:
                raise NodeFault(f"log index {index} is not under the latest checkpoint")
            return Receipt(
                log_index=index,
                leaf_hash=self._tree.leaf(index),
                checkpoint=self.latest_checkpoint,
                inclusion_proof=tuple(self._tree.inclusion_proof(index, size)),
            )

    # --- the public operation ---------------------------------------------------------------

    async def append_many(self, planner: Planner[ItemT], items: Sequence[ItemT]) -> list[Result]:
        """Several appends queued together (they land in the same batch when they fit): each
        item's Appended (its planned outcome and receipt), or the exception that kept it out
        of the log."""
        if self._worker is None or self._worker.done():
            raise NodeFault("the exchange log sequencer is not running")
        if not items:
            return []
        assert self._loop is not None  # the worker runs, so start() set it
        group = _Group(len(items), self._loop)
        for slot, item in enumerate(items):
            self._queue.put_nowait(_Pending(planner, item, group, slot))
        return await group.future

    async def append(
        self, build: Callable[[int], LogWrite | None], failed: Callable[[int, BaseException], bytes]
    ) -> Receipt:
        """Reserve an index, build the entry for it, and return once it is durable."""
        [outcome] = await self.append_many(_ENTRIES, [(build, failed)])
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome.receipt is None:
            raise NodeFault("the entry's build logged nothing")
        return outcome.receipt

    # --- the worker --------------------------------------------------------------------------

    async def _run(self) -> None:
        loaded = False  # the last batch had more than one append
        while True:
            batch = [await self._queue.get()]
            if self._commit_delay and (loaded or not self._queue.empty()):
                await asyncio.sleep(self._commit_delay)
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            loaded = len(batch) > 1
            await self._commit_and_release(batch)

    async def _commit_and_release(self, batch: list[_Pending]) -> None:
        dbapi = self._engine.dialect.loaded_dbapi  # the batch's statements go to the driver
        try:
            assert self._loop is not None
            receipts = (
                self._commit(batch)
                if self._commit_on_loop
                else await self._loop.run_in_executor(self._thread, self._commit, batch)
            )
        except (sa.exc.IntegrityError, dbapi.IntegrityError, AnswerReplaced):
            if len(batch) > 1:
                # Two writes for one (requester, request id) met in one batch, e.g. from two
                # processes: commit one by one so only the repeat fails.
                for pending in batch:
                    await self._commit_and_release([pending])
                return
            self._fail(batch, Conflict("this request id was answered already; ask again"))
            return
        except (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            dbapi.OperationalError,
            dbapi.InterfaceError,
        ) as exc:
            log.error("log batch of %d failed: %s", len(batch), exc)
            self._fail(batch, StoreUnavailable("the exchange log store is unavailable"))
            return
        except Exception as exc:
            log.exception("log batch of %d failed", len(batch))
            self._fail(batch, exc)
            return
        for pending, outcome in zip(batch, receipts, strict=True):
            pending.group.settle(pending.slot, outcome)

    @staticmethod
    def _fail(batch: Sequence[_Pending], error: BaseException) -> None:
        for pending in batch:
            pending.group.settle(pending.slot, error)

    def _load(self) -> None:
        with self._engine.connect() as conn:
            self._catch_up(conn)
            latest = log_store.latest_checkpoint(conn)
            self.latest_checkpoint = latest[1] if latest else ""

    def _catch_up(self, conn: sa.Connection) -> None:
        """Load leaves other processes (or earlier runs) committed beyond our tree."""
        rows = log_store.leaf_hashes_from(conn, self._tree.size)
        with self._tree_lock:
            if self._tree.size == 0:
                self._tree = merkle.InMemoryTree.from_leaf_hashes(list(rows))
            else:
                self._tree.extend(rows)

    def _commit(self, batch: Sequence[_Pending]) -> list[Result]:
        """Runs in the sequencer's thread: it never touches the callers' futures."""
        conn = self._connection()
        try:
            receipts = self._write(conn, batch)
        except BaseException:
            # A failed batch may leave its connection unusable: the next takes a fresh one.
            self._drop_connection()
            raise
        return receipts

    def _connection(self) -> sa.Connection:
        """The sequencer thread's own connection, kept from batch to batch."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect()
            if self._conn.dialect.name == "sqlite":
                self._conn.execution_options(**{SQLITE_BEGIN: SQLITE_BEGIN_BY_CALLER})
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _write(self, conn: sa.Connection, batch: Sequence[_Pending]) -> list[Result]:
        with conn.begin():
            writer = log_store.BatchWriter(conn)
            state_size, packed = writer.lock()  # one process sequences at a time
            if state_size != self._tree.size:
                self._catch_up(conn)
            if state_size != self._tree.size:
                raise NodeFault(f"log state says size {state_size}, entries give {self._tree.size}")
            frontier = [packed[i : i + 32] for i in range(0, len(packed), 32)]
            compact = merkle.CompactRange.from_frontier(state_size, frontier)
            written = log_store.Batch()
            completed: list[merkle.CompletedNode] = []
            leaves: list[bytes] = []
            # Per pending: its offset in the batch's entries (None: logged nothing), its
            # planned outcome, and the exception that turned its entry into a FAILED one.
            placed: list[int | None] = []
            planned: list[Any] = []
            failures: dict[int, BaseException] = {}
            reads = self._read(conn, batch)
            for pending, read in zip(batch, reads, strict=True):
                offset = len(leaves)
                index = state_size + offset
                try:
                    plan = pending.planner.build(pending.item, read, index)
                    write, outcome = plan.write, plan.outcome
                except Exception as exc:
                    # The caller learns of the failure only once its FAILED entry is durable.
                    write = LogWrite(entry=pending.planner.failed(pending.item, index, exc))
                    outcome = None
                    failures[offset] = exc
                planned.append(outcome)
                if write is None:
                    placed.append(None)
                    continue
                placed.append(offset)
                leaf = merkle.leaf_hash(write.entry)
                leaves.append(leaf)
                written.entries.append((index, write.entry, leaf))
                done = compact.append(leaf)
                completed.extend(done)
                written.nodes.extend((node.level, node.index, node.hash) for node in done[1:])
                if write.request_id:
                    if write.replaces is None:
                        written.answers.append(
                            (write.requester, write.request_id, index, write.answer)
                        )
                    else:
                        written.replaced.append(
                            (index, write.answer, write.requester, write.request_id, write.replaces)
                        )
            if not leaves:  # every build had nothing to log: no new checkpoint either
                writer.close()
                return [Appended(outcome, None) for outcome in planned]
            size, root = compact.size, compact.root()
            note = self._sign_checkpoint(size, root)
            writer.write(
                written,
                self._clock.now(),
                size,
                b"".join(h for _, h in compact.frontier),
                root,
                note,
            )
            writer.close()
        # Committed: only now extend the tree that proofs are served from.
        with self._tree_lock:
            # The batch's nodes were hashed once, above; the served tree takes them as they are.
            self._tree.adopt(completed, compact)
            proofs = self._tree.inclusion_proofs(range(state_size, size), size)
            receipts: list[Result] = [
                Appended(outcome, None)
                if i is None
                else failures[i]
                if i in failures
                else Appended(
                    outcome,
                    Receipt(
                        log_index=state_size + i,
                        leaf_hash=leaves[i],
                        checkpoint=note,
                        inclusion_proof=tuple(proofs[i]),
                    ),
                )
                for i, outcome in zip(placed, planned, strict=True)
            ]
        self.latest_checkpoint = note
        metrics.LOG_ENTRIES.inc(len(leaves))
        self._on_batch(len(leaves))
        if self._on_checkpoint is not None:
            self._on_checkpoint(size, note)
        return receipts

    @staticmethod
    def _read(conn: sa.Connection, batch: Sequence[_Pending]) -> list[Any]:
        """Each pending's read: one `read` call per planner for all of its items."""
        if len(batch) == 1 or all(p.planner is batch[0].planner for p in batch):
            planner = batch[0].planner
            return list(planner.read(conn, [p.item for p in batch]))
        positions: dict[int, list[int]] = {}
        for i, pending in enumerate(batch):
            positions.setdefault(id(pending.planner), []).append(i)
        reads: list[Any] = [None] * len(batch)
        for at in positions.values():
            planner = batch[at[0]].planner
            for i, value in zip(at, planner.read(conn, [batch[i].item for i in at]), strict=True):
                reads[i] = value
        return reads


_UNSETTLED = RuntimeError("unsettled")
