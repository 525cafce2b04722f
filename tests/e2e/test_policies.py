"""Conversation policies end to end: a real bridge, the mock Chatwoot and an SDK agent on
loopback sockets, on both databases.

The agent records every turn it is given (the customer messages in it) and answers with
them, so a test sees how many model calls a burst cost and that nothing was lost or
reordered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from chatbridge.agent import Agent, Turn
from chatbridge.policies import RoutePolicies
from chatbridge.store import tables as t
from chatbridge.testing.clock import FakeClock
from tests.e2e.harness import Stack, running_stack, wait_until


@dataclass
class Recorder:
    """An agent that answers each turn with the messages it carried: ``R:a | b``.

    ``gate``: while set to an unset event, every turn waits for it before answering (the
    test decides when the model is done)."""

    agent: Agent = field(default_factory=lambda: Agent("agent1", reconnect_initial_delay=0.02))
    turns: list[list[str]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        @self.agent.on_message
        async def answer(turn: Turn) -> str:
            texts = [str(m["content"]) for m in turn.messages]
            self.turns.append(texts)
            self.started.set()
            if self.gate is not None:
                await self.gate.wait()
            return "R:" + " | ".join(texts)


def policies(**kw: object) -> dict[str, object]:
    return {"policies": RoutePolicies.model_validate(kw)}


async def burst(stack: Stack, texts: list[str], conv: int = 1) -> list[dict[str, object]]:
    """A customer types ``texts`` one after another (each acknowledged before the next)."""
    out = []
    for text in texts:
        sent = await stack.say(text, conv=conv)
        assert sent["status_code"] == 200, sent
        out.append(sent["response"])
    return out


async def turns_by_state(stack: Stack) -> dict[str, int]:
    return (await stack.bridge.store.counts())["turns"]


async def test_a_burst_is_one_turn_and_one_reply(database_url: str) -> None:
    rec = Recorder()
    texts = ["hi", "I have a question", "about my order", "number 42", "thanks"]
    async with running_stack(
        database_url,
        agent=rec.agent,
        mapping=policies(debounce_ms=2500, max_wait_ms=20_000),
    ) as stack:
        acks = await burst(stack, texts)
        # every fragment was accepted into the same turn
        assert len({a["turn_id"] for a in acks}) == 1, acks
        assert await stack.wait_replies(1) == ["R:" + " | ".join(texts)]
        await stack.idle()
        assert rec.turns == [texts]
        assert await turns_by_state(stack) == {"done": 1}
        # the next message after the reply starts a new window
        await burst(stack, ["one more thing"])
        assert (await stack.wait_replies(2))[1] == "R:one more thing"
        assert rec.turns[1] == ["one more thing"]


async def test_an_attachment_closes_the_window_at_once(sqlite_url: str) -> None:
    rec = Recorder()
    async with running_stack(
        sqlite_url, agent=rec.agent, mapping=policies(debounce_ms=60_000, max_wait_ms=60_000)
    ) as stack:
        await stack.say("here is the photo", conv=3)
        await stack.say(
            "",
            conv=3,
            attachments=[{"file_type": "image", "data_url": "https://example.test/p.jpg"}],
        )
        # a 60 s window: a reply within the test's time came from the attachment closing it
        await stack.wait_replies(1, conv=3, timeout=20)
        assert len(rec.turns) == 1 and rec.turns[0][0] == "here is the photo"


async def test_merge_next_answers_what_came_in_while_the_agent_was_busy_in_one_turn(
    database_url: str,
) -> None:
    rec = Recorder(gate=asyncio.Event())
    async with running_stack(
        database_url, agent=rec.agent, mapping=policies(in_flight="merge_next")
    ) as stack:
        await burst(stack, ["first"])
        await asyncio.wait_for(rec.started.wait(), 10)
        await burst(stack, ["second", "third", "fourth"])
        assert rec.gate is not None
        rec.gate.set()
        assert await stack.wait_replies(2) == ["R:first", "R:second | third | fourth"]
        await stack.idle()
        assert rec.turns == [["first"], ["second", "third", "fourth"]]


async def test_supersede_cancels_the_running_turn_and_answers_everything_once(
    database_url: str,
) -> None:
    rec = Recorder(gate=asyncio.Event())
    async with running_stack(
        database_url, agent=rec.agent, mapping=policies(in_flight="supersede")
    ) as stack:
        [first] = await burst(stack, ["where is my order"])
        await asyncio.wait_for(rec.started.wait(), 10)
        [second] = await burst(stack, ["it is order 42"])
        assert second["turn_id"] != first["turn_id"]
        store = stack.bridge.store
        first_id = int(str(first["turn_id"]).removeprefix("t_"))
        row = await store.get_turn(first_id)
        assert row is not None and (row["state"], row["outcome"]) == ("cancelled", "superseded")
        assert rec.gate is not None
        rec.gate.set()  # the first turn's answer, if the agent still sends it, comes too late
        replies = await stack.wait_replies(1)
        await stack.idle()
        assert replies == ["R:where is my order | it is order 42"]
        assert rec.turns[-1] == ["where is my order", "it is order 42"]
        assert await turns_by_state(stack) == {"cancelled": 1, "done": 1}


async def test_supersede_under_load_never_delivers_a_superseded_reply(
    database_url: str,
) -> None:
    """Eight customers each send five messages at random moments while a slow agent answers:
    every reply that reaches Chatwoot belongs to a turn that finished (none to a superseded
    one), every message is in exactly one answered-or-superseded chain, in order, and each
    customer's last message is answered."""
    import random

    rng = random.Random(14)
    agent = Agent("agent1", reconnect_initial_delay=0.02)
    answered: list[str] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        await asyncio.sleep(rng.uniform(0.0, 0.15))  # the model's own time
        answered.append(turn.id)
        return f"{turn.id}:" + "|".join(str(m["content"]) for m in turn.messages)

    async with running_stack(
        database_url, agent=agent, mapping=policies(in_flight="supersede")
    ) as stack:

        async def customer(conv: int) -> None:
            for n in range(5):
                sent = await stack.say(f"c{conv}m{n}", conv=conv)
                assert sent["status_code"] == 200, sent
                await asyncio.sleep(rng.uniform(0.0, 0.12))  # the customer's pace

        await asyncio.gather(*(customer(c) for c in range(1, 9)))
        await wait_until(lambda: all(stack.replies(c) for c in range(1, 9)), 30)
        await stack.idle(timeout=30)
        async with stack.bridge.store.engine.connect() as conn:
            turns = {
                f"t_{r.id}": r
                for r in (await conn.execute(select(t.turns.c.id, t.turns.c.state))).all()
            }
        for conv in range(1, 9):
            replies = stack.replies(conv)
            for reply in replies:
                key = reply.split(":", 1)[0]
                assert turns[key].state == "done", (conv, reply, turns[key])
            # the last reply answers everything not answered before, ending with the last
            assert replies[-1].endswith(f"c{conv}m4"), replies
            said = [p for r in replies for p in r.split(":", 1)[1].split("|")]
            assert said == [f"c{conv}m{n}" for n in range(5)], replies


async def test_handoff_keyword_hands_over_without_a_turn_and_an_operator_gives_it_back(
    database_url: str,
) -> None:
    rec = Recorder()
    async with running_stack(
        database_url,
        agent=rec.agent,
        mapping=policies(
            handoff_keywords=["human", "talk to a person"],
            resume_keywords=["#bot"],
            handoff_summary=True,
            summary_messages=5,
        ),
    ) as stack:
        await burst(stack, ["hello"])
        await stack.wait_replies(1)
        [ack] = await burst(stack, ["Human!"])
        assert ack["status"] == "stored" and ack["reason"] == "handoff_keyword", ack
        await stack.idle()
        assert len(rec.turns) == 1  # the keyword cost no model call
        conv = await stack.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None and conv.owner == "human"
        # Chatwoot was told: the conversation is handed to the team
        assert "handoff" in stack.actions(1) or "toggle_status" in stack.actions(1)
        notes = [
            m
            for m in await stack.bridge.store.list_messages(conv.id)
            if m.direction == "note" and m.meta.get("kind") == "handoff_summary"
        ]
        assert len(notes) == 1
        assert "Customer: hello" in notes[0].text and "Customer: Human!" in notes[0].text
        assert "Bot: R:hello" in notes[0].text
        # … and the team sees it in Chatwoot as a private note, the customer never does
        await wait_until(lambda: stack.mock.notes(1))
        assert stack.mock.notes(1)[0]["content"] == notes[0].text
        assert notes[0].text not in stack.replies(1)
        # while a human has it, the customer's messages wait for the human
        [ack] = await burst(stack, ["are you there?"])
        assert ack["reason"] == "human_owner"
        # an operator's resume keyword gives it back to the bot
        sent = await stack.event(
            "message_created", conv=1, content="#bot", message_type="outgoing", sender_type="user"
        )
        assert sent["status_code"] == 200, sent
        await wait_until(
            lambda: _owner(stack, "1:1"),
        )
        await burst(stack, ["thanks"])
        assert (await stack.wait_replies(2))[-1] == "R:thanks"


def _owner(stack: Stack, key: str) -> object:
    async def check() -> bool:
        conv = await stack.bridge.store.find_conversation("chatwoot", key)
        return conv is not None and conv.owner == "bot"

    return check()


async def test_the_bot_session_expires_after_silence(sqlite_url: str) -> None:
    rec = Recorder()
    fresh: list[bool] = []

    @rec.agent.on_message
    async def answer(turn: Turn) -> str:
        fresh.append(bool(turn.raw.get("fresh")))
        return "ok"

    with FakeClock().installed() as clock:
        async with running_stack(
            sqlite_url, agent=rec.agent, mapping=policies(expire_after_seconds=3600)
        ) as stack:
            # idle before each jump: a lease still held would run out with the clock
            await burst(stack, ["first"])
            await stack.wait_replies(1)
            await stack.idle()
            clock.advance(600)
            await burst(stack, ["ten minutes later"])
            await stack.wait_replies(2)
            await stack.idle()
            clock.advance(7200)
            await burst(stack, ["two hours later"])
            await stack.wait_replies(3)
    assert fresh == [False, False, True]


# Sunday 2026-12-06 03:00 UTC: outside a Monday-to-Friday schedule in Europe/Berlin
SUNDAY_NIGHT = datetime(2026, 12, 6, 3, 0, tzinfo=UTC).timestamp()
WEEKDAYS_9_TO_5 = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


@pytest.mark.parametrize("outside", ["away_handoff", "hold", "bot"])
async def test_business_hours(sqlite_url: str, outside: str) -> None:
    rec = Recorder()
    hours = {
        "timezone": "Europe/Berlin",
        "weekly": WEEKDAYS_9_TO_5,
        "outside": outside,
        "away_text": "We are closed; a colleague answers on Monday from 9:00.",
    }
    with FakeClock(SUNDAY_NIGHT).installed() as clock:
        async with running_stack(
            sqlite_url, agent=rec.agent, mapping=policies(business_hours=hours)
        ) as stack:
            [ack] = await burst(stack, ["hello?"])
            await stack.idle()
            if outside == "bot":
                assert stack.replies(1) == ["R:hello?"]
                return
            assert ack["reason"] == "outside_hours" and rec.turns == []
            expected = [hours["away_text"]] if outside == "away_handoff" else []
            assert stack.replies(1) == expected
            conv = await stack.bridge.store.find_conversation("chatwoot", "1:1")
            assert conv is not None and conv.owner == "human"
            # Monday 10:00 in Berlin, a new conversation: the bot answers
            clock.advance(31 * 3600)
            await burst(stack, ["good morning"], conv=2)
            assert await stack.wait_replies(1, conv=2) == ["R:good morning"]


async def test_ignored_senders_are_stored_but_never_reach_the_agent(sqlite_url: str) -> None:
    rec = Recorder()
    async with running_stack(
        sqlite_url, agent=rec.agent, mapping=policies(ignore={"contact_ids": ["7"]})
    ) as stack:
        sent = await stack.say("spam", conv=4, sender={"id": 7, "name": "A bot of theirs"})
        assert sent["response"]["reason"] == "ignored", sent
        await burst(stack, ["a real question"], conv=5)
        await stack.wait_replies(1, conv=5)
        await stack.idle()
        assert rec.turns == [["a real question"]]


@pytest.mark.parametrize("with_summary", [True, False])
async def test_the_agents_handoff_leaves_the_human_its_summary(
    database_url: str, with_summary: bool
) -> None:
    from chatbridge.agent import Handoff

    agent = Agent("agent1", reconnect_initial_delay=0.02)

    @agent.on_message
    async def answer(turn: Turn) -> str | Handoff:
        if "refund" in turn.content:
            summary = "Wants a refund for order 42; already tried support twice."
            return Handoff(
                content="A colleague will take it from here.",
                summary=summary if with_summary else None,
            )
        return "How can I help?"

    async with running_stack(
        database_url, agent=agent, mapping=policies(handoff_summary=True, summary_messages=3)
    ) as stack:
        await burst(stack, ["hello"])
        await stack.wait_replies(1)
        await burst(stack, ["I want a refund"])
        await stack.wait_replies(2)
        await wait_until(lambda: stack.mock.notes(1))
        await stack.idle()
        [note] = stack.mock.notes(1)
        if with_summary:
            assert "Wants a refund for order 42" in note["content"]
        else:
            lines = note["content"].splitlines()[1:]
            assert lines == [
                "Bot: How can I help?",
                "Customer: I want a refund",
                "Bot: A colleague will take it from here.",
            ], note
        assert stack.replies(1) == ["How can I help?", "A colleague will take it from here."]


async def test_expiry_gives_a_conversation_a_human_left_back_to_the_bot(sqlite_url: str) -> None:
    rec = Recorder()
    with FakeClock().installed() as clock:
        async with running_stack(
            sqlite_url,
            agent=rec.agent,
            mapping=policies(
                expire_after_seconds=3600, expire_returns_to_bot=True, handoff_keywords=["human"]
            ),
        ) as stack:
            [ack] = await burst(stack, ["human"])
            assert ack["reason"] == "handoff_keyword"
            await stack.idle()  # a lease still held would run out with the clock
            clock.advance(600)
            [ack] = await burst(stack, ["still there?"])
            assert ack["reason"] == "human_owner"  # within the hour: the human's
            await stack.idle()
            clock.advance(7200)
            [ack] = await burst(stack, ["new question"])
            assert ack["status"] == "accepted", ack
            assert await stack.wait_replies(1) == ["R:new question"]
            conv = await stack.bridge.store.find_conversation("chatwoot", "1:1")
            assert conv is not None and conv.owner == "bot"
