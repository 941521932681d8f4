"""issue 14 §7: the admin port of a real running node (node.admin_http over node.readiness):
not ready while no zone's trust list is in force, and why; a check that hangs counts as not
ready; the log's lines as text carry their fields. (A ready node, `/metrics` and the 404s are
in tests/test_readme_node.py.)"""

from __future__ import annotations

import asyncio
import logging
import pathlib

import aiohttp
import pytest

from node import admin_http, log_output, readiness
from node.admin_http import Check
from node.home import NodeHome
from node.runtime import NodeRuntime
from tests.federation_helpers import HUZHOU, init_home


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
