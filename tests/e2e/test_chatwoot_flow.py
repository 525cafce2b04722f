"""End to end over real sockets: Chatwoot imitation → bridge → agent over WebSocket → back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from chatbridge.agent import Agent, Turn, TurnError
from chatbridge.testing.mock_agent import auto_behaviour, echo_text, split_chunks
from chatbridge.testing.mock_chatwoot import Faults
from tests.e2e.harness import Stack, free_port, running_stack, wait_until

REPLY_ALONE = ["message"]
REPLY_WITH_TYPING = ["typing_on", "message", "typing_off"]


def turns_shown(kinds: list[str]) -> list[list[str]]:
    """One conversation's Chatwoot actions cut into its turns, in order.

    Each turn shows its reply either alone (a fast agent: the pair was skipped) or inside
    exactly one typing pair; anything else (an "off" without "on", a pair around nothing or
    around two replies, an indicator left on) fails.
    """
    turns: list[list[str]] = []
    current: list[str] = []
    for kind in kinds:
        current.append(kind)
        if current in (REPLY_ALONE, REPLY_WITH_TYPING):
            turns.append(current)
            current = []
        else:
            assert current in (["typing_on"], ["typing_on", "message"]), kinds
    assert current == [], kinds
    return turns


def typing_first_agent(
    stacks: list[Stack], ready: Callable[[Stack, int], bool] | None = None
) -> Agent:
    """An agent that answers a turn only once ``ready(stack, chatwoot_conversation)`` holds —
    by default, once this turn's typing_on has reached Chatwoot (the n-th turn of a
    conversation waits for its n-th typing_on), so the turn must show one typing pair however
    slow the machine is. It answers like the mock's ``auto`` behaviour (echo, error →
    fallback, stream). ``stacks`` gets the running stack before the first turn.
    """
    agent = Agent("agent1")
    turns_seen: dict[int, int] = {}

    async def stream(text: str) -> AsyncIterator[str]:
        for piece in split_chunks(text, None):
            yield piece

    @agent.on_message
    async def answer(turn: Turn) -> str | AsyncIterator[str]:
        [s] = stacks
        conversation = await s.bridge.store.get_conversation(turn.conversation_id)
        assert conversation is not None
        conv = int(conversation.channel_key.split(":")[1])  # "account:conversation"
        nth = turns_seen[conv] = turns_seen.get(conv, 0) + 1

        def typing_on_shown(s: Stack, conv: int) -> bool:
            return s.actions(conv).count("typing_on") >= nth

        await wait_until(lambda: (ready or typing_on_shown)(s, conv), timeout=20)
        match auto_behaviour(turn.content):
            case "error":
                raise TurnError("mock_error", "asked to fail")
            case "stream":
                return stream(echo_text(turn.content))
            case _:
                return echo_text(turn.content)

    return agent


async def test_async_round_trip_with_echo_id_and_typing(sqlite_url: str) -> None:
    # an agent that thinks until the typing indicator is on: it stays on while it does
    stacks: list[Stack] = []
    async with running_stack(sqlite_url, agent=typing_first_agent(stacks), timeout_seconds=30) as s:
        stacks.append(s)
        sent = await s.say("Where is my order?")
        assert sent["status_code"] == 200
        assert sent["response"]["status"] == "accepted"
        assert sent["response"]["turn_id"].startswith("t_")
        assert await s.wait_replies(1) == ["Echo: Where is my order?"]
        await s.idle()
        [reply] = s.mock.received_messages
        assert reply["echo_id"] and not reply["private"]
        assert s.actions(1) == ["typing_on", "message", "typing_off"]


async def test_an_instant_reply_shows_typing_in_pairs_or_not_at_all(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        for n in range(5):
            await s.say(f"quick {n}")
        await s.wait_replies(5)
        await s.idle()
        # how many pairs show depends on the race with the typing delivery; each turn shows
        # its reply either alone or inside exactly one pair
        assert len(turns_shown(s.actions(1))) == 5


async def test_sync_mode_returns_the_reply_in_the_body_and_still_posts_it(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        sent = await s.say("hello sync", query={"mode": "sync"})
        assert sent["status_code"] == 200
        body = sent["response"]
        assert body["status"] == "replied"
        assert body["reply"] == {"outcome": "reply", "content": "Echo: hello sync"}
        assert await s.wait_replies(1) == ["Echo: hello sync"]


async def test_sync_mode_answers_202_when_the_agent_is_slower_than_the_window(
    sqlite_url: str,
) -> None:
    async with running_stack(
        sqlite_url, behaviour="delay", delay=1.0, max_sync_response_time=0.2
    ) as s:
        sent = await s.say("slow one", query={"mode": "sync"})
        assert sent["status_code"] == 202
        assert sent["response"]["status"] == "accepted" and sent["response"]["turn_id"]
        assert await s.wait_replies(1) == ["Echo: slow one"]


async def test_route_in_sync_mode_replies_in_body(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, mapping={"reply_mode": "sync"}) as s:
        sent = await s.say("route says sync")
        assert sent["response"]["reply"]["content"] == "Echo: route says sync"


async def test_streaming_agent_posts_one_complete_message(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, behaviour="stream") as s:
        await s.say("please stream this answer")
        assert await s.wait_replies(1) == ["Echo: please stream this answer"]
        await s.idle()
        assert s.replies() == ["Echo: please stream this answer"]


async def test_agent_error_sends_the_route_fallback(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, behaviour="error", mapping={"fallback_text": "Back soon!"}
    ) as s:
        await s.say("break please")
        assert await s.wait_replies(1) == ["Back soon!"]
        await s.idle()
        assert len(turns_shown(s.actions(1))) == 1
        metrics = (await s.http.get("/metrics")).text
        assert 'chatbridge_turns_total{agent_id="agent1",outcome="fallback"} 1.0' in metrics


async def test_agent_timeout_sends_the_default_fallback(sqlite_url: str) -> None:
    agent = Agent("agent1")
    release = asyncio.Event()

    @agent.on_message
    async def answer(turn: Turn) -> str:
        if turn.content == "are you there?":
            await release.wait()  # held until the turn has timed out
            return "late answer"
        return f"after: {turn.content}"

    async with running_stack(sqlite_url, agent=agent, timeout_seconds=0.3) as s:
        await s.say("are you there?")
        [reply] = await s.wait_replies(1)
        assert reply == s.bridge.settings.fallback_text
        await s.idle()
        # the late answer goes out on the agent's socket ahead of the next turn's answer; the
        # conversation's replies keep their order, so a late answer wrongly posted would come
        # before the marker's reply
        release.set()
        await s.say("marker")
        assert await s.wait_replies(2) == [reply, "after: marker"]
        await s.idle()
        assert s.replies() == [reply, "after: marker"]


async def test_failure_can_hand_off_instead(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, behaviour="error", mapping={"on_failure": "handoff"}) as s:
        await s.say("help")
        await wait_until(lambda: "toggle_status" in s.actions(1))
        await s.idle()
        assert s.replies() == []
        assert s.mock.conversations[1].status == "open"
        conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None and conv.owner == "human"


async def test_handoff_by_agent_opens_the_conversation_and_silences_the_bot(
    sqlite_url: str,
) -> None:
    async with running_stack(sqlite_url, behaviour="handoff") as s:
        await s.say("I want a human", status="pending")
        await wait_until(lambda: "toggle_status" in s.actions(1))
        assert s.replies() == ["Let me connect you with a human agent."]
        assert s.mock.conversations[1].status == "open"
        await s.mock.drain()  # the status webhook the mock fires back
        await s.idle()
        await s.say("hello? still there?")
        await s.idle()
        assert s.replies() == ["Let me connect you with a human agent."]
        assert s.actions(1).count("toggle_status") == 1


async def test_human_reply_takes_over(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        await s.say("first")
        await s.wait_replies(1)
        await s.idle()
        r = await s.say(
            "Hi, Sam here from support",
            message_type="outgoing",
            sender_type="user",
            sender={"id": 5, "name": "Sam"},
        )
        assert r["response"]["reason"] == "owner:human"
        await s.say("thanks Sam")
        await s.idle()
        assert s.replies() == ["Echo: first"]
        conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None
        texts = [(m.author, m.text) for m in await s.bridge.store.list_messages(conv.id)]
        assert ("human", "Hi, Sam here from support") in texts


async def test_resolving_returns_the_conversation_to_the_bot(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        await s.say(
            "Hi, Sam here",
            message_type="outgoing",
            sender_type="user",
            sender={"id": 5, "name": "Sam"},
        )
        await s.event("conversation_status_changed", status="resolved")
        await s.say("new question")
        assert await s.wait_replies(1) == ["Echo: new question"]


async def test_agent_bot_mode_only_answers_pending(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, mapping={"agent_bot_mode": True}) as s:
        await s.say("while pending", status="pending")
        await s.wait_replies(1)
        await s.say("after a human opened it", status="open")
        await s.idle()
        assert s.replies() == ["Echo: while pending"]


async def test_typing_on_and_off_come_in_pairs(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, behaviour="auto") as s:
        for conv in (1, 2, 3):
            for text in ("hi", "error now", "stream it"):
                await s.say(f"{text} {conv}", conv=conv)
        await s.wait_replies(9)
        await s.idle()
        for conv in (1, 2, 3):
            # instant answers: each turn's reply shows alone or inside one pair
            assert len(turns_shown(s.actions(conv))) == 3


async def test_a_thinking_agent_shows_one_typing_pair_per_turn(sqlite_url: str) -> None:
    stacks: list[Stack] = []
    async with running_stack(sqlite_url, agent=typing_first_agent(stacks), timeout_seconds=30) as s:
        stacks.append(s)
        for conv in (1, 2):
            for text in ("question", "error now", "stream it"):
                await s.say(f"{text} {conv}", conv=conv)
        await s.wait_replies(6)
        await s.idle()
        for conv in (1, 2):
            # a reply, a fallback and a streamed reply: each inside its own typing pair
            assert turns_shown(s.actions(conv)) == [REPLY_WITH_TYPING] * 3
            assert s.replies(conv) == [
                f"Echo: question {conv}",
                s.bridge.settings.fallback_text,
                f"Echo: stream it {conv}",
            ]


async def test_duplicate_delivery_gets_one_reply(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        first = await s.say("only once", delivery_id="5f1e1d2c-0000-4000-8000-000000000001")
        again = await s.say("only once", delivery_id="5f1e1d2c-0000-4000-8000-000000000001")
        assert first["response"]["status"] == "accepted"
        assert again["response"]["status"] == "duplicate"
        same_message = await s.say("only once", message_id=first["message_id"])
        assert same_message["response"]["status"] == "duplicate"
        await s.wait_replies(1)
        await s.idle()
        assert s.replies() == ["Echo: only once"]


async def test_own_private_and_template_messages_start_no_turn(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, mock_options={"emit_message_webhooks": True}) as s:
        await s.say("real question")
        await s.wait_replies(1)
        await s.mock.drain()  # our reply comes back as an outgoing agent_bot webhook
        r1 = await s.say(
            "internal note",
            message_type="outgoing",
            private=True,
            sender_type="user",
            sender={"id": 5, "name": "Sam"},
        )
        r2 = await s.say("Welcome! We reply within minutes", message_type="template")
        r3 = await s.say("customer private?", private=True)
        assert [r["response"]["status"] for r in (r1, r2, r3)] == ["ignored"] * 3
        await s.idle()
        assert s.replies() == ["Echo: real question"]
        echoed = [
            h
            for h in s.mock.webhook_history
            if (h["payload"].get("sender") or {}).get("type") == "agent_bot"
        ]
        # our own reply's echo is recorded as its delivery's receipt, and starts nothing
        assert echoed and all(
            h["response"] == {"status": "stored", "reason": "receipt"} for h in echoed
        )
        counts = await s.bridge.store.counts()
        assert counts["turns"] == {"done": 1}


async def test_bad_signature_is_refused_and_nothing_stored(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, secret="right-secret-0123456") as s:
        ok = await s.say("signed properly")
        assert ok["status_code"] == 200
        s.mock.secret = "wrong-secret"
        bad = await s.say("forged")
        assert bad["status_code"] == 401
        assert bad["response"]["error"]["code"] == "bad_signature"
        s.mock.secret = None
        unsigned = await s.say("unsigned")
        assert unsigned["status_code"] == 401
        await s.wait_replies(1)
        await s.idle()
        conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None
        assert [
            m.text for m in await s.bridge.store.list_messages(conv.id) if m.direction == "in"
        ] == ["signed properly"]


async def test_chatwoot_429_and_500_bursts_deliver_everything_once_in_order(
    sqlite_url: str,
) -> None:
    faults = Faults(rate_429=0.3, rate_500=0.2, seed=42)
    async with running_stack(
        sqlite_url, mock_options={"faults": faults}, delivery_max_attempts=50
    ) as s:
        sent: dict[int, list[str]] = {c: [] for c in range(1, 6)}
        for n in range(8):
            for conv in sent:
                text = f"c{conv} m{n}"
                await s.say(text, conv=conv)
                sent[conv].append(f"Echo: {text}")
        await s.wait_replies(40, timeout=30)
        await s.idle(timeout=30)
        for conv, expected in sent.items():
            assert s.replies(conv) == expected
        assert await s.bridge.store.list_dead_letters() == []
        metrics = (await s.http.get("/metrics")).text
        assert 'result="retry"' in metrics


async def test_dead_letter_is_listed_and_replayed(sqlite_url: str) -> None:
    stacks: list[Stack] = []
    # the agent answers once typing_on has used up its three 500s
    agent = typing_first_agent(stacks, ready=lambda s, _: s.mock.faults.fail_next == [404])
    async with running_stack(sqlite_url, agent=agent, timeout_seconds=30) as s:
        stacks.append(s)
        # typing_on gets three 500s (its 3 attempts: dropped quietly), the reply a 404 (dead)
        s.mock.set_faults(Faults(fail_next=[500, 500, 500, 404]))
        await s.say("doomed reply")
        await s.idle()
        assert s.replies() == []
        assert s.actions(1) == ["typing_off"]
        dead = (await s.http.get("/dead-letters")).json()["dead_letters"]
        assert [(d["kind"], d["text"], d["attempts"]) for d in dead] == [
            ("message", "Echo: doomed reply", 1)
        ]
        assert "404" in dead[0]["last_error"]
        r = await s.http.post(f"/dead-letters/{dead[0]['id']}/retry")
        assert r.status_code == 200
        assert await s.wait_replies(1) == ["Echo: doomed reply"]
        assert (await s.http.get("/dead-letters")).json()["dead_letters"] == []
        missing = await s.http.post("/dead-letters/999999/retry")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_agent_disconnect_and_reconnect_loses_nothing(sqlite_url: str) -> None:
    agent = Agent("agent1")
    release = asyncio.Event()
    calls: list[str] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        calls.append(turn.content)
        if turn.content == "in flight":
            await release.wait()
        return f"got {turn.content}"

    port = free_port()
    serving = agent.serving("127.0.0.1", port)
    await serving.__aenter__()
    async with running_stack(sqlite_url, agent=agent, agent_port=port, timeout_seconds=20) as s:
        await s.agent_connected()
        await s.say("before")
        await s.wait_replies(1)
        await s.say("in flight", conv=2)
        await wait_until(lambda: "in flight" in calls)
        # the agent's server goes away with a turn in flight
        await serving.__aexit__(None, None, None)
        await wait_until(lambda: not s.bridge.hub.is_connected("agent1"))
        for n in range(3):
            await s.say(f"while down {n}", conv=3 + n)
        release.set()
        serving = agent.serving("127.0.0.1", port)
        await serving.__aenter__()
        try:
            await s.wait_replies(5, timeout=20)
            await s.idle()
        finally:
            await serving.__aexit__(None, None, None)
        assert sorted(s.replies()) == sorted(
            ["got before", "got in flight"] + [f"got while down {n}" for n in range(3)]
        )
