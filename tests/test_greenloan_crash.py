"""Issue 12 §5's crash test: the sync job, run as the `creditnode greenloan-sync` process,
SIGKILLed at random moments while it pulls a 100,000-change feed, then resumed: the sink ends
equal to the source row by row, and every change was applied exactly once."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import signal
import sys

import pytest
from sqlalchemy import select

from node import changefeed, model
from node.gendata import generate_results
from node.greenloan_sink import APPLIED, GreenLoanSink
from tests.federation_helpers import HUZHOU
from tests.greenloan_helpers import (
    PROVINCE,
    Setup,
    sink_records,
    source_records,
)

CHANGES = 100_000
KILLS = 10


def _import_many(setup: Setup) -> None:
    """Grow Huzhou's journal to CHANGES entries with generated results (in chunks)."""
    huzhou = setup.huzhou
    as_of = huzhou.clock.now().date()
    missing = CHANGES - huzhou.store.changes.head()
    results = generate_results(huzhou.node_id, missing, seed=99, as_of=as_of)
    # Distinct from the fixture's subjects (seed 7): none supersedes one already held.
    for start in range(0, len(results), 20_000):
        chunk = results[start : start + 20_000]
        huzhou.store.results.import_results(
            chunk,
            source=f"bulk-{start}.csv",
            file_sha256="0" * 64,
            fmt="test",
            now=huzhou.clock.now(),
        )
    assert huzhou.store.changes.head() == CHANGES


def _cursor(url: str) -> int:
    sink = GreenLoanSink.open(url)
    try:
        return sink.cursor(HUZHOU)
    finally:
        sink.close()


async def _start_job(home: pathlib.Path, endpoint: str, url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        "greenloan-sync",
        *("--target", endpoint, "--sink", url, "--home", home, "--max-batch", "250"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.volume
async def test_the_job_killed_at_random_moments_resumes_with_each_change_once(
    feed: Setup,
    tmp_path: pathlib.Path,
) -> None:
    await asyncio.to_thread(_import_many, feed)
    url = f"sqlite:///{tmp_path / 'crash-sink.db'}"
    home, endpoint = feed.province.home.path, feed.huzhou.config.listen
    chance = random.Random(20261207)
    kills, last = 0, 0
    while kills < KILLS:
        job = await _start_job(home, endpoint, url)
        # Kill it once it has made progress, at a random moment after that.
        while job.returncode is None and await asyncio.to_thread(_cursor, url) <= last:
            await asyncio.sleep(0.02)
        await asyncio.sleep(chance.uniform(0.0, 0.25))
        if job.returncode is not None:
            break  # finished before we could kill it: the assertion below says so
        os.kill(job.pid, signal.SIGKILL)
        await job.wait()
        kills += 1
        last = await asyncio.to_thread(_cursor, url)
        assert last < CHANGES, "the feed finished before enough kills; lower the batch size"
    assert kills == KILLS
    final = await _start_job(home, endpoint, url)
    _, err = await final.communicate()
    assert final.returncode == 0, err.decode()

    sink = GreenLoanSink.open(url)
    try:
        assert sink.cursor(HUZHOU) == CHANGES
        records = sink_records(sink)
        assert records == source_records(feed.huzhou)
        # Each change the province may see, applied once: no more, no fewer (the journal's
        # primary key would refuse a second application; the count shows none was lost).
        scope = feed.huzhou.feed_scope(PROVINCE, ())
        expected = [
            c.seq
            for c in changefeed.select_changes(feed.huzhou.store.changes.read(0, CHANGES), scope)
        ]
        with sink._begin() as conn:
            applied = [r.seq for r in conn.execute(select(APPLIED.c.seq).order_by(APPLIED.c.seq))]
        assert applied == expected
        assert len(expected) > CHANGES // 3  # enterprises: most of the generated subjects
        assert {r.ztlx for r in records.values()} == {model.SubjectType.ENTERPRISE.name}
    finally:
        sink.close()
