"""Issue 14 §4: rotating a node's signing key without an outage. `keys rotate --stage` makes
the next key pending (the node signs on with the current one, `identity export` carries it for
the coordinator); `keys rotate --activate` is refused until the list in force carries it, then
sets a switch moment that a running `serve` — its answer worker too — follows without a
restart. A peer asking all the while gets every answer GRANTED, and every answer verifies
under the lists from before and after. Real nodes over mutual TLS, answering in their worker
process."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import pathlib
import sys
from collections.abc import AsyncIterator

import pytest

from devtools.federation import Federation, build, run_cli
from node import model, signing
from node.clock import ManualClock
from node.errors import KeyMaterialError
from node.home import NodeHome
from node.keys import (
    ACTIVE,
    PENDING,
    VERIFY_ONLY,
    CurrentSigner,
    NodeKeys,
    SigningKeyRecord,
    rfc3339,
    signing_record_at,
)
from node.peer_client import VerifiedAnswer
from node.runtime import NodeRuntime
from node.trust_files import load_home_trust
from tests.federation_helpers import HUZHOU, JIAXING, Running, company, started

CITIES = {HUZHOU: "湖州", JIAXING: "嘉兴"}
ZONES = {"hjjw": (HUZHOU, JIAXING)}
SWITCH_AFTER_S = 10  # the least `--activate --after` takes: both processes re-read keys first


@pytest.fixture
async def pair(tmp_path: pathlib.Path) -> AsyncIterator[Running]:
    fed = build(tmp_path, CITIES, ZONES, subjects=30)
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in CITIES}
    async with started(nodes):
        assert nodes[HUZHOU].answers_in_worker  # the worker must switch as well as the server
        yield fed, nodes


async def creditnode(*args: object) -> tuple[int, str]:
    """The real CLI in a child process, while this event loop serves the nodes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "node.cli", *map(str, args)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def republish(fed: Federation, node_id: str, name: str) -> pathlib.Path:
    """The coordinator takes the member's new identity export and signs the next list."""
    identity = fed.root / f"{node_id}.{name}.identity.json"
    identity.write_text(run_cli("identity", "export", "--home", fed.home(node_id)))
    run_cli(
        "zone",
        "add-member",
        *("--zone", "hjjw", "--identity", identity, "--endpoint", fed.endpoint(node_id)),
        *("--dir", fed.coordinator_dir()),
    )
    return fed.sign_zone("hjjw", name)


async def granted(runtime: NodeRuntime, fed: Federation, index: int) -> VerifiedAnswer:
    outcome = await runtime.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, index % 10))
    assert outcome.decision is model.Decision.GRANTED, outcome.reason
    assert outcome.answer is not None
    return outcome.answer


async def test_staged_key_is_published_before_it_signs_and_no_answer_is_rejected(
    pair: Running,
) -> None:
    fed, nodes = pair
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    home = fed.home(HUZHOU)
    old = (await granted(jiaxing, fed, 0)).signed_by

    # 1. Stage: a pending key, exported for the coordinator; the node signs on with the old.
    run_cli("keys", "rotate", "--stage", "--home", home)
    pending = NodeKeys.open(NodeHome(home)).pending_key()
    assert pending is not None
    new = pending.keyid
    exported = json.loads(run_cli("identity", "export", "--home", home))
    assert {(k["keyid"], k["status"]) for k in exported["signing_keys"]} == {
        (old, "active"),
        (new, PENDING),
    }
    await huzhou.refresh_trust()  # it has re-read keys.json
    assert (await granted(jiaxing, fed, 1)).signed_by == old

    # Activating before any list carries the key is refused, naming the list, and changes
    # nothing.
    manifest = (home / "keys" / "keys.json").read_bytes()
    code, out = await creditnode("keys", "rotate", "--activate", "--home", home)
    assert code == 1, out
    assert out.startswith(f"error: signing key {new} is not in the trust list in force here")
    assert "for hjjw version 1" in out
    assert (home / "keys" / "keys.json").read_bytes() == manifest

    # 2. The coordinator lists the staged key (valid from its staging) in version 2.
    staged_list = republish(fed, HUZHOU, "staged")
    fed.install("hjjw", staged_list, [HUZHOU, JIAXING])
    await jiaxing.refresh_trust()
    listed = jiaxing.trust.peer_key(HUZHOU, new, zone="hjjw")
    assert listed.status == "active" and listed.not_before == pending.not_before

    # 3. Activate: the switch is set SWITCH_AFTER_S ahead; Jiaxing asks all the while.
    code, out = await creditnode(
        "keys", "rotate", "--activate", "--after", SWITCH_AFTER_S, "--home", home
    )
    assert code == 0, out
    assert "in the trust lists in force here: hjjw version 2" in out
    [retired] = [k for k in NodeKeys.open(NodeHome(home)).signing_keys() if k.keyid == old]
    switch_at = retired.not_after
    assert retired.status == VERIFY_ONLY and switch_at is not None
    assert f"signs from {rfc3339(switch_at)}" in out
    answers: list[VerifiedAnswer] = []
    while dt.datetime.now(dt.UTC) < switch_at + dt.timedelta(seconds=2):
        answers.append(await granted(jiaxing, fed, len(answers)))
        await asyncio.sleep(0.3)
    # Each answer is signed by the key that signs at its issued_at: the old one before the
    # switch, the new one from it on; no restart in between.
    for answer in answers:
        issued_at = answer.result.issued_at
        assert issued_at is not None
        assert answer.signed_by == (old if issued_at < switch_at else new), issued_at
    assert {a.signed_by for a in answers} == {old, new}

    # 4. The export after the switch: the next list marks the old key verify-only up to the
    # switch. Every answer of the whole rotation still verifies under it.
    fed.install("hjjw", republish(fed, HUZHOU, "activated"), [HUZHOU, JIAXING])
    await jiaxing.refresh_trust()
    info = jiaxing.trust.peer_key(HUZHOU, old, zone="hjjw")
    assert info.status == VERIFY_ONLY and info.not_after == switch_at
    for answer in answers:
        assert answer.result.issued_at is not None
        key = jiaxing.trust.signing_key(
            HUZHOU, answer.signed_by, answer.result.issued_at, zone="hjjw"
        )
        signing.verify_envelope(
            answer.envelope,
            payload_type=signing.PAYLOAD_CREDIT_RESULT,
            keys={answer.signed_by: key},
        )
    assert (await granted(jiaxing, fed, 0)).signed_by == new


def test_activate_without_a_staged_key_and_a_second_stage_are_refused(
    tmp_path: pathlib.Path,
) -> None:
    home = tmp_path / HUZHOU
    run_cli("init", "--node-id", HUZHOU, "--name", "湖州", "--home", home)
    with pytest.raises(KeyMaterialError, match="no pending signing key to activate"):
        run_cli("keys", "rotate", "--activate", "--home", home)
    run_cli("keys", "rotate", "--stage", "--home", home)
    for again in (("--stage",), ()):
        with pytest.raises(KeyMaterialError, match="is staged already: activate it first"):
            run_cli("keys", "rotate", *again, "--home", home)
    with pytest.raises(RuntimeError, match="Invalid value for '--after'"):
        run_cli("keys", "rotate", "--activate", "--after", 1, "--home", home)
    # A node on no list in force: nothing to wait for, the switch is set.
    out = run_cli("keys", "rotate", "--activate", "--home", home)
    assert "no trust list in force here lists this node" in out
    assert load_home_trust(NodeHome(home)).store.zones() == []


T0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)


def record(name: str, status: str, start: int, end: int | None = None) -> SigningKeyRecord:
    signer = signing.Ed25519Signer.generate()
    return SigningKeyRecord(
        keyid=signer.keyid,
        algorithm=signer.algorithm,
        spki_der=signer.spki_der,
        file=f"{name}.key",
        status=status,
        not_before=T0 + dt.timedelta(hours=start),
        not_after=None if end is None else T0 + dt.timedelta(hours=end),
    )


OLD_ACTIVE = record("old", ACTIVE, 0)
STAGED = record("new", PENDING, 1)
RETIRED = dataclasses.replace(OLD_ACTIVE, status=VERIFY_ONLY, not_after=T0 + dt.timedelta(hours=2))
NEW_ACTIVE = dataclasses.replace(STAGED, status=ACTIVE)
LEGACY_OLD = dataclasses.replace(OLD_ACTIVE, status=VERIFY_ONLY)


@pytest.mark.parametrize(
    ("records", "hours", "signs"),
    [
        ((OLD_ACTIVE, STAGED), 1.5, "old"),  # staged: the old key signs on
        ((STAGED,), 1.5, None),  # a pending key alone never signs
        ((RETIRED, NEW_ACTIVE), 1.5, "old"),  # activated, before the switch
        ((RETIRED, NEW_ACTIVE), 2.0, "new"),  # at the switch itself
        ((RETIRED, NEW_ACTIVE), 9.0, "new"),
        ((LEGACY_OLD, NEW_ACTIVE), 1.5, "new"),  # `keys rotate` alone: the new key at once
        ((OLD_ACTIVE,), -1.0, None),  # before any key's not_before
    ],
)
def test_the_key_that_signs_at_a_moment(
    records: tuple[SigningKeyRecord, ...], hours: float, signs: str | None
) -> None:
    found = signing_record_at(records, T0 + dt.timedelta(hours=hours))
    assert (None if found is None else found.file.removesuffix(".key")) == signs


def test_a_running_signer_switches_at_the_moment_set_without_a_restart(
    tmp_path: pathlib.Path,
) -> None:
    """What serve and its worker hold (node.keys.CurrentSigner), on a manual clock."""
    home = tmp_path / HUZHOU
    run_cli("init", "--node-id", HUZHOU, "--name", "湖州", "--home", home)
    keys = NodeKeys.open(NodeHome(home))
    clock = ManualClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    current = CurrentSigner(keys, clock)
    old = current().keyid
    staged = keys.stage_signing_key(now=clock.now())
    assert current.refresh()
    assert current().keyid == old
    switch_at = clock.now() + dt.timedelta(seconds=30)
    keys.activate_pending_key(switch_at)
    assert current.refresh() and not current.refresh()  # read once per change
    clock.advance(29.999)
    assert current().keyid == old
    clock.advance(0.001)
    assert current().keyid == staged.keyid
    # A restart reads the same schedule.
    assert CurrentSigner(NodeKeys.open(NodeHome(home)), clock)().keyid == staged.keyid
