"""Revocation notices end to end (issue 12 §3): Huzhou re-evaluates a result that Jiaxing and
Hangzhou received; each of them — and no other node — gets a signed notice, applies it inside
its running `serve`, marks the result it holds and logs that it did; the stream resumes from
`after_seq`; a tampered or out-of-order notice is refused before anything is marked."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pathlib
import sys
from collections.abc import AsyncIterator

import pytest

from devtools.federation import build
from node import credit_repair, model, signing, wire
from node.home import NodeHome
from node.log.store import LogStore
from node.repair import Severity, china_day
from node.revocation import open_revocation_notice
from node.runtime import NodeRuntime
from node.services.interchange import SERVICE
from node.store.penalties import PenaltyRecord
from tests.federation_helpers import HANGZHOU, HUZHOU, JIAXING, company, started

Nodes = dict[str, NodeRuntime]


@pytest.fixture
async def cities(tmp_path: pathlib.Path) -> AsyncIterator[tuple[Nodes, list[model.SubjectRef]]]:
    fed = build(
        tmp_path,
        {HUZHOU: "湖州", JIAXING: "嘉兴", HANGZHOU: "杭州"},
        {"hjjw": (HUZHOU, JIAXING), "hz-metro": (HANGZHOU, HUZHOU, JIAXING)},
        subjects=30,
    )
    nodes = {n: NodeRuntime(NodeHome(fed.home(n))) for n in (HUZHOU, JIAXING, HANGZHOU)}
    async with started(nodes):
        yield nodes, [company(fed, 0), company(fed, 1)]


async def _until(condition: object, timeout: float = 15.0) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(condition):
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def reevaluate(huzhou: NodeRuntime, subject: model.SubjectRef) -> tuple[str, str]:
    """A new evaluation of the subject: (old result id, new result id)."""
    [old] = huzhou.store.results.get_current(subject.id_type, subject.id)
    new = dataclasses.replace(
        old,
        result_id=f"{old.result_id}-q3",
        level=model.CreditLevel.C,
        native_level="C",
        native_score=None,
        evaluated_at=old.evaluated_at + dt.timedelta(days=10),
    )
    huzhou.store.results.import_results(
        [new], source="q3.csv", file_sha256="0" * 64, fmt="test", now=huzhou.clock.now()
    )
    return old.result_id, new.result_id


async def test_a_reevaluated_result_reaches_exactly_its_recipients(
    cities: tuple[Nodes, list[model.SubjectRef]],
) -> None:
    nodes, (first, second) = cities
    huzhou, jiaxing, hangzhou = nodes[HUZHOU], nodes[JIAXING], nodes[HANGZHOU]
    asked = [
        await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", first),
        await hangzhou.ask(HUZHOU, "hz-metro", "xinyi-dai", first),
        await hangzhou.ask(HUZHOU, "hz-metro", "xinyi-dai", second),  # only Hangzhou has it
    ]
    assert all(o.decision is model.Decision.GRANTED for o in asked)
    kept = jiaxing.store.received.get(HUZHOU, asked[0].answer.result.result_id)  # type: ignore[union-attr]
    assert kept is not None and kept.current and kept.zone == "hjjw"

    old, new = await asyncio.to_thread(reevaluate, huzhou, first)

    def applied_at(node: NodeRuntime) -> bool:
        held = node.store.received.get(HUZHOU, old)
        return held is not None and not held.current

    await _until(lambda: applied_at(jiaxing) and applied_at(hangzhou))
    for node in (jiaxing, hangzhou):
        held = node.store.received.get(HUZHOU, old)
        assert held is not None
        assert held.revoked_reason is model.RevocationReason.RE_EVALUATED
        assert held.superseded_by == new
        assert node.store.received.cursor(HUZHOU) == 1
        # ... and logged that it applied it.
        entries = [wire.record_from_bytes(d) for _, d in LogStore(node.store).entries(0, 10**6)]
        applied = [e for e in entries if e.reason.startswith("REVOCATION_APPLIED")]
        assert [(e.result_id, e.responder_node, e.request_id) for e in applied] == [
            (old, HUZHOU, f"revocation:{HUZHOU}:1")
        ]
        assert applied[0].reason == f"REVOCATION_APPLIED: RE_EVALUATED by {new}"
    # Exactly the recipients: Hangzhou's other result is still current, and the issuer wrote
    # the notice for those two nodes alone.
    other = hangzhou.store.received.get(HUZHOU, asked[2].answer.result.result_id)  # type: ignore[union-attr]
    assert other is not None and other.current
    assert huzhou.store.revocations.recipients(old) == sorted([HANGZHOU, JIAXING])
    assert huzhou.store.revocations.notices(HUZHOU, 0, 10) == []


async def _subscribe(asker: NodeRuntime, after_seq: int) -> list[signing.Envelope]:
    client = asker.peer_client(HUZHOU, "")
    try:
        call = client.channel.unary_stream(
            f"/{SERVICE}/SubscribeRevocations",
            request_serializer=wire.serialize,
            response_deserializer=wire.pb.Envelope.FromString,
        )
        request = wire.spb.SubscribeRevocationsRequest(after_seq=after_seq, follow=False)
        return [wire.envelope_from_pb(m) async for m in call(request)]
    finally:
        await client.close()


async def test_notices_resume_after_seq_and_bad_ones_are_refused(
    cities: tuple[Nodes, list[model.SubjectRef]],
) -> None:
    nodes, subjects = cities
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    for subject in subjects:
        await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", subject)
    olds = [(await asyncio.to_thread(reevaluate, huzhou, s))[0] for s in subjects]
    await _until(lambda: len(huzhou.store.revocations.notices(JIAXING, 0, 10)) == 2)

    every = await _subscribe(jiaxing, 0)
    later = await _subscribe(jiaxing, 1)
    assert [e.payload for e in later] == [every[1].payload]  # resumed after seq 1
    assert await _subscribe(jiaxing, 2) == []

    def check(envelope: signing.Envelope, after: int) -> model.RevocationNotice:
        return open_revocation_notice(
            envelope,
            issuer=HUZHOU,
            audience=JIAXING,
            after_seq=after,
            key_for=lambda node, keyid: jiaxing.trust.peer_key(node, keyid),
        )

    notices = [check(every[0], 0), check(every[1], 1)]
    assert sorted(n.result_id for n in notices) == sorted(olds)
    assert {n.audience_node for n in notices} == {JIAXING}
    flipped = bytearray(every[0].payload)
    flipped[-1] ^= 1
    cases = [
        (dataclasses.replace(every[0], payload=bytes(flipped)), 0, "does not verify"),
        (every[0], 1, "applied already"),  # replayed
        (every[1], 0, "notices 1..1 are missing"),  # gapped / out of order
    ]
    for envelope, after, says in cases:
        with pytest.raises(Exception, match=says):
            check(envelope, after)
    with pytest.raises(Exception, match="addressed to cn-330400, not to us"):
        open_revocation_notice(
            every[0],
            issuer=HUZHOU,
            audience=HANGZHOU,
            after_seq=0,
            key_for=lambda node, keyid: jiaxing.trust.peer_key(node, keyid),
        )


async def test_the_watch_command_applies_notices_for_a_node_that_does_not_serve(
    cities: tuple[Nodes, list[model.SubjectRef]],
) -> None:
    nodes, (first, _) = cities
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    outcome = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", first)
    assert outcome.answer is not None
    home = jiaxing.home
    await jiaxing.stop()  # Jiaxing now only asks, by hand
    nodes[JIAXING] = NodeRuntime(home)  # what the fixture stops at the end
    old, new = await asyncio.to_thread(reevaluate, huzhou, first)
    print("reevaluated", flush=True)
    await _until(lambda: huzhou.store.revocations.recipients(old) == [JIAXING])
    print("recipients", flush=True)
    await _until(lambda: bool(huzhou.store.revocations.notices(JIAXING, 0, 1)))
    print("notices", flush=True)

    code, out, err = await _creditnode(
        "revocations", "watch", "--peer", HUZHOU, "--home", home.path
    )
    assert code == 0, err
    assert f"notice 1 of {HUZHOU}: {old} RE_EVALUATED by {new}" in out
    assert "held here: marked" in out and "1 notices of cn-330500 applied" in out
    held = nodes[JIAXING].store.received.get(HUZHOU, old)
    assert held is not None and held.revoked_reason is model.RevocationReason.RE_EVALUATED
    # Run again: nothing new, nothing applied twice.
    code, out, _ = await _creditnode("revocations", "watch", "--peer", HUZHOU, "--home", home.path)
    assert code == 0 and "0 notices of cn-330500 applied" in out


async def _creditnode(*args: object) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(f"creditnode {args} hung: {err.decode()[-3000:]}") from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_repair_reaches_the_recipients_and_is_not_replayed(
    cities: tuple[Nodes, list[model.SubjectRef]],
) -> None:
    nodes, (first, _) = cities
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    decided = china_day(huzhou.clock.now()) - dt.timedelta(days=1)
    record = PenaltyRecord("CF-0001", first, "湖州测试", Severity.MINOR, decided, {})
    added = await asyncio.to_thread(huzhou.store.penalties.add, [record], huzhou.clock.now())
    [flagged] = added.replaced.values()
    asked = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", first, "rq-repair-1")
    assert asked.answer is not None and asked.answer.result.result_id == flagged
    assert "ADMINISTRATIVE_PENALTY" in asked.answer.result.flags

    reissued = await asyncio.to_thread(
        credit_repair.repair_record, huzhou.store, "CF-0001", "修复决定", huzhou.clock
    )
    repaired = reissued.replaced[flagged]

    def marked() -> bool:
        held = jiaxing.store.received.get(HUZHOU, flagged)
        return held is not None and not held.current

    await _until(marked)
    held = jiaxing.store.received.get(HUZHOU, flagged)
    assert held is not None and held.revoked_reason is model.RevocationReason.CREDIT_REPAIRED
    assert held.superseded_by == repaired
    # The same request id again (our own log keeps one ASKED entry per id, so straight to the
    # peer): decided afresh, the repaired result without the flag, not the stored answer.
    client = jiaxing.peer_client(HUZHOU, "hjjw")
    try:
        again = await client.query(asked.query)
    finally:
        await client.close()
    assert again.result.result_id == repaired
    assert "ADMINISTRATIVE_PENALTY" not in again.result.flags
