"""What the console's browser tests drive: a bridge with an admin key whose Chatwoot, web chat
and (when the channel exists) WhatsApp inbox 1 are answered by the widget tests' mock agent,
an operator's browser page logged in to ``/console``, and a screenshot helper.

Import the fixtures into a test module with ``from tests.browser.console_fixtures import *``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from chatbridge.config import AgentConfig, InboxMapping
from tests.browser.widget_site import SCREENSHOTS, widget_agent
from tests.e2e.harness import Stack, running_stack

ADMIN_KEY = "test-admin-key-0123"
CONSOLE_VIEWPORT = {"width": 1440, "height": 860}

__all__ = [
    "ADMIN_KEY",
    "Operator",
    "admin_http",
    "console_stack",
    "operator",
    "shoot",
]


@pytest.fixture
async def console_stack(sqlite_url: str) -> AsyncIterator[Stack]:
    """The bridge (admin key ``k``) with its inboxes routed to the mock agent."""
    async with running_stack(
        sqlite_url, agent=widget_agent(), webchat=True, admin_key=ADMIN_KEY
    ) as s:
        if "whatsapp" in s.bridge.channels:
            # WhatsApp is off by default: choose the mock provider, as the demo does
            s.bridge.set_comms_settings(s.bridge.comms_settings().updated({"provider": "mock"}))
            chatwoot = next(r for r in s.bridge.routes() if r.channel == "chatwoot")
            await s.bridge.save_mapping(
                InboxMapping(
                    channel="whatsapp",
                    inbox_id=1,
                    agent_config=AgentConfig(
                        agent_id=chatwoot.agent_id,
                        websocket_url=f"ws://127.0.0.1:{s.agent_port}",
                        timeout_seconds=chatwoot.timeout_seconds,
                    ),
                )
            )
        yield s


@pytest.fixture
async def admin_http(console_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An API client with the admin key (the test acting as the outside world)."""
    async with httpx.AsyncClient(
        base_url=console_stack.url,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    ) as client:
        yield client


class Operator:
    """One operator's browser: errors the page raised, and helpers to log in and move about."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.page_errors: list[str] = []
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    async def log_in(self, key: str = ADMIN_KEY) -> None:
        await self.page.goto(f"{self.base}/console")
        await self.page.get_by_label("Admin key").fill(key)
        await self.page.get_by_role("button", name="Log in").click()

    async def go(self, page_name: str) -> None:
        await self.page.goto(f"{self.base}/console#/{page_name}")

    def nav(self, name: str) -> Any:
        return self.page.get_by_role("navigation").get_by_role("link", name=name)


@pytest.fixture
async def operator(
    console_stack: Stack, browser: Browser, chromium: str
) -> AsyncIterator[Operator]:
    """A fresh browser context (dark scheme, en-US, UTC) on the console, not yet logged in."""
    ctx = await browser.new_context(
        viewport=CONSOLE_VIEWPORT,  # type: ignore[arg-type]
        color_scheme="dark",
        locale="en-US",
        timezone_id="UTC",
    )
    page = await ctx.new_page()
    page.set_default_timeout(15_000)
    op = Operator(page, console_stack.url)
    try:
        yield op
    finally:
        await ctx.close()
    assert op.page_errors == [], op.page_errors


async def shoot(page: Page, name: str) -> None:
    """A screenshot to docs/screenshots/``name`` when missing there or when
    ``CHATBRIDGE_UPDATE_SCREENSHOTS=1`` (so a test run leaves the tree clean)."""
    await page.evaluate("document.getElementById('toasts')?.replaceChildren()")  # transient
    png = await page.screenshot(animations="disabled")
    target = SCREENSHOTS / name
    if os.environ.get("CHATBRIDGE_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)


expect.set_options(timeout=10_000)
