"""The node's local admin port, plain HTTP (floor 3): Prometheus metrics on `/metrics`, and
`/healthz` (the process answers) and `/readyz` (the node can serve) for standard probes, which
hold no client certificate. Every other path is 404.

`application(readiness)` is a plain aiohttp application: `start` serves it alone, and another
aiohttp app (the auditor's) can mount it, or be mounted beside it, with `add_subapp`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

READY_TIMEOUT_S = 5.0  # a check slower than this (a hung database) counts as not ready
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: its name, whether it passed, and what an operator reads."""

    name: str
    ok: bool
    detail: str


Readiness = Callable[[], Awaitable[Sequence[Check]]]
Refresh = Callable[[], Awaitable[None]]


def application(
    readiness: Readiness, registry: CollectorRegistry = REGISTRY, refresh: Refresh | None = None
) -> web.Application:
    """The admin routes: GET (and HEAD) `/metrics`, `/healthz`, `/readyz`. `refresh` sets the
    gauges read at scrape time (node.scrape_gauges) before each `/metrics`."""

    async def metrics(request: web.Request) -> web.Response:
        if refresh is not None:
            try:
                async with asyncio.timeout(READY_TIMEOUT_S):
                    await refresh()
            except Exception:  # a store that does not answer: /readyz says so; serve the rest
                log.warning("reading the gauges of /metrics failed", exc_info=True)
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(request: web.Request) -> web.Response:
        # The event loop that serves gRPC answered: the process is alive.
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                checks = list(await readiness())
        except TimeoutError:
            checks = [Check("readiness", False, f"checks took longer than {READY_TIMEOUT_S:g} s")]
        ready = all(check.ok for check in checks)
        body = {"ready": ready, "checks": [dataclasses.asdict(check) for check in checks]}
        return web.json_response(body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0: a free port): the runner (to clean up) and the port bound.
    Raises OSError when it cannot listen there."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
