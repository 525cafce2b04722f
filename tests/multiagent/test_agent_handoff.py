"""Several named agents on one route, end to end over real sockets (SQLite and PostgreSQL):
a guide hands a conversation to a billing specialist (``agent_handoff``), the specialist
answers the next message, and the conversation records which agent answered each one."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chatbridge.agent import Agent, HandTo, Turn
from chatbridge.store.records import CURRENT_AGENT_KEY
from tests.e2e.harness import wait_until
from tests.multiagent.rig import two_agent_stack

HANDING = "Let me bring in our billing specialist."


def guide_answer(frame: dict[str, Any]) -> dict[str, Any]:
    """The guide: hands invoice questions to ``billing``, asks about anything "legal" to a
    role the route does not have, and answers the rest itself."""
    content = frame["content"].lower()
    if "invoice" in content:
        return {
            "type": "agent_handoff",
            "to_role": "billing",
            "reason": "an invoice question",
            "content": HANDING,
        }
    if "legal" in content:
        return {"type": "agent_handoff", "to_role": "legal", "content": "Our lawyers will answer."}
    return {"type": "agent_message", "content": f"Guide here: {frame['content']}"}


async def test_the_guide_hands_over_and_the_specialist_answers_the_next_message(
    database_url: str,
) -> None:
    async with two_agent_stack(database_url, guide_answer) as rig:
        await rig.say("Hello")
        assert await rig.wait_replies(1) == ["Guide here: Hello"]
        first = rig.guide.turns[0]
        assert (first["agent"], first["role"]) == ("guide", "guide")

        await rig.say("My invoice is wrong")
        assert (await rig.wait_replies(2))[1] == HANDING
        # the specialist is told who handed it the conversation, and why
        await wait_until(lambda: rig.specialist_events)
        [event] = rig.specialist_events
        conversation_id = first["conversation_id"]
        assert (event.event, event.conversation_id) == ("agent_handoff", conversation_id)
        assert event.data["from_agent"] == "guide"
        assert event.data["to_role"] == "billing"
        assert event.raw["reason"] == "an invoice question"

        await rig.say("Invoice 42 lists two plans")
        assert (await rig.wait_replies(3))[2] == "Billing here: Invoice 42 lists two plans"
        [turn] = rig.specialist_turns
        assert (turn.raw["agent"], turn.raw["role"]) == ("specialist", "billing")
        assert len(rig.guide.turns) == 2  # the guide never saw the third message
        await rig.idle()

        # who answered each message: in the store, and in the console's thread view
        messages = await rig.bridge.store.list_messages(conversation_id)
        answered = [
            (m.text, m.meta.get("agent_id"), m.meta.get("agent_role"))
            for m in messages
            if m.direction == "out"
        ]
        assert answered == [
            ("Guide here: Hello", "guide", "guide"),
            (HANDING, "guide", "guide"),
            ("Billing here: Invoice 42 lists two plans", "specialist", "billing"),
        ]
        r = await rig.http.get(f"/api/comms/threads/{conversation_id}/messages")
        assert r.status_code == 200, r.text
        shown = [(m["role"], m["meta"].get("agent_id")) for m in r.json()["messages"]]
        assert shown == [
            ("contact", None),
            ("agent", "guide"),
            ("contact", None),
            ("agent", "guide"),
            ("contact", None),
            ("agent", "specialist"),
        ]
        conv = await rig.bridge.store.get_conversation(conversation_id)
        assert conv is not None and conv.meta[CURRENT_AGENT_KEY] == "specialist"
        # both agents are listed with the inbox they answer
        status = {a["agent_id"]: a for a in (await rig.http.get("/agents/status")).json()["agents"]}
        for agent_id in ("guide", "specialist"):
            assert status[agent_id]["inboxes"] == [{"channel": "chatwoot", "inbox_id": 1}]
            assert status[agent_id]["connected"]


async def test_a_handoff_to_an_unknown_role_fails_the_turn_and_keeps_the_agent(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chatbridge.workers")
    async with two_agent_stack(sqlite_url, guide_answer) as rig:
        await rig.say("A legal question")
        # the route's fallback, not the handing words of a handoff that went nowhere
        assert await rig.wait_replies(1) == ["Sorry, we cannot answer right now."]
        assert any(
            "agent_handoff_unknown: no role 'legal' on this route" in r.getMessage()
            for r in caplog.records
        )
        await rig.say("Hello again")
        assert (await rig.wait_replies(2))[1] == "Guide here: Hello again"
        assert rig.specialist_turns == [] and rig.specialist_events == []
        await rig.idle()
        conv = await rig.bridge.store.get_conversation(rig.guide.turns[0]["conversation_id"])
        assert conv is not None and CURRENT_AGENT_KEY not in conv.meta


async def test_a_visitor_addresses_an_agent_by_role_or_id(sqlite_url: str) -> None:
    async with two_agent_stack(sqlite_url, guide_answer, webchat=True) as rig:
        session = (await rig.http.post("/api/webchat/sessions", json={"inbox_id": 1})).json()[
            "session_id"
        ]
        path = f"/api/webchat/sessions/{session}/messages"

        async def say(text: str, **address: str) -> str:
            """Post a message and return the agent's answer to it."""
            r = await rig.http.post(path, json={"text": text, **address})
            assert r.status_code == 202, r.text

            async def answered() -> str | None:
                rows = (await rig.http.get(path)).json()["messages"]
                return rows[-1]["text"] if rows[-1]["role"] == "agent" else None

            return str(await wait_until(answered))

        assert await say("Hi") == "Guide here: Hi"
        assert await say("What do I owe?", role="Billing") == "Billing here: What do I owe?"
        # the addressed agent stays on the conversation
        assert await say("Thanks") == "Billing here: Thanks"
        assert await say("Back to you", agent="guide") == "Guide here: Back to you"
        assert [t.raw["role"] for t in rig.specialist_turns] == ["billing", "billing"]
        assert [t["agent"] for t in rig.guide.turns] == ["guide", "guide"]
        # an address that names no one on the route changes nothing
        assert await say("Anyone?", role="sales") == "Guide here: Anyone?"

        before = len((await rig.http.get(path)).json()["messages"])
        for bad in ({"role": ""}, {"agent": 42}, {"role": "x" * 201}):
            r = await rig.http.post(path, json={"text": "hello", **bad})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_request"
        assert len((await rig.http.get(path)).json()["messages"]) == before


async def test_a_route_without_agents_is_the_single_agent_route_it_always_was(
    sqlite_url: str,
) -> None:
    """No ``agents``: the turn carries no agent / role, nothing is written to the
    conversation's meta, and an agent_handoff has no one to go to."""
    async with two_agent_stack(sqlite_url, guide_answer, agents=[]) as rig:
        [route] = rig.bridge.routes()
        assert route.agents == ()
        await rig.say("Hello")
        assert await rig.wait_replies(1) == ["Guide here: Hello"]
        assert "agent" not in rig.guide.turns[0] and "role" not in rig.guide.turns[0]
        await rig.say("My invoice is wrong")
        assert (await rig.wait_replies(2))[1] == "Sorry, we cannot answer right now."
        await rig.idle()
        assert rig.specialist_turns == [] and rig.specialist_events == []
        conversation_id = rig.guide.turns[0]["conversation_id"]
        conv = await rig.bridge.store.get_conversation(conversation_id)
        assert conv is not None and CURRENT_AGENT_KEY not in conv.meta
        replies = await rig.bridge.store.list_messages(conversation_id)
        assert [m.meta.get("agent_id") for m in replies if m.direction == "out"] == [
            "guide",
            None,  # the bridge's fallback is not an agent's answer
        ]


async def test_an_agent_hands_over_outside_a_turn(sqlite_url: str) -> None:
    async with two_agent_stack(sqlite_url, guide_answer) as rig:
        await rig.say("Hello")
        assert await rig.wait_replies(1) == ["Guide here: Hello"]
        conversation_id = rig.guide.turns[0]["conversation_id"]
        # a target that is none of the route's agents: dropped, nothing is sent
        await rig.guide.send(
            {
                "type": "agent_handoff",
                "conversation_id": conversation_id,
                "to_agent": "nobody",
                "content": "Nobody will answer.",
            }
        )
        await rig.guide.send(
            {
                "type": "agent_handoff",
                "conversation_id": conversation_id,
                "to_agent": "specialist",
                "reason": "shift change",
                "content": "Our specialist takes it from here.",
            }
        )
        assert (await rig.wait_replies(2))[1] == "Our specialist takes it from here."
        await wait_until(lambda: rig.specialist_events)
        [event] = rig.specialist_events
        assert event.event == "agent_handoff" and event.data["from_agent"] == "guide"
        assert event.raw["reason"] == "shift change"
        await rig.say("Are you there?")
        assert (await rig.wait_replies(3))[2] == "Billing here: Are you there?"
        await rig.idle()
        assert rig.replies() == [
            "Guide here: Hello",
            "Our specialist takes it from here.",
            "Billing here: Are you there?",
        ]
        out = [
            m for m in await rig.bridge.store.list_messages(conversation_id) if m.direction == "out"
        ]
        assert [m.meta.get("agent_id") for m in out] == ["guide", "guide", "specialist"]


async def test_sdk_agents_hand_over_with_hand_to(database_url: str) -> None:
    """The same with the SDK on both ends: the guide returns ``HandTo(role=…)``."""
    guide = Agent("guide", reconnect_initial_delay=0.02, reconnect_max_delay=0.1)
    seen: list[tuple[str | None, str | None]] = []

    @guide.on_message
    async def answer(turn: Turn) -> str | HandTo:
        seen.append((turn.agent, turn.role))
        if "invoice" in turn.content.lower():
            return HandTo(role="billing", reason="an invoice question", content=HANDING)
        return f"Guide here: {turn.content}"

    async with two_agent_stack(database_url, guide_answer, guide_sdk=guide) as rig:
        await rig.say("Hello")
        await rig.say("About my invoice")
        await rig.wait_replies(2)
        await rig.say("It lists two plans")
        assert await rig.wait_replies(3) == [
            "Guide here: Hello",
            HANDING,
            "Billing here: It lists two plans",
        ]
        assert seen == [("guide", "guide"), ("guide", "guide")]
        assert [(t.agent, t.role) for t in rig.specialist_turns] == [("specialist", "billing")]
        await wait_until(lambda: rig.specialist_events)
        assert rig.specialist_events[0].data["from_agent"] == "guide"
