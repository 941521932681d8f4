"""Issue 14 §3: the coordinator publishes the signed list over HTTP (`creditnode zone serve`)
and members poll `[zones.<zone>] trust_list_url` — a conditional GET answered 304 while the
list is unchanged, a newer list taken by a running node, a tampered or rolled-back one refused
with the last good list kept, an unreachable URL never fatal. Real nodes over mutual TLS, a
real HTTP server on port 0."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pathlib
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from devtools.federation import Federation, build, run_cli
from node import model, signing, trust_fetch, trust_publish, wire
from node.errors import (
    BadSignature,
    ConfigError,
    PeerError,
    PeerUnavailable,
    RolledBackTrustList,
)
from node.home import NodeHome, dumps_toml
from node.runtime import NodeRuntime
from node.trust_files import trust_list_path
from node.trust_model import TrustList
from tests.federation_helpers import HANGZHOU, HUZHOU, JIAXING, company, started

CITIES = {HUZHOU: "湖州", JIAXING: "嘉兴", HANGZHOU: "杭州"}
# Hangzhou shares hz-metro with both (so it can connect), and is not in hjjw at first.
ZONES = {"hjjw": (HUZHOU, JIAXING), "hz-metro": (HUZHOU, JIAXING, HANGZHOU)}
POLL_S = 0.1


def set_trust_list_url(home: pathlib.Path, zone: str, url: str) -> None:
    """What a member does once: `trust_list_url` under its `[zones.<zone>]` table."""
    node_home = NodeHome(home)
    doc = node_home.load_document()
    doc.setdefault("zones", {}).setdefault(zone, {})["trust_list_url"] = url
    node_home.config_file.write_text(dumps_toml(doc), encoding="utf-8")


class Publisher:
    """`zone serve`'s application on a real port; the coordinator signs into `root`."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.root = fed.root / "published"
        self.root.mkdir(exist_ok=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        self.runner, self.port = await trust_publish.start(self.root, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def url(self, zone: str) -> str:
        return f"http://127.0.0.1:{self.port}/{zone}.trustlist.json"

    def path(self, zone: str) -> pathlib.Path:
        return self.root / f"{zone}.trustlist.json"

    def sign(self, zone: str) -> None:
        coord = self.fed.coordinator_dir()
        run_cli("zone", "sign", "--zone", zone, "--out", self.path(zone), "--dir", coord)


@pytest.fixture
async def published(tmp_path: pathlib.Path) -> AsyncIterator[tuple[Federation, Publisher]]:
    fed = build(tmp_path, CITIES, ZONES, subjects=20)
    publisher = Publisher(fed)
    shutil.copy(fed.coordinator_dir() / "hjjw.current.trustlist.json", publisher.path("hjjw"))
    await publisher.start()
    try:
        yield fed, publisher
    finally:
        await publisher.stop()


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def version(runtime: NodeRuntime, zone: str = "hjjw") -> int | None:
    held = runtime.trust.trust_list(zone)
    return None if held is None else held.version


# --- the HTTP edge ------------------------------------------------------------------------


async def test_unchanged_list_costs_a_304_by_etag_and_by_date(
    published: tuple[Federation, Publisher],
) -> None:
    _, publisher = published
    url = publisher.url("hjjw")
    async with aiohttp.ClientSession() as session:
        first = await trust_fetch.fetch_trust_list(session, url)
        assert first.body == publisher.path("hjjw").read_bytes()
        assert first.validators.etag and first.validators.last_modified
        # The validators sent back: not modified, no body.
        again = await trust_fetch.fetch_trust_list(session, url, first.validators)
        assert again.body is None
        by_date = trust_fetch.Validators(last_modified=first.validators.last_modified)
        assert (await trust_fetch.fetch_trust_list(session, url, by_date)).body is None
        # A new list under the same name is sent in full, with a new ETag.
        publisher.sign("hjjw")
        newer = await trust_fetch.fetch_trust_list(session, url, first.validators)
        assert newer.body == publisher.path("hjjw").read_bytes()
        assert newer.validators.etag != first.validators.etag
        # Only list files are served: no other name, no path out of the directory.
        for name in ("hjjw.draft.json", "..%2Fcoordinators%2Fhjjw.coordinator.key", "x"):
            async with session.get(f"http://127.0.0.1:{publisher.port}/{name}") as response:
                assert response.status == 404


async def test_a_body_over_the_bound_is_not_read_and_a_missing_list_is_unreachable(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "big.trustlist.json").write_bytes(b" " * (trust_fetch.MAX_TRUST_LIST_BYTES + 1))
    runner, port = await trust_publish.start(tmp_path, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(PeerError) as too_large:
                await trust_fetch.fetch_trust_list(
                    session, f"http://127.0.0.1:{port}/big.trustlist.json"
                )
            assert too_large.value.reason == trust_fetch.TOO_LARGE
            with pytest.raises(PeerUnavailable, match="answered HTTP 404"):
                await trust_fetch.fetch_trust_list(
                    session, f"http://127.0.0.1:{port}/none.trustlist.json"
                )
    finally:
        await runner.cleanup()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PeerUnavailable, match="cannot fetch"):
            await trust_fetch.fetch_trust_list(
                session, f"http://127.0.0.1:{port}/big.trustlist.json"
            )


@pytest.mark.parametrize(
    "url",
    ["ftp://coordinator.example.cn/hjjw.trustlist.json", "hjjw.trustlist.json", 42, "http://"],
)
def test_a_bad_url_stops_the_node_from_starting(tmp_path: pathlib.Path, url: object) -> None:
    home = tmp_path / HUZHOU
    run_cli("init", "--node-id", HUZHOU, "--name", "湖州", "--home", home)
    node_home = NodeHome(home)
    doc = node_home.load_document()
    doc["zones"] = {"hjjw": {"trust_list_url": url}}
    node_home.config_file.write_text(dumps_toml(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[zones.hjjw\]: trust_list_url must"):
        NodeRuntime(node_home)


# --- running nodes ------------------------------------------------------------------------


async def test_running_nodes_take_a_newer_list_from_the_url_and_refuse_bad_ones(
    published: tuple[Federation, Publisher], caplog: pytest.LogCaptureFixture
) -> None:
    fed, publisher = published
    url = publisher.url("hjjw")
    for node_id in (HUZHOU, JIAXING):
        set_trust_list_url(fed.home(node_id), "hjjw", url)
    # Hangzhou joins hjjw as a member does: pin the coordinator's key, set the URL. No list
    # file is installed by hand on any node.
    pin = fed.coordinator_dir() / "hjjw.coordinator.pub.pem"
    run_cli("zone", "pin", "--zone", "hjjw", "--coordinator-key", pin, "--home", fed.home(HANGZHOU))
    set_trust_list_url(fed.home(HANGZHOU), "hjjw", url)
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in CITIES}
    for runtime in nodes.values():
        runtime.trust_poller.interval_s = POLL_S
    async with started(nodes):
        huzhou, hangzhou = nodes[HUZHOU], nodes[HANGZHOU]
        await until(lambda: version(hangzhou) == 1, "Hangzhou to fetch version 1")
        refused = await hangzhou.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
        assert refused.decision is model.Decision.REFUSED
        assert "NOT_ZONE_MEMBER" in refused.reason

        # The coordinator adds Hangzhou and signs version 2 into the published directory.
        run_cli(
            "zone",
            "add-member",
            *("--zone", "hjjw", "--identity", fed.root / f"{HANGZHOU}.identity.json"),
            *("--endpoint", fed.endpoint(HANGZHOU), "--dir", fed.coordinator_dir()),
        )
        publisher.sign("hjjw")
        await until(lambda: all(version(r) == 2 for r in nodes.values()), "every node to take v2")
        granted = await hangzhou.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
        assert granted.decision is model.Decision.GRANTED, granted.reason
        # Taken lists are in zones/ too: a restart without the network starts from them.
        assert trust_list_path(fed.home(HUZHOU), "hjjw").read_bytes() == (
            publisher.path("hjjw").read_bytes()
        )

        # A tampered list (Hangzhou's entry dropped from a signed version 3) is refused.
        good_v2 = publisher.path("hjjw").read_bytes()
        publisher.sign("hjjw")
        envelope = json.loads(publisher.path("hjjw").read_text())
        envelope["payload"] = base64.b64encode(
            base64.b64decode(envelope["payload"]).replace(b"cn-330100", b"cn-330199")
        ).decode()
        publisher.path("hjjw").write_text(json.dumps(envelope))
        await until(lambda: "hjjw" in huzhou.trust_files.last_errors, "the tampered list")
        assert isinstance(huzhou.trust_files.last_errors["hjjw"], BadSignature)
        # The version it would roll back to, validly signed, is refused too.
        publisher.path("hjjw").write_bytes(
            (fed.coordinator_dir() / "hjjw.current.trustlist.json").read_bytes()
        )
        await until(
            lambda: isinstance(huzhou.trust_files.last_errors.get("hjjw"), RolledBackTrustList),
            "the rolled-back list",
        )
        assert version(huzhou) == 2
        assert trust_list_path(fed.home(HUZHOU), "hjjw").read_bytes() == good_v2
        still = await hangzhou.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 1))
        assert still.decision is model.Decision.GRANTED, still.reason

        # The coordinator's server goes away: logged once, retried, the node serves on.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="node.trust_fetch"):
            await publisher.stop()
            await asyncio.sleep(POLL_S * 8)
        unreachable = [r for r in caplog.records if "cannot fetch" in r.getMessage()]
        assert len(unreachable) == 3  # one line per node, not one per poll
        served = await hangzhou.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 2))
        assert served.decision is model.Decision.GRANTED, served.reason
        # Back on the same port with version 4: taken without anyone restarting.
        publisher.sign("hjjw")
        await publisher.start()
        await until(lambda: version(huzhou) == 4, "Huzhou to take v4 once the URL answers")


async def test_restarted_node_keeps_the_list_it_took_from_the_url(
    published: tuple[Federation, Publisher],
) -> None:
    fed, publisher = published
    set_trust_list_url(fed.home(JIAXING), "hjjw", publisher.url("hjjw"))
    publisher.sign("hjjw")  # version 2, only ever published at the URL
    runtime = NodeRuntime(NodeHome(fed.home(JIAXING)))
    assert await runtime.trust_poller.poll() == ["hjjw"]
    assert await runtime.trust_poller.poll() == []  # 304: nothing new
    await runtime.stop()
    await publisher.stop()
    again = NodeRuntime(NodeHome(fed.home(JIAXING)))
    try:
        assert version(again) == 2
        assert await again.trust_poller.poll() == []  # unreachable: not fatal
    finally:
        await again.stop()


def trust_list_of(path: pathlib.Path) -> TrustList:
    return wire.trust_list_from_bytes(signing.Envelope.from_json(path.read_bytes()).payload)


async def test_zone_serve_command_publishes_and_says_when_its_port_is_taken(
    published: tuple[Federation, Publisher],
) -> None:
    fed, publisher = published
    ready = fed.root / "ready"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "node.cli", "zone", "serve", "--root", publisher.root),
        *("--listen", "127.0.0.1:0", "--ready-file", ready),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: ready.exists() and bool(ready.read_text()), "zone serve", 30)
        address = ready.read_text()
        async with aiohttp.ClientSession() as session:
            fetched = await trust_fetch.fetch_trust_list(
                session, f"http://{address}/hjjw.trustlist.json"
            )
        assert fetched.body == publisher.path("hjjw").read_bytes()
        assert trust_list_of(publisher.path("hjjw")).zone == "hjjw"
        busy = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "node.cli", "zone", "serve", "--root", publisher.root, "--listen", address),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(busy.communicate(), 30)
        assert busy.returncode == 7, err
        assert err.decode().startswith(f"error: --listen {address}: another process listens")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert b"serving trust lists from" in out
