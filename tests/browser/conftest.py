"""The browser tests: the whole stack as processes (as `make run` starts it, website included) and
Debian's chromium driven by Playwright (pytest-playwright-asyncio's fixtures: the suite shares one
asyncio loop, which Playwright's sync API would take over). The browser never reaches
the internet: every request that leaves 127.0.0.1 is refused and remembered, except the partner
shops, which are answered by a stand-in page (the shop is outside our system)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Route

from services.common.config import ROOT
from tests.e2e.conftest import GENEROUS_LIMITS, RunningStack, start_private_stack

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
# The README's pictures: refreshed with UPDATE_SCREENSHOTS=1 (random phones and dates would otherwise
# change them on every run); without it the tests still take them, into a scratch folder.
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1"
               else Path(tempfile.gettempdir()) / "cashback-screenshots")
SHOP_HOSTS = {"www.ozon.ru"}  # partner sites the story visits, answered by a stand-in
PHONE_VIEWPORT = {"width": 412, "height": 915}


@pytest.fixture(scope="session")
async def site(new_database, redis_url, tmp_path_factory) -> AsyncIterator[RunningStack]:
    log_dir = str(tmp_path_factory.mktemp("site-logs"))
    running, ports, _ = await start_private_stack(new_database, redis_url, log_dir, env=GENEROUS_LIMITS)
    yield RunningStack(running, f"http://127.0.0.1:{ports['gateway']}", f"http://127.0.0.1:{ports['billing']}",
                       log_dir, f"http://127.0.0.1:{ports['web']}")
    await running.stop()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    # Debian's chromium (make tools), never a browser Playwright downloads.
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `make tools` installs Debian's chromium"
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    # A phone; axe-core is injected into our pages, whose Content-Security-Policy would refuse it.
    return {**browser_context_args, "viewport": PHONE_VIEWPORT, "locale": "ru-RU", "bypass_csp": True,
            "timezone_id": "Europe/Moscow"}


@dataclass
class Offline:
    """What the browser tried to fetch beyond this machine (it must be nothing but the shops)."""

    refused: list[str] = field(default_factory=list)
    shop_visits: list[str] = field(default_factory=list)

    async def route(self, route: Route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in {"127.0.0.1", "localhost"}:
            await route.continue_()
        elif host in SHOP_HOSTS:
            self.shop_visits.append(url)
            await route.fulfill(status=200, content_type="text/html; charset=utf-8",
                          body="<!doctype html><html lang='ru'><title>Магазин</title><h1>Магазин партнёра</h1></html>")
        else:
            self.refused.append(url)
            await route.abort("internetdisconnected")


async def offline(context: BrowserContext) -> Offline:
    guard = Offline()
    await context.route("**/*", guard.route)
    return guard


async def axe_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical findings on the page as it is now (WCAG 2.1 A/AA + best practice)."""
    assert AXE.exists(), f"{AXE} is missing: `make tools` installs axe-core from npm"
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("""async () => (await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}
    })).violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                             nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


async def check_page(page: Page, screenshot: str | None = None, *, full_page: bool = True) -> None:
    """Every page we show: no serious accessibility findings; the main ones also photographed for the README."""
    violations = await axe_violations(page)
    assert not violations, f"{page.url}: {violations}"
    if screenshot:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{screenshot}.png"), full_page=full_page)


@pytest.fixture
async def gateway(site: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.gateway_url, timeout=15) as client:
        yield client
