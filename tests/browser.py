"""Real Chromium for the browser tests: Debian's package, driven by Playwright for Python (never a browser
Playwright downloads). Without Chromium, or without the built pages (``make web``), the browser tests
are skipped with a red notice at the end of the run; under CI (``WHITEBILL_REQUIRE_BROWSER``, set by
``.ci/run``) they fail instead, as the PostgreSQL half does.

Every page is opened in a context that lets requests reach only this machine: anything else is
aborted and recorded, and ``Tab.outside`` must stay empty (no CDN, no font service, nothing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Request, Route, async_playwright

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "web" / "dist"
SCREENSHOTS = ROOT / "docs" / "screenshots"
REQUIRE = os.environ.get("WHITEBILL_REQUIRE_BROWSER", "").lower() in {"1", "true", "yes"}
# Chromium's own traffic (updates, safe browsing, sync) is off: this machine has no internet.
ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-gpu",
]

skipped: list[str] = []  # why the browser half did not run (the notice conftest prints)


def chromium_path() -> str | None:
    found = os.environ.get("WHITEBILL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).is_file() else None


def require_browser() -> str:
    """Chromium's path, or the test is skipped (failed under CI) with the reason."""
    problem = None
    path = chromium_path()
    if path is None:
        problem = "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
    elif not (BUILT / "portal" / "index.html").is_file():
        problem = "the browser pages are not built: run `make web` (Node.js and npm)"
    if problem is not None:
        if REQUIRE:
            pytest.fail(f"{problem}, and WHITEBILL_REQUIRE_BROWSER is set", pytrace=False)
        skipped.append(problem)
        pytest.skip(problem)
    assert path is not None
    return path


def _local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost") or host.endswith(".localhost")


@dataclass
class Tab:
    page: Page
    context: BrowserContext
    outside: list[str] = field(default_factory=list)  # requests that tried to leave the machine
    problems: list[str] = field(default_factory=list)  # console errors, policy violations, page errors

    async def screenshot(self, name: str, folder: Path) -> Path:
        """A picture of the page, in ``folder``; also into docs/screenshots (the README shows those) when
        WHITEBILL_UPDATE_SCREENSHOTS is set."""
        path = folder / f"{name}.png"
        await self.page.screenshot(path=path, full_page=True)
        if os.environ.get("WHITEBILL_UPDATE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / path.name)
        return path


class Chromium:
    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    async def tab(self, *, locale: str = "en-US") -> Tab:
        context = await self.browser.new_context(locale=locale, viewport={"width": 1280, "height": 820})
        page = await context.new_page()
        tab = Tab(page, context)

        async def only_this_machine(route: Route, request: Request) -> None:
            if _local(request.url):
                await route.continue_()
            else:
                tab.outside.append(request.url)
                await route.abort()

        def console(message: ConsoleMessage) -> None:
            if message.type == "error" and "favicon" not in message.text:
                tab.problems.append(message.text[:300])

        await context.route("**/*", only_this_machine)
        page.on("console", console)
        page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
        return tab


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Chromium]:
    path = require_browser()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield Chromium(browser)
        finally:
            await browser.close()
