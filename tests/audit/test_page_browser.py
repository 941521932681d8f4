"""The auditor page in a real headless Chromium (Debian's `chromium`, driven by Playwright with
an explicit executable path: nothing downloads a browser). It signs in, searches, opens an
entry and sees the badge the page computed itself, sees both charts, switches to Chinese, and
shows the fork in red when the same origin later serves a log that does not extend the one it
verified. Screenshots go to the test's output directory."""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import AsyncIterator

import pytest

from node.store import Store
from tests.audit.helpers import PEERS, Setting, audit_setting

CHROMIUM = os.environ.get("CREDITNODE_CHROMIUM") or shutil.which("chromium")
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="needs playwright (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"
)
TIMEOUT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def test_the_page_searches_proves_charts_and_warns_of_a_fork(
    browser: object, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    shots = tmp_path / "screenshots"
    for folder in (shots, tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
    context = await browser.new_context(  # type: ignore[attr-defined]
        locale="en-US", viewport={"width": 1280, "height": 1400}
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with Store.open(f"sqlite:///{tmp_path / 'a.db'}") as store_a:
        async with audit_setting(store_a, tmp_path / "a", 60) as audit:
            port = int(audit.url.rsplit(":", 1)[1].strip("/"))
            await sign_in(page, audit)
            await page.wait_for_selector("#checkpoint-status.good")
            assert "size 60" in await page.inner_text("#checkpoint-status")
            assert "first visit" in await page.inner_text("#consistency-status")
            assert "cosigned" in await page.inner_text("#witness-status")
            # Search by peer: every row shown is that peer's.
            await page.fill("#search-form input[name=peer]", PEERS[1])
            await page.click("#search-button")
            await page.wait_for_function(
                "peer => [...document.querySelectorAll('#results tbody tr')].length > 0 && "
                "[...document.querySelectorAll('#results tbody tr td:nth-child(4)')]"
                ".every(td => td.textContent === peer)",
                arg=PEERS[1],
            )
            rows = await page.query_selector_all("#results tbody tr")
            await rows[0].click()
            badge = await page.wait_for_selector("#badge[data-verified]")
            assert badge is not None
            assert await badge.get_attribute("data-verified") == "true", await badge.inner_text()
            assert "Verified in this browser" in await badge.inner_text()
            await page.wait_for_selector("svg[data-chart=volume] rect.bar")
            await page.wait_for_selector("svg[data-chart=refusals] rect.bar")
            await page.screenshot(path=str(shots / "auditor-page.png"), full_page=True)
            await page.click("#lang")
            await page.wait_for_function(
                "document.querySelector('h1 span').textContent === '交换日志审计'"
            )
            await page.wait_for_selector("#checkpoint-status.good")
            await page.screenshot(path=str(shots / "auditor-page-zh.png"), full_page=True)
    # The same origin now serves another history under the same log key: a fork.
    with Store.open(f"sqlite:///{tmp_path / 'b.db'}") as store_b:
        async with audit_setting(store_b, tmp_path / "b", 70, first=1000, port=port) as forked:
            await sign_in(page, forked)
            fork = await page.wait_for_selector("#fork:not([hidden])")
            assert fork is not None
            assert "分叉" in await fork.inner_text()
            colour = await fork.evaluate("el => getComputedStyle(el).backgroundColor")
            assert colour == "rgb(179, 20, 27)", "the fork warning is red"
            await page.screenshot(path=str(shots / "auditor-page-fork.png"), full_page=True)
    assert errors == []
    print(f"screenshots in {shots}")
    request.node.user_properties.append(("screenshots", str(shots)))


async def sign_in(page: object, audit: Setting) -> None:
    await page.goto(audit.url)  # type: ignore[attr-defined]
    await page.fill("#token", audit.tokens["operator"])  # type: ignore[attr-defined]
    await page.click("#login-form button[type=submit]")  # type: ignore[attr-defined]
