"""The Green Loan Link changefeed end to end (issue 12 §4-§5): Huzhou's node serving
`GreenLoanSync` over real mutual TLS, the provincial job (a home whose certificate holds the role
`green-loan-sync` on the yrd list) pulling it into a real SQLite or PostgreSQL sink."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import pathlib
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from devtools.ports import free_port
from node import changefeed, model, signing, tls, wire
from node.errors import PeerUnavailable
from node.greenloan_sink import GreenLoanSink
from node.greenloan_sync import FeedRejected, SyncJob
from node.runtime import NodeRuntime
from node.server import GrpcServer
from node.services import greenloan as greenloan_svc
from node.services.greenloan import SERVICE
from tests.federation_helpers import HUZHOU
from tests.greenloan_helpers import (
    PROVINCE,
    Setup,
    applied_seqs,
    job,
    reevaluate,
    sink_records,
    source_records,
)
from tests.services.interchange_node import reason_of


@pytest.fixture(params=["sqlite", "postgresql"])
def sink_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sink.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_the_sink_equals_the_source_and_resumes_with_each_change_once(
    feed: Setup, sink_url: str
) -> None:
    sink = GreenLoanSink.open(sink_url)
    try:
        done = await job(feed, sink, max_batch=7).run()
        expected = source_records(feed.huzhou)
        assert expected and sink_records(sink) == expected
        head = feed.huzhou.store.changes.head()
        assert done.cursor == head and done.lag == 0 and sink.cursor(HUZHOU) == head
        # The node's metrics: the feed's head and where this consumer stands.
        assert REGISTRY.get_sample_value("creditnode_changefeed_head_seq") == head
        consumer = {"consumer": PROVINCE}
        assert REGISTRY.get_sample_value("creditnode_changefeed_consumer_seq", consumer) == head
        assert done.batches == -(-head // 7)  # ceil: each batch covers 7 seqs
        first_run = applied_seqs(sink)
        assert len(first_run) == len(expected)  # one UPSERT per enterprise result, once

        # Re-evaluations: the old result is revoked, the new one upserted, nothing twice.
        old = reevaluate(feed.huzhou, 3, "q2")
        again = await job(feed, sink).run()
        assert (again.upserted, again.revoked) == (3, 3)
        records = sink_records(sink)
        assert records == source_records(feed.huzhou)
        assert not set(old) & set(records)
        assert {records[f"{i}-q2"].xydj for i in old} == {"D"}
        seqs = applied_seqs(sink)
        assert seqs[: len(first_run)] == first_run and len(set(seqs)) == len(seqs)

        # Caught up: another run applies nothing.
        idle = await job(feed, sink).run()
        assert (idle.batches, idle.cursor) == (0, feed.huzhou.store.changes.head())
    finally:
        sink.close()


async def test_a_following_job_receives_live_changes(feed: Setup, tmp_path: pathlib.Path) -> None:
    sink = GreenLoanSink.open(f"sqlite:///{tmp_path / 'live.db'}")
    following = job(feed, sink)
    task = asyncio.create_task(following.run(follow=True))
    try:
        head = feed.huzhou.store.changes.head()
        await _until(lambda: following.state.cursor == head)
        old = reevaluate(feed.huzhou, 2, "live")
        await _until(lambda: following.state.cursor == head + 4)
        records = sink_records(sink)
        assert {f"{i}-live" for i in old} <= set(records) and not set(old) & set(records)
        assert following.state.lag == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sink.close()


async def _until(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _sync_call(runtime: NodeRuntime, request: wire.spb.SyncRequest) -> list[wire.pb.Envelope]:
    client = runtime.peer_client(HUZHOU, "yrd")
    try:
        call = client.channel.unary_stream(
            f"/{SERVICE}/SyncChanges",
            request_serializer=wire.serialize,
            response_deserializer=wire.pb.Envelope.FromString,
        )
        return [m async for m in call(request)]
    finally:
        await client.close()


def _reason(err: grpc.aio.AioRpcError) -> str:
    return reason_of(err)


@pytest.mark.parametrize(
    ("caller", "request_fields", "code", "reason"),
    [
        ("shanghai", {}, grpc.StatusCode.PERMISSION_DENIED, "NOT_GREEN_LOAN_SYNC"),
        (
            "province",
            {"subject_types": [int(model.SubjectType.NATURAL_PERSON)]},
            grpc.StatusCode.PERMISSION_DENIED,
            "SUBJECT_TYPE_NOT_ALLOWED",
        ),
        ("province", {"subject_types": [9]}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (
            "province",
            {"after_seq": 10**9},
            grpc.StatusCode.INVALID_ARGUMENT,
            "CURSOR_AHEAD_OF_FEED",
        ),
    ],
)
async def test_the_feed_refuses_with_a_reason(
    feed: Setup,
    caller: str,
    request_fields: dict[str, object],
    code: grpc.StatusCode,
    reason: str,
) -> None:
    runtime = feed.shanghai if caller == "shanghai" else feed.province
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _sync_call(runtime, wire.spb.SyncRequest(**request_fields))  # type: ignore[arg-type]
    assert caught.value.code() == code
    assert _reason(caught.value) == reason


async def test_subject_type_filter_and_batch_ranges(feed: Setup) -> None:
    envelopes = await _sync_call(
        feed.province, wire.sync_request(0, 5, [model.SubjectType.ENTERPRISE], False)
    )
    bodies = [wire.change_batch_from_bytes(e.payload) for e in envelopes]
    assert bodies[0].first_seq == 1 and bodies[-1].last_seq == feed.huzhou.store.changes.head()
    for before, after in itertools.pairwise(bodies):
        assert after.first_seq == before.last_seq + 1  # contiguous, whatever was left out
    kinds = {c.result.subject_type for b in bodies for c in b.changes if c.result is not None}
    assert kinds == {model.SubjectType.ENTERPRISE}


async def test_the_job_stops_when_the_source_stays_unreachable(
    feed: Setup, tmp_path: pathlib.Path
) -> None:
    sink = GreenLoanSink.open(f"sqlite:///{tmp_path / 'gone.db'}")
    client = feed.province.peer_client(HUZHOU, "yrd")
    gone = grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}")
    try:
        unreachable = SyncJob(
            channel=gone,
            source=HUZHOU,
            audience=PROVINCE,
            key_for=lambda node, keyid: feed.province.trust.peer_key(node, keyid),
            sink=sink,
            clock=feed.province.clock,
            retry_delays=(0.01,),
        )
        with pytest.raises(PeerUnavailable, match="run the job again"):
            await unreachable.run()
        assert sink.cursor(HUZHOU) == 0
    finally:
        await gone.close()
        await client.close()
        sink.close()


# --- a source that sends bad batches: the job stops, nothing of them applied -----------------


class _ScriptedFeed:
    """A GreenLoanSync server that sends the envelopes it is given, whatever they are."""

    def __init__(self, envelopes: list[signing.Envelope]) -> None:
        self.envelopes = envelopes

    async def SyncChanges(
        self, request: wire.spb.SyncRequest, context: object
    ) -> AsyncIterator[wire.pb.Envelope]:
        for envelope in self.envelopes:
            yield wire.envelope_to_pb(envelope)


def _batch(setup: Setup, first: int, last: int) -> signing.Envelope:
    entries = setup.huzhou.store.changes.read(first - 1, last - first + 1)
    scope = setup.huzhou.feed_scope(PROVINCE, ())
    return changefeed.sign_batch(
        changefeed.select_changes(entries, scope),
        first_seq=first,
        last_seq=last,
        issuer=HUZHOU,
        audience=PROVINCE,
        now=setup.huzhou.clock.now(),
        signer=setup.huzhou.parts.signer,
    )


def _flip_last_byte(envelope: signing.Envelope) -> signing.Envelope:
    payload = bytearray(envelope.payload)
    payload[-1] ^= 0x01
    return dataclasses.replace(envelope, payload=bytes(payload))


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("tampered", "does not verify"),
        ("replayed", "already applied"),
        ("reordered", "missing"),
        ("gapped", "missing"),
    ],
)
async def test_the_job_stops_on_a_bad_batch_and_applies_none_of_it(
    feed: Setup, tmp_path: pathlib.Path, case: str, says: str
) -> None:
    one, two, three = _batch(feed, 1, 3), _batch(feed, 4, 6), _batch(feed, 7, 9)
    script = {
        "tampered": [one, _flip_last_byte(two)],
        "replayed": [one, one],
        "reordered": [one, three, two],
        "gapped": [one, three],
    }[case]
    keys = feed.huzhou.keys
    server = GrpcServer(
        {SERVICE: greenloan_svc.methods(_ScriptedFeed(script))},  # type: ignore[arg-type]
        tls.server_credentials(
            keys.tls_private_key_pem(), keys.tls_certificate_pem(), feed.huzhou.trust.anchors_pem
        ),
        "127.0.0.1:0",
    )
    await server.start()
    channel = grpc.aio.secure_channel(
        server.target,
        tls.channel_credentials(
            feed.province.tls_key_pem, feed.province.tls_cert_pem, keys.tls_certificate_pem()
        ),
    )
    sink = GreenLoanSink.open(f"sqlite:///{tmp_path / 'sink.db'}")
    try:
        scripted = SyncJob(
            channel=channel,
            source=HUZHOU,
            audience=PROVINCE,
            key_for=lambda node, keyid: feed.province.trust.peer_key(node, keyid),
            sink=sink,
            clock=feed.province.clock,
        )
        with pytest.raises(FeedRejected, match=says) as caught:
            await scripted.run()
        assert "nothing of it was applied" in caught.value.message
        assert sink.cursor(HUZHOU) == 3  # the good first batch, and nothing after it
        assert applied_seqs(sink) == [c.seq for c in _opened(one).changes]
    finally:
        sink.close()
        await channel.close()
        await server.stop()


def _opened(envelope: signing.Envelope) -> model.ChangeBatch:
    return wire.change_batch_from_bytes(envelope.payload)


# --- the command line ------------------------------------------------------------------------


async def _creditnode(*args: object) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_pulls_into_a_sink_and_says_where_it_stands(
    feed: Setup, tmp_path: pathlib.Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cli-sink.db'}"
    home = feed.province.home.path
    endpoint = feed.huzhou.config.listen
    code, out, err = await _creditnode(
        "greenloan-sync", "--target", endpoint, "--sink", url, "--home", home
    )
    assert code == 0, err
    head = feed.huzhou.store.changes.head()
    assert f"sink at seq {head} of head {head} (lag 0)" in out
    sink = GreenLoanSink.open(url)
    try:
        assert sink_records(sink) == source_records(feed.huzhou)
    finally:
        sink.close()
    # A source that is on no list held here: one clear line, non-zero.
    code, out, err = await _creditnode(
        "greenloan-sync", "--target", "127.0.0.1:1", "--sink", url, "--home", home
    )
    assert code != 0 and "no trust list held here has a member at '127.0.0.1:1'" in err
    assert "Traceback" not in err
