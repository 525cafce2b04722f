"""Choices on a channel that cannot show them (Chatwoot here; the http channel alike): the
delivery runner writes them into the reply as numbered text, and a typed "2" comes back to
the agent as the option (``metadata.interactive``), on SQLite and PostgreSQL."""

from __future__ import annotations

from chatbridge.agent import Agent, Answer, Turn
from chatbridge.channels.interactive import with_numbered_choices
from chatbridge.models import ConversationRef, OutboundAction
from tests.e2e.harness import running_stack, wait_until

CHOICES = {"options": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]}


def test_with_numbered_choices() -> None:
    conv = ConversationRef(id="c", channel="http", channel_key="k", inbox_id=1)
    action = OutboundAction("message", conv, "i", text="Sure?", interactive=CHOICES)
    numbered = with_numbered_choices(action)
    assert (numbered.text, numbered.interactive) == ("Sure?\n\n1. Yes\n2. No", None)
    plain = OutboundAction("message", conv, "i", text="Hi")
    assert with_numbered_choices(plain) is plain


async def test_chatwoot_numbered_round_trip(database_url: str) -> None:
    agent = Agent("agent1", reconnect_initial_delay=0.02)
    turns: list[Turn] = []

    @agent.on_message
    async def answer(turn: Turn) -> str | Answer:
        turns.append(turn)
        if turn.choice is not None:
            return f"You picked {turn.choice['id']}"
        return Answer("Sure?", interactive=CHOICES)

    async with running_stack(database_url, agent=agent) as stack:
        await stack.say("Cancel my order")
        assert await stack.wait_replies(1) == ["Sure?\n\n1. Yes\n2. No"]
        await stack.say("2.")
        assert (await stack.wait_replies(2))[1] == "You picked no"
        await wait_until(lambda: len(turns) == 2)
        assert turns[1].choice == {"id": "no", "title": "No"}
        # the reply closed the offer: what follows is a plain message
        await stack.say("2 more questions")
        await stack.wait_replies(3)
        assert turns[2].choice is None
