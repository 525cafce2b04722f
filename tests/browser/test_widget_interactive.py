"""The web chat widget shows an agent's choices (protocol 1.2 ``interactive``) as buttons in
Chromium; a click sends the option's title as the visitor's message and the agent gets the
option's id in ``metadata.interactive`` (``turn.choice``). Clicking closes the choices; the
buttons come back from history after a reload while the offer is still open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from chatbridge.agent import Agent, Answer, Turn
from tests.browser.widget_site import Widget
from tests.e2e.harness import Stack, running_stack

LARGE = "Large: the family teapot that pours six cups"
SIZES = {
    "kind": "buttons",
    "options": [
        {"id": "size-s", "title": "Small"},
        # longer than a typed choice can be (40): only the click's choice_id can name it
        {"id": "size-l", "title": LARGE, "description": "500 ml"},
    ],
}


@pytest.fixture
def seen() -> list[Turn]:
    return []


@pytest.fixture
async def stack(sqlite_url: str, seen: list[Turn]) -> AsyncIterator[Stack]:
    """A bridge whose web chat inbox 1 is answered by an agent offering sizes."""
    agent = Agent("agent1", reconnect_initial_delay=0.02, reconnect_max_delay=0.1)

    @agent.on_message
    async def answer(turn: Turn) -> str | Answer:
        seen.append(turn)
        if turn.choice is not None:
            return f"Noted: {turn.choice['id']}"
        return Answer("Which size would you like?", interactive=SIZES)

    async with running_stack(sqlite_url, agent=agent, webchat=True) as s:
        yield s


async def test_choices_are_buttons_and_a_click_names_the_option(
    site: str, stack: Stack, widget: Widget, seen: list[Turn]
) -> None:
    page = widget.page
    await page.goto(site)
    await widget.open()
    await widget.wait_state("s.transport === 'ws'")
    await widget.say("I want a teapot")
    await expect(widget.bubble("agent", "Which size would you like?")).to_have_count(1)
    buttons = widget.log.locator(".msg--agent .choices button.choice")
    await expect(buttons).to_have_text(["Small", LARGE])
    await expect(buttons.nth(1)).to_have_attribute("title", "500 ml")

    # a reload shows the open offer again, from history
    await page.reload()
    await widget.open()
    await expect(buttons).to_have_text(["Small", LARGE])

    await buttons.nth(1).click()
    await expect(widget.bubble("user", LARGE)).to_have_count(1)
    await expect(widget.bubble("agent", "Noted: size-l")).to_have_count(1)
    await expect(buttons).to_have_count(0)  # answered: the choices are gone
    assert seen[-1].choice == {"id": "size-l", "title": LARGE}
    assert seen[-1].messages[-1]["metadata"] == {"interactive": {"id": "size-l", "title": LARGE}}


async def test_http_api_refuses_an_unknown_choice(stack: Stack) -> None:
    """A ``choice_id`` that no open offer has is refused (400, nothing stored)."""
    r = await stack.http.post("/api/webchat/sessions", json={"inbox_id": 1})
    session = r.json()["session_id"]
    r = await stack.http.post(
        f"/api/webchat/sessions/{session}/messages",
        json={"text": "Large", "choice_id": "size-l"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "unknown_choice"
    history = await stack.http.get(f"/api/webchat/sessions/{session}/messages")
    assert history.json()["messages"] == []
