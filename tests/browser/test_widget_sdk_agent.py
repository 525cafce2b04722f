"""The Python SDK's 1.3 calls, seen in the web chat widget (Chromium): an SDK agent the bridge
dials out to reports ``turn.status`` and ``turn.progress`` while it works, puts a warning
notice into the conversation, and answers with ``Answer(text, data=…)``; the visitor sees the
status line and bar, the notice apart from the agent, and the quick replies, whose click
comes back to the agent as the next turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from chatbridge.agent import Agent, Answer, Turn
from tests.browser.widget_site import Widget
from tests.e2e.harness import Stack, running_stack

SIZES = {"kind": "quick_replies", "options": [{"title": "Small"}, {"title": "Large"}]}


class Steps:
    """The agent waits for the test at each step (no sleeps)."""

    def __init__(self) -> None:
        self.progress = asyncio.Event()
        self.answer = asyncio.Event()
        self.turns: list[Turn] = []


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
async def stack(sqlite_url: str, steps: Steps) -> AsyncIterator[Stack]:
    agent = Agent("agent1", reconnect_initial_delay=0.02, reconnect_max_delay=0.1)

    @agent.on_message
    async def answer(turn: Turn) -> str | Answer:
        steps.turns.append(turn)
        if turn.content != "Do you have teapots?":
            return f"{turn.content} it is."
        await turn.status("Checking stock…")
        async with asyncio.timeout(15):
            await steps.progress.wait()
        await turn.progress(0.75, "Counting teapots…")
        await turn.notice("Stock counts are from this morning.", level="warning")
        async with asyncio.timeout(15):
            await steps.answer.wait()
        return Answer("Yes. Which size?", data=SIZES)

    async with running_stack(sqlite_url, agent=agent, webchat=True) as s:
        yield s


async def test_sdk_status_progress_notice_and_rich_answer(
    site: str, stack: Stack, widget: Widget, steps: Steps
) -> None:
    page = widget.page
    live = widget.host.locator(".live")
    await page.goto(site)
    await widget.open()
    await widget.say("Do you have teapots?")
    await expect(live).to_contain_text("Checking stock…")

    steps.progress.set()
    await expect(live).to_contain_text("Counting teapots…")
    await expect(live.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "75")
    await expect(widget.log.locator(".notice--warning")).to_contain_text(
        "Stock counts are from this morning."
    )

    steps.answer.set()
    await expect(widget.bubble("agent", "Yes. Which size?")).to_be_visible()
    await expect(live).to_be_hidden()
    replies = widget.log.locator(".quick-reply")
    await expect(replies).to_have_text(["Small", "Large"])
    await replies.nth(1).click()
    await expect(widget.bubble("agent", "Large it is.")).to_be_visible()
    assert [t.content for t in steps.turns] == ["Do you have teapots?", "Large"]
