"""What the browser tests drive: an agent that answers slowly enough to watch, the page of a
site that embeds the widget from another origin, and small helpers around the widget's DOM.

The widget renders in an open shadow root; Playwright's CSS locators pierce it, so
``page.locator("#chatbridge-widget .log")`` reaches inside.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Dialog, Locator, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from chatbridge.agent import Agent, Turn
from chatbridge.testing.mock_agent import auto_behaviour, echo_text, split_chunks

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

CHUNK_SECONDS = 0.3  # between streamed chunks: slow enough to see the bubble grow
SLOW_SECONDS = 1.5  # how long "slow" messages keep the agent busy (typing indicator)


def widget_agent() -> Agent:
    """The mock agent's ``auto`` choice ("stream" streams, "slow" waits, else echo), with the
    stream slowed down so a browser can observe each chunk."""
    agent = Agent("agent1", reconnect_initial_delay=0.02, reconnect_max_delay=0.1)

    async def slow_stream(text: str) -> AsyncIterator[str]:
        for piece in split_chunks(text, None):
            await asyncio.sleep(CHUNK_SECONDS)
            yield piece

    @agent.on_message
    async def answer(turn: Turn) -> str | AsyncIterator[str]:
        match auto_behaviour(turn.content):
            case "stream":
                return slow_stream(echo_text(turn.content))
            case "delay":
                await asyncio.sleep(SLOW_SECONDS)
        return echo_text(turn.content)

    return agent


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Example Shop</title>
  <style>
    body {{ margin: 0; font: 16px/1.6 Georgia, serif; color: #1f2937; background: #fafaf9; }}
    main {{ max-width: 40rem; margin: 0 auto; padding: 3rem 1.5rem; }}
    h1 {{ font-size: 2rem; margin: 0 0 1rem; }}
    /* page styles must not leak into the widget */
    div, p, button, textarea {{ color: #b91c1c !important; font-family: cursive !important; }}
  </style>
</head>
<body>
  <main>
    <h1>Example Shop</h1>
    <p>Hand-made teapots, shipped worldwide. Questions? Our assistant answers in the corner.</p>
    <p>Everything on this page comes from the shop's own server; the chat widget is loaded
       from the bridge, another origin.</p>
  </main>
  <script src="{bridge}/widget.js"{bridge_attr} data-inbox="1" defer></script>
</body>
</html>
"""


def embedding_site(bridge_url: str) -> Starlette:
    """A shop's site on its own origin: ``/`` embeds the widget from ``bridge_url``
    (``/?bridge_attr=0`` leaves ``data-bridge`` out, so the widget derives it)."""

    async def home(request: Request) -> HTMLResponse:
        with_attr = request.query_params.get("bridge_attr", "1") != "0"
        attr = f' data-bridge="{html.escape(bridge_url)}"' if with_attr else ""
        return HTMLResponse(PAGE.format(bridge=html.escape(bridge_url), bridge_attr=attr))

    return Starlette(routes=[Route("/", home)])


class Visit:
    """A browser context (one visitor) with the errors and dialogs its pages raised."""

    def __init__(self, browser: Browser, viewport: dict[str, int]) -> None:
        self.browser = browser
        self.viewport = viewport
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []

    async def page(self, **context: object) -> Page:
        ctx = await self.browser.new_context(
            **{  # type: ignore[arg-type]
                "viewport": self.viewport,
                "color_scheme": "light",
                "locale": "en-US",
                "timezone_id": "UTC",
                **context,
            }
        )
        page = await ctx.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("dialog", self._on_dialog)
        return page

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()


class Widget:
    """The embedded widget on ``page``, seen the way a visitor (and a screen reader) sees it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.host = page.locator("#chatbridge-widget")
        self.launcher = self.host.locator("button.launcher")
        self.panel = self.host.locator("[role=dialog]")
        self.log = self.host.locator("[role=log]")
        self.input = self.host.get_by_role("textbox", name="Message")
        self.send_button = self.host.get_by_role("button", name="Send message")
        self.close_button = self.host.get_by_role("button", name="Close chat")
        self.typing = self.host.locator(".typing")

    def bubbles(self, role: str) -> Locator:
        """Message bubbles of ``role``: user, agent, human."""
        return self.log.locator(f".msg--{role} .bubble")

    def bubble(self, role: str, text: str) -> Locator:
        """Bubbles of ``role`` whose whole text is ``text``."""
        return self.bubbles(role).filter(has_text=_exact(text))

    async def open(self) -> None:
        await self.launcher.click()

    async def say(self, text: str) -> None:
        """Type ``text`` into the composer and press Enter."""
        await self.input.fill(text)
        await self.input.press("Enter")

    async def state(self) -> dict[str, Any]:
        return await self.page.evaluate("() => window.Chatbridge.state()")  # type: ignore[no-any-return]

    async def wait_state(self, condition: str, timeout: float = 15_000) -> None:
        """Wait until the JS expression ``condition`` over ``s = Chatbridge.state()`` holds."""
        await self.page.wait_for_function(
            f"() => {{ const s = window.Chatbridge && window.Chatbridge.state(); "
            f"return !!s && ({condition}); }}",
            timeout=timeout,
        )

    async def screenshot(self, name: str) -> None:
        """Take a screenshot; it goes to docs/screenshots/ when missing there or when
        ``CHATBRIDGE_UPDATE_SCREENSHOTS=1`` (so a test run leaves the tree clean)."""
        png = await self.page.screenshot(animations="disabled")
        target = SCREENSHOTS / name
        if os.environ.get("CHATBRIDGE_UPDATE_SCREENSHOTS") == "1" or not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png)


def _exact(text: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(text)}$")
