"""Issue 14 §2: who is in a zone comes from its signed trust list alone. Real nodes set up with
the operators' and coordinator's commands; node.toml holds no member list and is never edited
while the coordinator adds and removes members."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from devtools.federation import Federation, build, run_cli
from node import model
from node.home import NodeHome
from node.runtime import NodeRuntime
from tests.federation_helpers import HANGZHOU, HUZHOU, JIAXING, Running, company, started

CITIES = {HUZHOU: "湖州", JIAXING: "嘉兴", HANGZHOU: "杭州"}
# Hangzhou shares hz-metro with Huzhou (so the two can connect), but is not in hjjw at first.
ZONES = {"hjjw": (HUZHOU, JIAXING), "hz-metro": (HUZHOU, JIAXING, HANGZHOU)}


@pytest.fixture
async def three(tmp_path: pathlib.Path) -> AsyncIterator[Running]:
    fed = build(tmp_path, CITIES, ZONES, subjects=20)
    nodes = {node_id: NodeRuntime(NodeHome(fed.home(node_id))) for node_id in fed.ports}
    async with started(nodes):
        yield fed, nodes


def _resign(fed: Federation, zone: str, version: str, *, add: str = "", remove: str = "") -> None:
    """The coordinator adds or removes a member and signs the next version; every member on
    the zone's first list installs it in its home (nothing else on the node is touched)."""
    coord = fed.coordinator_dir()
    if add:
        run_cli(
            "zone",
            "add-member",
            *("--zone", zone, "--identity", fed.root / f"{add}.identity.json"),
            *("--endpoint", fed.endpoint(add), "--dir", coord),
        )
    if remove:
        run_cli("zone", "remove-member", "--zone", zone, "--node-id", remove, "--dir", coord)
    signed = fed.sign_zone(zone, version)
    for node_id in {*ZONES[zone], add}:
        if node_id and node_id != remove:
            if add == node_id:
                pin = coord / f"{zone}.coordinator.pub.pem"
                run_cli(
                    "zone",
                    "pin",
                    *("--zone", zone, "--coordinator-key", pin, "--home", fed.home(node_id)),
                )
            fed.install(zone, signed, [node_id])


async def test_a_member_added_to_the_signed_list_is_served_without_a_config_edit(
    three: Running,
) -> None:
    fed, nodes = three
    huzhou, hangzhou = nodes[HUZHOU], nodes[HANGZHOU]
    config_before = NodeHome(fed.home(HUZHOU)).config_file.read_bytes()
    assert b"members" not in config_before  # node.toml names zones, purposes and rates only

    before = await hangzhou.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert before.decision is model.Decision.REFUSED
    assert "NOT_ZONE_MEMBER" in before.reason and "not on the hjjw trust list" in before.reason

    _resign(fed, "hjjw", "v2", add=HANGZHOU)
    await huzhou.refresh_trust()  # what the running node does every TRUST_REFRESH_S

    after = await hangzhou.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert after.decision is model.Decision.GRANTED, after.reason
    assert after.answer is not None and after.answer.result.zone == "hjjw"
    assert NodeHome(fed.home(HUZHOU)).config_file.read_bytes() == config_before
    # Served by the process that refused it a moment ago: no restart in between.
    assert huzhou.server is not None and nodes[HUZHOU] is huzhou


async def test_this_node_removed_from_a_list_no_longer_serves_that_zone(three: Running) -> None:
    """This node's own membership is the list's too: once the list in force leaves it out,
    it serves the zone no more (refused ZONE_NOT_SERVED, left out of its NodeInfo), though
    node.toml still configures the zone."""
    fed, nodes = three
    huzhou, jiaxing = nodes[HUZHOU], nodes[JIAXING]
    assert "hjjw" in huzhou.node_info().zones
    granted = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert granted.decision is model.Decision.GRANTED, granted.reason

    coord = fed.coordinator_dir()
    run_cli("zone", "remove-member", "--zone", "hjjw", "--node-id", HUZHOU, "--dir", coord)
    fed.install("hjjw", fed.sign_zone("hjjw", "v2"), [HUZHOU])
    await huzhou.refresh_trust()

    assert "hjjw" in huzhou.policy.zones  # still configured
    assert huzhou.node_info().zones == ["hz-metro"]
    # Jiaxing still holds v1, on which Huzhou is a member: it asks, and is told why not.
    refused = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, 1))
    assert refused.decision is model.Decision.REFUSED
    assert "ZONE_NOT_SERVED" in refused.reason
    assert f"this node ({HUZHOU}) is not on the trust list of zone hjjw" in refused.reason
    other = await jiaxing.ask(HUZHOU, "hz-metro", "xinyi-dai", company(fed, 1))
    assert other.decision is model.Decision.GRANTED, other.reason


async def test_a_node_toml_that_still_lists_members_loads_with_a_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node.toml written before (with `members`) still serves; the key is ignored, and the
    log says so once, naming the table."""
    fed = build(
        tmp_path, {HUZHOU: "湖州", JIAXING: "嘉兴"}, {"hjjw": (HUZHOU, JIAXING)}, subjects=5
    )
    config = NodeHome(fed.home(HUZHOU)).config_file
    text = config.read_text(encoding="utf-8")
    # An old list that leaves Jiaxing out: ignored, the signed list says Jiaxing is in.
    config.write_text(
        text.replace('name = "湖嘉金温"\n', 'name = "湖嘉金温"\nmembers = ["cn-330500"]\n'),
        encoding="utf-8",
    )
    caplog.set_level("WARNING", logger="node.policy")
    nodes = {n: NodeRuntime(NodeHome(fed.home(n))) for n in fed.ports}
    async with started(nodes):
        outcome = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
    assert outcome.decision is model.Decision.GRANTED, outcome.reason
    assert f"{config}: [zones.hjjw]: members is ignored" in caplog.text
