"""The web chat widget on a route with several named agents (protocol 1.3), in Chromium.

The page addresses one of the route's agents with ``Chatbridge.address({role})`` (or the
script tag's ``data-role`` / ``data-agent``); the widget sends ``role`` / ``agent`` with each
message, the bridge runs the turn on that agent, and the visitor sees its answer. The route
is the multi-agent rig's: a guide (default) the bridge dials, a billing specialist that dials
in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.widget_site import Widget
from tests.multiagent.rig import Rig, two_agent_stack


def guide_answer(frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "agent_message", "content": f"Guide here: {frame['content']}"}


@pytest.fixture
async def stack(sqlite_url: str) -> AsyncIterator[Rig]:
    async with two_agent_stack(sqlite_url, guide_answer, webchat=True) as rig:
        yield rig


async def test_the_page_addresses_an_agent_by_role(site: str, stack: Rig, widget: Widget) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.say("Hello")
    await expect(widget.bubble("agent", "Guide here: Hello")).to_be_visible()

    # the shop's "billing questions" button addresses the billing agent
    address = await page.evaluate("() => window.Chatbridge.address({role: 'billing'})")
    assert address == {"agent": None, "role": "billing"}
    await widget.say("What do I owe?")
    await expect(widget.bubble("agent", "Billing here: What do I owe?")).to_be_visible()
    assert [t.raw.get("role") for t in stack.specialist_turns] == ["billing"]

    # back to the guide by its id; a role of no one on the route is ignored, never an error
    await page.evaluate("() => window.Chatbridge.address({agent: 'guide'})")
    await widget.say("Back to you")
    await expect(widget.bubble("agent", "Guide here: Back to you")).to_be_visible()
    await page.evaluate("() => window.Chatbridge.address({role: 'sales'})")
    await widget.say("Anyone?")
    await expect(widget.bubble("agent", "Guide here: Anyone?")).to_be_visible()
    assert [t["content"] for t in stack.guide.turns] == ["Hello", "Back to you", "Anyone?"]
    assert (await widget.state())["address"] == {"agent": None, "role": "sales"}
