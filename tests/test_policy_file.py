"""Issue 14 §2: node.toml's zone policy is picked up by a running node without a restart —
polled like the trust lists, or at once on SIGHUP — by the server and its answering worker;
a file with a mistake is refused with one log line and the policy in force stays."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from devtools.federation import Federation, build
from node import model, runtime
from node.answer import worker_client
from node.answer.worker_client import WorkerAnswerer
from node.home import NodeHome
from node.runtime import NodeRuntime
from tests.federation_helpers import HUZHOU, JIAXING, Running, company, started

REPO = pathlib.Path(__file__).resolve().parents[1]
GOU = "[zones.hjjw.purposes.xinyi-gou]\n"


def _pair(root: pathlib.Path) -> Federation:
    return build(root, {HUZHOU: "湖州", JIAXING: "嘉兴"}, {"hjjw": (HUZHOU, JIAXING)}, subjects=20)


@pytest.fixture
async def pair(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    monkeypatch.setattr(runtime, "CONFIG_POLL_S", 0.05)  # the real loop, polling fast
    fed = _pair(tmp_path)
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in fed.ports}
    async with started(nodes):
        yield fed, nodes


def _config(fed: Federation) -> pathlib.Path:
    return NodeHome(fed.home(HUZHOU)).config_file


def _without_gou(text: str) -> str:
    """node.toml with hjjw's purpose xinyi-gou (and its keys) taken out."""
    start = text.index(GOU)
    end = text.index("\n[", start + len(GOU)) + 1
    return text[:start] + text[end:]


async def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not picked up in time"
        await asyncio.sleep(0.02)


async def test_an_edited_policy_is_picked_up_by_the_running_node_and_its_worker(
    pair: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed, nodes = pair
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    assert isinstance(huzhou.answerer, WorkerAnswerer)  # node.toml's default: answers there
    before = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-gou", company(fed, 0))
    assert before.decision is model.Decision.GRANTED, before.reason

    config = _config(fed)
    config.write_text(_without_gou(config.read_text(encoding="utf-8")), encoding="utf-8")
    await _eventually(lambda: "xinyi-gou" not in huzhou.policy.zones["hjjw"].purposes)

    after = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-gou", company(fed, 1))
    assert after.decision is model.Decision.REFUSED
    assert "PURPOSE_NOT_AGREED" in after.reason and "agreed: green-loan, xinyi-dai" in after.reason
    assert huzhou.node_info().purposes == ["green-loan", "xinyi-dai"]

    # A worker started after the reload decides by the reloaded policy too.
    worker = huzhou.answerer
    assert isinstance(worker, WorkerAnswerer) and worker.pid is not None
    monkeypatch.setattr(worker_client, "RESTART_INTERVAL_S", 0.0)
    old_pid = worker.pid
    os.kill(old_pid, signal.SIGKILL)
    await _eventually(lambda: worker.pid != old_pid or worker._outbox is None)
    again = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-gou", company(fed, 2))
    assert worker.pid != old_pid
    assert again.decision is model.Decision.REFUSED and "PURPOSE_NOT_AGREED" in again.reason


@pytest.mark.parametrize(
    ("mistake", "logged"),
    [
        (lambda text: text + "\n[zones.hjjw\n", "not valid TOML"),
        (
            lambda text: text.replace('"INDIVIDUAL_BUSINESS"]', '"ROBOT"]', 1),
            "unknown subject type 'ROBOT'",
        ),
        (
            lambda text: text.replace("rate_per_minute = 600", "rate_per_minute = -5", 1),
            "[zones.hjjw].rate_per_minute must be a whole number",
        ),
        (lambda text: text.replace('node_id = "cn-330500"', 'node_id = "330500"'), "[node]"),
    ],
    ids=["toml-syntax", "unknown-subject-type", "negative-rate", "bad-node-table"],
)
async def test_a_bad_config_is_refused_and_the_policy_in_force_stays(
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    mistake: Callable[[str], str],
    logged: str,
) -> None:
    fed = _pair(tmp_path)
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in fed.ports}
    async with started(nodes):
        huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
        config = _config(fed)
        # First a good change (xinyi-gou withdrawn), so "the policy in force" is not merely
        # the one the node started with.
        good = _without_gou(config.read_text(encoding="utf-8"))
        config.write_text(good, encoding="utf-8")
        assert await huzhou.reload_config()
        in_force = huzhou.policy

        config.write_text(mistake(good), encoding="utf-8")
        with caplog.at_level(logging.ERROR, logger="node.policy_file"):
            assert not await huzhou.reload_config()
        [line] = [r.getMessage() for r in caplog.records if r.name == "node.policy_file"]
        assert line.startswith(f"{config}: changed configuration refused, the one in force stays")
        assert logged in line
        assert huzhou.policy is in_force and huzhou.policy_file.last_error is not None

        granted = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 0))
        assert granted.decision is model.Decision.GRANTED, granted.reason
        refused = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-gou", company(fed, 1))
        assert "PURPOSE_NOT_AGREED" in refused.reason  # the change before the mistake holds

        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="node.policy_file"):
            assert not await huzhou.reload_config()  # polled again, unchanged: said once
        assert caplog.records == []
        fixed = good.replace("rate_per_minute = 600", "rate_per_minute = 300", 1)
        config.write_text(fixed, encoding="utf-8")
        assert await huzhou.reload_config()  # fixed: taken
        assert huzhou.policy.zones["hjjw"].rate_per_minute == 300
        assert huzhou.policy_file.last_error is None


class Serve:
    """`creditnode serve` of one home in its own process, its output in a file."""

    def __init__(self, fed: Federation, node_id: str) -> None:
        self.home = fed.home(node_id)
        self.ready = fed.root / f"{node_id}.ready"
        self.output = fed.root / f"{node_id}.serve.log"
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "node.cli", "serve"),
                    *("--home", str(self.home), "--ready-file", str(self.ready)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output.read_text(encoding="utf-8", errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve never said {text!r}:\n{self.output.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def serving(tmp_path: pathlib.Path) -> Iterator[tuple[Federation, Serve]]:
    fed = _pair(tmp_path)
    serve = Serve(fed, HUZHOU)
    try:
        serve.wait_for("serving on")
        yield fed, serve
    finally:
        serve.stop()


async def test_sighup_reloads_at_once_even_what_polling_cannot_see(
    serving: tuple[Federation, Serve],
) -> None:
    """The edit keeps node.toml's size, inode and mtime, so polling cannot see it: only the
    SIGHUP that `systemctl reload` sends makes serve read the file again."""
    fed, serve = serving
    jiaxing = NodeRuntime(NodeHome(fed.home(JIAXING)))
    await jiaxing.open_log()
    try:
        granted = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-gou", company(fed, 0))
        assert granted.decision is model.Decision.GRANTED, granted.reason

        config = _config(fed)
        stat = config.stat()
        text = config.read_bytes()
        renamed = text.replace(GOU.encode(), GOU.replace("xinyi-gou", "xinyi-goo").encode())
        assert len(renamed) == len(text)
        with config.open("r+b") as f:  # in place: same inode
            f.write(renamed)
        os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert config.stat().st_ino == stat.st_ino and config.stat().st_size == stat.st_size
        still = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-gou", company(fed, 1))
        assert still.decision is model.Decision.GRANTED, still.reason

        serve.proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(serve.wait_for, "zone policy reloaded")
        refused = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-gou", company(fed, 2))
        assert refused.decision is model.Decision.REFUSED
        assert "PURPOSE_NOT_AGREED" in refused.reason
        assert serve.proc.poll() is None  # SIGHUP reloads; it does not stop serve
    finally:
        await jiaxing.stop()
