"""Fixtures of the browser tests: Debian's chromium driven by Playwright, a bridge whose web
chat inbox 1 is answered by a mock agent, and a shop's page on another origin embedding the
widget. Everything listens on 127.0.0.1 only.

Without /usr/bin/chromium the tests skip, except in CI (``CI=true``) where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from chatbridge.testing.servers import serve_app
from tests.browser.widget_site import Visit, Widget, embedding_site, widget_agent
from tests.e2e.harness import Stack, running_stack

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

expect.set_options(timeout=10_000)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'browser.db'}"


@pytest.fixture
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is required in CI (scripts/browser installs it)")
        pytest.skip(f"{CHROMIUM} is not installed")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Browser]:
    """A fresh chromium for the test.

    Playwright's driver is told to pass chromium's own output through (``DEBUG=pw:browser``), so
    a test that fails because the browser went away shows why in its captured output. A browser
    that dies before the test ends fails the test by name instead of surfacing as a
    "target closed" error somewhere in the test.
    """
    monkeypatch.setenv("DEBUG", "pw:browser")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        state = {"closing": False, "died_early": False}

        def disconnected(_: Browser) -> None:
            state["died_early"] = not state["closing"]

        b.on("disconnected", disconnected)
        # the browser answers before the test starts: a start-up failure is named as one
        smoke = await b.new_page()
        await smoke.goto("about:blank")
        await smoke.close()
        try:
            yield b
        finally:
            state["closing"] = True
            await b.close()
        assert not state["died_early"], (
            "chromium went away during the test; its own output is in the captured stderr"
        )


@pytest.fixture
def bridge_settings() -> dict[str, Any]:
    """Extra bridge settings; a test overrides them with
    ``@pytest.mark.parametrize("bridge_settings", [{...}])``."""
    return {}


@pytest.fixture
async def stack(sqlite_url: str, bridge_settings: dict[str, Any]) -> AsyncIterator[Stack]:
    """A bridge whose web chat inbox 1 (and Chatwoot inbox 1) is answered by the widget's
    mock agent, dialled out to."""
    async with running_stack(
        sqlite_url, agent=widget_agent(), webchat=True, **bridge_settings
    ) as s:
        yield s


@pytest.fixture
async def site(stack: Stack) -> AsyncIterator[str]:
    """The base URL of a shop's site (another origin) that embeds the widget from the bridge."""
    async with serve_app(embedding_site(stack.url)) as url:
        yield url


@pytest.fixture
async def visit(site: str, browser: Browser) -> AsyncIterator[Visit]:
    # after ``site``: the browser closes before the servers stop
    v = Visit(browser, DESKTOP)
    yield v
    assert v.page_errors == [], v.page_errors


@pytest.fixture
async def page(visit: Visit) -> Page:
    return await visit.page()


@pytest.fixture
def widget(page: Page) -> Widget:
    return Widget(page)
