"""issue 14 §7: the admin port of a real running node (node.admin_http over node.readiness):
not ready while no zone's trust list is in force, and why; a check that hangs counts as not
ready; the log's lines as text carry their fields; issue 13 §4: the gauges /metrics reads from
the store and the clock when scraped. (A ready node, `/metrics` and the 404s are in
tests/test_readme_node.py.)"""

from __future__ import annotations

import asyncio
import logging
import pathlib

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node import admin_http, log_output, readiness, scrape_gauges, signing, trust, wire
from node.admin_http import Check
from node.home import NodeHome
from node.log import notes
from node.runtime import NodeRuntime
from node.store import Store
from tests.audit.helpers import WITNESS, audit_setting, record
from tests.federation_helpers import HUZHOU, init_home
from tests.trust_lists import DAY, key_info, make_list, make_member


async def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as reply,
    ):
        return reply.status, await reply.json()


async def test_a_node_without_a_list_in_force_is_alive_but_not_ready(
    tmp_path: pathlib.Path,
) -> None:
    runtime = NodeRuntime(NodeHome(init_home(tmp_path, HUZHOU, "湖州")))
    app = admin_http.application(lambda: readiness.checks(runtime))
    runner, port = await admin_http.start(app, "127.0.0.1", 0)
    try:
        status, body = await _get(port, "/readyz")  # before start: the log is not open yet
        assert status == 503
        checks = {c["name"]: c for c in body["checks"]}  # type: ignore[attr-defined]
        assert checks["sequencer"]["ok"] is False and checks["store"]["ok"] is True
        await runtime.start("127.0.0.1:0")
        status, body = await _get(port, "/readyz")
        checks = {c["name"]: c for c in body["checks"]}  # type: ignore[attr-defined]
        assert status == 503 and body["ready"] is False
        assert {n for n, c in checks.items() if not c["ok"]} == {"trust_lists"}
        assert checks["trust_lists"]["detail"] == "in force: none"
        assert (await _get(port, "/healthz"))[0] == 200
    finally:
        await runner.cleanup()
        await runtime.stop()


async def test_a_check_that_hangs_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hanging() -> list[Check]:
        await asyncio.sleep(3600)
        return []

    monkeypatch.setattr(admin_http, "READY_TIMEOUT_S", 0.2)
    runner, port = await admin_http.start(admin_http.application(hanging), "127.0.0.1", 0)
    try:
        status, body = await _get(port, "/readyz")
        assert status == 503 and body["checks"] == [
            {"name": "readiness", "ok": False, "detail": "checks took longer than 0.2 s"}
        ]
    finally:
        await runner.cleanup()


def test_text_lines_carry_an_exchanges_fields() -> None:
    record = logging.LogRecord("node.exchange", logging.INFO, "", 0, "exchange", None, None)
    record.fields = {"event": "exchange", "caller": "cn-330400", "reason": "NOT ZONE", "n": 3}
    line = log_output.TextFormatter("[worker]").format(record)
    assert line.endswith(
        'INFO node.exchange[worker] exchange event=exchange caller=cn-330400 reason="NOT ZONE" n=3'
    )


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of the gauges node.scrape_gauges sets."""
    return {
        sample.name
        + ",".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name in GAUGES
    }


GAUGES = {
    "creditnode_log_size",
    "creditnode_checkpoint_age_seconds",
    "creditnode_witness_cosigned_size",
    "creditnode_witness_last_cosignature_age_seconds",
    "creditnode_trust_list_expires_in_seconds",
}


async def test_metrics_read_the_log_witnesses_and_lists_by_the_clock_when_scraped(
    sqlite_url: str, tmp_path: pathlib.Path
) -> None:
    coordinator = signing.Ed25519Signer.generate()
    lists = trust.TrustStore({"hjjw": coordinator.verification_key()})
    member = make_member(HUZHOU, key_info(signing.Ed25519Signer.generate()))
    with Store.open(sqlite_url) as store:
        async with audit_setting(store, tmp_path) as log:
            clock = log.clock
            issued = clock.now() - DAY
            held = make_list(1, member, issued=issued, valid=30 * DAY)
            lists.offer("hjjw", trust.sign_trust_list(held, coordinator), clock.now())
            await log.append([wire.record_bytes(record(i)) for i in range(7)])
            clock.advance(60)
            await log.append([wire.record_bytes(record(i)) for i in range(7, 10)], cosign=False)
            app = admin_http.application(
                readiness_never_asked,
                refresh=lambda: scrape_gauges.refresh(store, lists, clock),
            )
            runner, port = await admin_http.start(app, "127.0.0.1", 0)
            try:
                clock.advance(30)
                first = _samples(await _metrics(port))
                clock.advance(3600)
                later = _samples(await _metrics(port))
            finally:
                await runner.cleanup()
    witness = f"{{witness={notes.witness_key_name(WITNESS)}}}"
    expires_in = (held.expires_at - clock.now()).total_seconds()
    assert first == {
        "creditnode_log_size": 10,
        "creditnode_checkpoint_age_seconds": 30,
        "creditnode_witness_cosigned_size" + witness: 7,  # not the last 3 entries
        "creditnode_witness_last_cosignature_age_seconds" + witness: 90,
        "creditnode_trust_list_expires_in_seconds{zone=hjjw}": expires_in + 3600,
    }
    assert later == {
        **first,
        "creditnode_checkpoint_age_seconds": 3630,
        "creditnode_witness_last_cosignature_age_seconds" + witness: 3690,
        "creditnode_trust_list_expires_in_seconds{zone=hjjw}": expires_in,
    }


async def readiness_never_asked() -> list[Check]:
    raise AssertionError("this test asks /metrics only")


async def _metrics(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as reply,
    ):
        assert reply.status == 200
        return await reply.text()
