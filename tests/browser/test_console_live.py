"""The console's conversation view and protocol 1.3, in a real browser (Debian's chromium):
while a slow agent works, the live status line shows its status and progress; its notices
are drawn apart (system grey, warning amber) and say whether they reached the customer; the
reply names the agent that answered and sums up its rich data; the status line goes once the
turn is over. Screenshot: docs/screenshots/console-live-status.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from chatbridge.policies.model import RoutePolicies
from tests.browser.console_fixtures import ADMIN_KEY, Operator, operator, shoot
from tests.browser.test_console_policies import chatwoot_route, open_editor
from tests.e2e.harness import Stack, running_stack, wait_until
from tests.live.rig import ScriptedAgent, Turn, scripted_agent

__all__ = ["operator"]  # a fixture, imported for pytest

CARDS: dict[str, Any] = {
    "kind": "cards",
    "cards": [
        {"title": "Blue teapot", "subtitle": "34 EUR", "buttons": [{"title": "Buy"}]},
        {"title": "Green teapot", "subtitle": "29 EUR"},
    ],
}


async def answer(turn: Turn) -> None:
    if "choices" in turn.content:
        quick = {"kind": "quick_replies", "options": [{"title": "Yes"}, {"title": "No"}]}
        await turn.send({"type": "agent_message", "data": quick})
        return
    await turn.say({"type": "system_message", "content": "The shop's assistant is in test mode."})
    await turn.say({"type": "warning_message", "content": "Deliveries to Norway are delayed."})
    await turn.send({"type": "status_update", "content": "Searching the catalogue…"})
    await turn.send({"type": "progress_update", "progress": 0.4})
    await turn.gate("reply")
    await turn.send({"type": "agent_message", "content": "Two teapots in stock:", "data": CARDS})


@pytest.fixture
async def live_agent() -> AsyncIterator[ScriptedAgent]:
    async with scripted_agent(answer) as agent:
        yield agent


@pytest.fixture
async def console_stack(sqlite_url: str, live_agent: ScriptedAgent) -> AsyncIterator[Stack]:
    """The console's bridge, its web chat inbox answered by the scripted agent."""
    async with running_stack(
        sqlite_url,
        agent_port=live_agent.port,
        webchat=True,
        admin_key=ADMIN_KEY,
        timeout_seconds=60,
    ) as s:
        yield s


async def test_the_conversation_view_shows_live_status_notices_and_who_answered(
    operator: Operator, console_stack: Stack, live_agent: ScriptedAgent
) -> None:
    s, page = console_stack, operator.page
    await operator.log_in()
    r = await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})
    sid = r.json()["session_id"]
    r = await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "Any teapots?"})
    assert r.status_code in (200, 202), r.text
    await wait_until(lambda: live_agent.turns)

    thread = page.locator("#threads [role=option]", has_text="Web visitor")
    await thread.first.click()
    log = page.locator("#chat-log")
    line = page.locator("#live-status")
    await expect(line).to_be_visible()
    await expect(line).to_contain_text("agent1 is working: Searching the catalogue…")
    await expect(line).to_contain_text("40%")

    system = log.locator(".msg.notice-system")
    warning = log.locator(".msg.notice-warning")
    await expect(system.locator(".bubble")).to_have_text("The shop's assistant is in test mode.")
    await expect(warning.locator(".bubble")).to_contain_text("Deliveries to Norway are delayed.")
    await expect(system.locator(".meta")).to_contain_text("System notice")
    await expect(system.locator(".meta")).to_contain_text("from agent1")
    await expect(system.locator(".meta")).to_contain_text("sent to the customer")
    await expect(warning.locator(".meta")).to_contain_text("Warning")
    # drawn apart: never an agent's bubble, and a warning is not a system notice's grey
    assert await log.locator(".msg[data-author=agent]").count() == 0
    grey = await system.locator(".bubble").evaluate("e => getComputedStyle(e).borderTopColor")
    amber = await warning.locator(".bubble").evaluate("e => getComputedStyle(e).borderTopColor")
    assert grey != amber
    await shoot(page, "console-live-status.png")

    live_agent.gates.open("reply")
    agent = log.locator(".msg[data-author=agent]")
    await expect(agent.locator(".bubble")).to_have_text("Two teapots in stock:")
    await expect(agent.locator(".agent-name")).to_have_text("agent1")
    await expect(agent.locator(".rich-data")).to_have_text("Cards: Blue teapot · Green teapot")
    await expect(line).to_be_hidden()

    # a reply of rich data alone: its summary stands for the message
    r = await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "choices?"})
    assert r.status_code in (200, 202), r.text
    await expect(agent).to_have_count(2)
    await expect(agent.nth(1).locator(".rich-data")).to_have_text("Quick replies: Yes · No")
    await expect(agent.nth(1).locator(".bubble")).to_be_hidden()


async def test_the_route_editor_sets_the_working_notice_and_notices(
    operator: Operator, console_stack: Stack
) -> None:
    page = operator.page
    await operator.log_in()
    form = await open_editor(operator)
    after = form.get_by_label("Working notice after (s)")
    await expect(after).to_have_value("")
    await expect(form.get_by_label("Working notice text")).to_have_value("Working on it…")
    await after.fill("0")
    await form.get_by_role("button", name="Save route").click()
    field = form.locator('[data-path="policies.working_notice_after"]')
    await expect(field.locator(".field-error")).to_contain_text("more than 0")
    assert chatwoot_route(console_stack).policies == RoutePolicies()  # nothing saved

    await after.fill("4.5")
    await form.get_by_label("Working notice text").fill("One moment, I am on it.")
    await form.get_by_role("checkbox", name="Send notices to the customer").check()
    await expect(form.locator(".policy-summary")).to_contain_text(
        "“One moment, I am on it.” after 4.5 s · notices sent to the customer"
    )
    await form.get_by_role("button", name="Save route").click()
    row = page.locator('#routes tr[data-route="chatwoot:1"]')
    await expect(row.locator(".policies-cell")).to_contain_text("after 4.5 s")
    assert chatwoot_route(console_stack).policies == RoutePolicies(
        working_notice_after=4.5,
        working_notice_text="One moment, I am on it.",
        notices_to_channel=True,
    )
