"""Answering in a worker process: real `creditnode` homes, a real worker process, real TLS.

The federation tests already run every node with its worker (the default); here: the frame
format, a worker killed mid-service (calls fail as UNAVAILABLE, never half-answered, and a new
worker takes over on the same log), the server's view of the log following the worker's, and
answering in-process when configured."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from devtools.federation import build
from node import model, wire
from node.answer import worker_client as answer_worker
from node.answer.framing import pack, unpack
from node.answer.local import LocalAnswerer
from node.answer.worker_client import WorkerAnswerer
from node.errors import StoreUnavailable
from node.home import NodeHome
from node.log.logverify import verify_store
from node.runtime import NodeRuntime
from node.store import log_tables as t
from tests.federation_helpers import HUZHOU, JIAXING, Running, company, started


def test_frames_round_trip_and_truncation_is_refused() -> None:
    fields = [b"", b"caller", bytes(range(256)) * 3]
    assert unpack(pack(fields)) == fields
    with pytest.raises(ValueError, match="truncated"):
        unpack(pack(fields)[:-1])
    with pytest.raises(ValueError, match="trailing"):
        unpack(pack(fields) + b"x")


@pytest.fixture
async def pair(tmp_path: pathlib.Path) -> AsyncIterator[Running]:
    fed = build(
        tmp_path, {HUZHOU: "湖州", JIAXING: "嘉兴"}, {"hjjw": (HUZHOU, JIAXING)}, subjects=20
    )
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in fed.ports}
    async with started(nodes):
        yield fed, nodes


async def test_a_killed_worker_is_replaced_on_the_same_log(
    pair: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed, nodes = pair
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    worker = huzhou.answerer
    assert isinstance(worker, WorkerAnswerer) and worker.pid is not None
    first = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 0))
    assert first.decision is model.Decision.GRANTED

    monkeypatch.setattr(answer_worker, "RESTART_INTERVAL_S", 0.0)
    old_pid = worker.pid
    os.kill(old_pid, signal.SIGKILL)
    # A call that meets the dead worker fails as UNAVAILABLE (the asking side retries those,
    # or logs a FAILED ask); the next one starts a new worker on the same log.
    outcomes = [
        (await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, i))).decision
        for i in range(1, 4)
    ]
    assert set(outcomes) <= {model.Decision.GRANTED, model.Decision.FAILED}
    assert outcomes[-1] is model.Decision.GRANTED
    assert worker.pid is not None and worker.pid != old_pid
    # Whatever happened, Huzhou's log is one linear history that verifies, and holds every
    # answer Jiaxing received.
    report = verify_store(huzhou.store, huzhou.log_signer.verifier())
    assert report.ok, report.problem
    assert report.size >= 1 + outcomes.count(model.Decision.GRANTED)


async def test_the_servers_log_view_follows_the_worker(pair: Running) -> None:
    fed, nodes = pair
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    for i in range(3):
        await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, i))
    # The server's own sequencer wrote none of these: it either caught up already or knows
    # it is behind; after a refresh it holds exactly what the worker committed.
    assert huzhou.sequencer.tree.size == 3 or huzhou.sequencer.behind
    await huzhou.sequencer.refresh()
    with huzhou.store.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(t.log_entries)).scalar_one()
    assert stored == 3 and huzhou.sequencer.tree.size == 3 and not huzhou.sequencer.behind
    note = huzhou.sequencer.latest_checkpoint
    assert int(note.split("\n")[1]) == 3


async def test_answering_in_process_when_configured(tmp_path: pathlib.Path) -> None:
    fed = build(
        tmp_path, {HUZHOU: "湖州", JIAXING: "嘉兴"}, {"hjjw": (HUZHOU, JIAXING)}, subjects=10
    )
    config = NodeHome(fed.home(HUZHOU)).config_file
    text = config.read_text(encoding="utf-8")
    assert "answer_worker = true" in text  # written by `creditnode init`, so operators see it
    config.write_text(
        text.replace("answer_worker = true", "answer_worker = false"), encoding="utf-8"
    )
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in fed.ports}
    async with started(nodes):
        assert isinstance(nodes[HUZHOU].answerer, LocalAnswerer)
        assert isinstance(nodes[JIAXING].answerer, WorkerAnswerer)
        outcome = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 0))
        assert outcome.decision is model.Decision.GRANTED


async def test_a_call_in_flight_when_the_worker_dies_fails_as_unavailable(
    pair: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed, nodes = pair
    worker = nodes[HUZHOU].answerer
    assert isinstance(worker, WorkerAnswerer) and worker.pid is not None
    monkeypatch.setattr(answer_worker, "RESTART_INTERVAL_S", 0.0)
    query = wire.serialize(
        wire.query_to_pb(model.CreditQuery("in-flight", company(fed, 0), "hjjw", "xinyi-dai"))
    )
    old_pid = worker.pid
    os.kill(old_pid, signal.SIGSTOP)  # the request waits in the socket, unanswered
    membership = nodes[HUZHOU].membership(JIAXING)
    call = asyncio.ensure_future(
        worker.answer(JIAXING, [query], single=True, membership=membership)
    )
    await asyncio.sleep(0.2)
    assert not call.done()
    os.kill(old_pid, signal.SIGKILL)
    with pytest.raises(StoreUnavailable, match="answering worker stopped"):
        await asyncio.wait_for(call, 10)
    # The same request id again: a new worker answers it, logged once.
    [reply] = await worker.answer(JIAXING, [query], single=True, membership=membership)
    assert worker.pid != old_pid and not reply.refused and reply.decision == "GRANTED"
    response = wire.parse_response(reply.data)
    assert response.request_id == "in-flight" and response.HasField("receipt")


def _batch_samples() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("creditnode_log_batch_entries_count") or 0.0
    total = REGISTRY.get_sample_value("creditnode_log_batch_entries_sum") or 0.0
    return count, total


async def test_the_workers_batches_reach_the_servers_metrics(pair: Running) -> None:
    """issue 14 §7: creditnode_log_batch_entries stayed 0 after 16 committed answers, which
    the worker committed and observed in its own process, where nothing scrapes."""
    fed, nodes = pair
    worker = nodes[HUZHOU].answerer
    assert isinstance(worker, WorkerAnswerer)
    queries = [
        wire.serialize(
            wire.query_to_pb(model.CreditQuery(f"b-{i}", company(fed, i % 4), "hjjw", "xinyi-dai"))
        )
        for i in range(16)
    ]
    count, total = _batch_samples()
    granted = {"direction": "ANSWERED", "peer": JIAXING, "decision": "GRANTED"}
    counted = REGISTRY.get_sample_value("creditnode_exchanges_total", granted) or 0.0
    replies = await worker.answer(
        JIAXING, queries, single=False, membership=nodes[HUZHOU].membership(JIAXING)
    )
    assert [r.decision for r in replies] == ["GRANTED"] * 16
    # Counted by this process, by caller, from the decisions the worker's replies report.
    assert REGISTRY.get_sample_value("creditnode_exchanges_total", granted) == counted + 16
    # The last batch's size arrives with the reply that follows it: one more call.
    await worker.use_policy(nodes[HUZHOU].policy)
    after_count, after_total = _batch_samples()
    assert after_total - total == 16  # every committed entry, in this process's histogram
    assert 1 <= after_count - count <= 16
