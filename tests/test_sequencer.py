"""The sequencer: group commit, durable receipts that verify, no holes, one linear history."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
import sqlalchemy as sa

from node.errors import NodeFault
from node.log import merkle
from node.log.sequencer import Appended, LogWrite, Planned, Receipt, Sequencer
from node.store import Store
from node.store import log_tables as t


def fake_checkpoint(size: int, root: bytes) -> str:
    # The tests of the note format live in test_notes; here the body is enough.
    return f"test/origin\n{size}\n{base64.b64encode(root).decode()}\n"


@pytest.fixture(params=[False, True], ids=["thread", "on-loop"])
async def sequencer(store: Store, request: pytest.FixtureRequest) -> AsyncIterator[Sequencer]:
    # Committing on a thread (the server) and on the event loop (the answer worker).
    seq = Sequencer(store.engine, fake_checkpoint, commit_on_loop=request.param)
    await seq.start()
    yield seq
    await seq.close()


def entry(i: int) -> bytes:
    return f"entry-{i}".encode()


def write(i: int) -> Callable[[int], LogWrite]:
    """The build of `entry(i)`, whatever index the sequencer gives it."""
    return lambda _index: LogWrite(entry(i))


def root_of(note: str) -> bytes:
    return base64.b64decode(note.splitlines()[2])


async def test_concurrent_appends_commit_in_groups_and_verify(
    sequencer: Sequencer, store: Store
) -> None:
    receipts = await asyncio.gather(
        *(sequencer.append(write(i), lambda idx, e: b"failed") for i in range(200))
    )
    assert sorted(r.log_index for r in receipts) == list(range(200))
    with store.connect() as conn:
        checkpoints = conn.execute(sa.select(t.log_checkpoints.c.size)).scalars().all()
        stored = dict(conn.execute(sa.select(t.log_entries.c.idx, t.log_entries.c.data)).all())
    assert len(checkpoints) < 200, "concurrent appends should share batches"
    for receipt in receipts:
        size = int(receipt.checkpoint.splitlines()[1])
        merkle.verify_inclusion(
            receipt.log_index,
            size,
            receipt.leaf_hash,
            list(receipt.inclusion_proof),
            root_of(receipt.checkpoint),
        )
        assert receipt.leaf_hash == merkle.leaf_hash(stored[receipt.log_index])
    # The whole stored log hashes to the latest checkpoint's root.
    leaves = [merkle.leaf_hash(stored[i]) for i in range(200)]
    assert merkle.root_from_leaves(leaves) == root_of(sequencer.latest_checkpoint)


async def test_entry_names_its_own_index(sequencer: Sequencer) -> None:
    receipt = await sequencer.append(
        lambda idx: LogWrite(f"I am {idx}".encode()), lambda idx, e: b""
    )
    assert receipt.leaf_hash == merkle.leaf_hash(f"I am {receipt.log_index}".encode())


async def test_failed_build_fills_its_index_and_others_go_on(
    sequencer: Sequencer, store: Store
) -> None:
    def boom(idx: int) -> LogWrite:
        raise RuntimeError("signing failed")

    good = asyncio.ensure_future(sequencer.append(lambda idx: LogWrite(b"good"), lambda i, e: b""))
    with pytest.raises(RuntimeError, match="signing failed"):
        await sequencer.append(boom, lambda idx, exc: f"FAILED {idx}: {exc}".encode())
    # The failure reached the caller only after its FAILED entry was committed.
    with store.connect() as conn:
        failed = conn.execute(sa.select(t.log_entries.c.data)).scalars().all()
    assert any(e.startswith(b"FAILED") for e in failed)
    await good
    with store.connect() as conn:
        data = conn.execute(sa.select(t.log_entries.c.data).order_by(t.log_entries.c.idx)).scalars()
        entries = list(data)
    assert len(entries) == 2
    assert any(e.startswith(b"FAILED") and b"signing failed" in e for e in entries)


async def test_repeated_request_id_is_written_once(sequencer: Sequencer, store: Store) -> None:
    write = LogWrite(b"answer", requester="cn-330400", request_id="q-1", answer=b"resp")
    await sequencer.append(lambda idx: write, lambda i, e: b"")
    with pytest.raises(Exception, match="answered already"):
        await sequencer.append(lambda idx: write, lambda i, e: b"")
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.log_answers)).scalar() == 1


async def test_restart_resumes_the_same_tree(store: Store) -> None:
    first = Sequencer(store.engine, fake_checkpoint)
    await first.start()
    receipts: list[Receipt] = [await first.append(write(i), lambda i, e: b"") for i in range(5)]
    await first.close()
    second = Sequencer(store.engine, fake_checkpoint)
    await second.start()
    assert second.latest_checkpoint == receipts[-1].checkpoint
    later = await second.append(lambda idx: LogWrite(entry(5)), lambda i, e: b"")
    await second.close()
    assert later.log_index == 5
    merkle.verify_consistency(
        5,
        6,
        root_of(receipts[-1].checkpoint),
        root_of(later.checkpoint),
        second.tree.consistency_proof(5, 6),
    )


@pytest.mark.postgres
async def test_two_sequencers_on_one_postgres_never_share_an_index(postgres_url: str) -> None:
    stores = [Store.open(postgres_url), Store.open(postgres_url, migrate=False)]
    seqs = [Sequencer(s.engine, fake_checkpoint, max_batch=16) for s in stores]
    for s in seqs:
        await s.start()
    try:
        receipts = await asyncio.gather(
            *(seqs[i % 2].append(write(i), lambda i, e: b"") for i in range(300))
        )
    finally:
        for s in seqs:
            await s.close()
    indices = [r.log_index for r in receipts]
    assert sorted(indices) == list(range(300)), "every index assigned exactly once"
    with stores[0].connect() as conn:
        rows = conn.execute(
            sa.select(t.log_entries.c.idx, t.log_entries.c.leaf_hash).order_by(t.log_entries.c.idx)
        ).all()
        sizes = conn.execute(
            sa.select(t.log_checkpoints.c.size, t.log_checkpoints.c.root).order_by(
                t.log_checkpoints.c.size
            )
        ).all()
    tree = merkle.InMemoryTree.from_leaf_hashes([r.leaf_hash for r in rows])
    for size, root in sizes:  # every checkpoint either process signed is of the one history
        assert tree.root(size) == root
    for opened in stores:
        opened.close()


class KeyPlanner:
    """Entries named by key and index; "skip" logs nothing. Records each read call."""

    def __init__(self) -> None:
        self.reads: list[list[str]] = []

    def read(self, conn: sa.Connection, items: Sequence[str]) -> list[tuple[str, int]]:
        size = conn.execute(sa.select(t.log_state.c.size)).scalar_one()
        self.reads.append(list(items))
        return [(key, size) for key in items]

    def build(self, item: str, read: tuple[str, int], index: int) -> Planned:
        assert read[0] == item
        if item == "skip":
            return Planned(None, f"{item}: read at size {read[1]}")
        return Planned(LogWrite(f"{item}@{index}".encode()), f"{item}: read at size {read[1]}")

    def failed(self, item: str, index: int, error: BaseException) -> bytes:
        return b"failed"


async def test_reads_are_filled_in_the_batch_and_a_build_may_log_nothing(
    sequencer: Sequencer, store: Store
) -> None:
    """A planner's read runs inside the batch's transaction before its builds; a build that
    then has nothing to log takes no index, and the others still get consecutive ones."""
    planner = KeyPlanner()
    before = sequencer.tree.size
    keys = ["a", "skip", "b"]
    outcomes = await sequencer.append_many(planner, keys)
    assert planner.reads == [keys]  # one read call for the whole batch
    assert all(isinstance(o, Appended) for o in outcomes)
    first, skipped, third = (o for o in outcomes if isinstance(o, Appended))
    assert skipped == Appended(f"skip: read at size {before}", None)
    assert first.outcome == f"a: read at size {before}"
    assert first.receipt is not None and third.receipt is not None
    assert (first.receipt.log_index, third.receipt.log_index) == (before, before + 1)
    assert third.receipt.leaf_hash == merkle.leaf_hash(f"b@{before + 1}".encode())
    with store.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(t.log_entries)).scalar_one()
            == before + 2
        )


async def test_a_batch_that_logs_nothing_signs_no_checkpoint(
    sequencer: Sequencer, store: Store
) -> None:
    await sequencer.append(lambda idx: LogWrite(b"one"), lambda idx, exc: b"")
    checkpoint = sequencer.latest_checkpoint
    planner = KeyPlanner()
    assert await sequencer.append_many(planner, ["skip"]) == [
        Appended("skip: read at size 1", None)
    ]
    assert sequencer.latest_checkpoint == checkpoint
    with store.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(t.log_checkpoints)).scalar_one()
            == 1
        )
    with pytest.raises(NodeFault, match="logged nothing"):
        await sequencer.append(lambda idx: None, lambda idx, exc: b"")


async def test_under_load_a_batch_waits_for_company(store: Store) -> None:
    """With a commit delay, an append that arrives while a loaded sequencer waits joins the
    batch (one checkpoint for both); without load nothing waits."""
    seq = Sequencer(store.engine, fake_checkpoint, commit_on_loop=True, commit_delay=0.3)
    await seq.start()
    try:

        def write(
            name: str,
        ) -> tuple[Callable[[int], LogWrite], Callable[[int, BaseException], bytes]]:
            return (lambda idx: LogWrite(name.encode())), (lambda idx, exc: b"failed")

        # Queued together: one batch of two, so the sequencer counts as loaded.
        pair = await seq.append_many(KeyPlanner(), ["x", "y"])
        assert (
            len(
                {
                    r.receipt.checkpoint
                    for r in pair
                    if isinstance(r, Appended) and r.receipt is not None
                }
            )
            == 1
        )
        first = asyncio.ensure_future(seq.append(*write("a")))
        await asyncio.sleep(0.05)  # the sequencer is waiting for company now
        second = asyncio.ensure_future(seq.append(*write("b")))
        a, b = await asyncio.gather(first, second)
        assert a.checkpoint == b.checkpoint and b.log_index == a.log_index + 1
    finally:
        await seq.close()
