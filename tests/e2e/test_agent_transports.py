"""End to end over real sockets, agent side: dial-in, resume, events, proactive messages, the
circuit breaker, ``/agents/status``, the seed reply format, and two bridges on one database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from chatbridge.agent import Agent, Event, HelloRejected, Turn, TurnError
from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.testing.mock_chatwoot import TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import (
    FAST,
    TOKEN,
    assert_typing_paired,
    dialing_in,
    running_stack,
    wait_until,
)


def fast_agent(agent_id: str = "agent1") -> Agent:
    """An SDK agent that reconnects quickly (tests)."""
    return Agent(agent_id, reconnect_initial_delay=0.02, reconnect_max_delay=0.1)


def echo_agent(agent_id: str = "agent1") -> Agent:
    agent = fast_agent(agent_id)

    @agent.on_message
    async def answer(turn: Turn) -> str:
        return f"Echo: {turn.content}"

    return agent


# ---------------------------------------------------------------------------------- dial-in


async def test_dial_in_agent_with_route_token_answers(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url,
        agent=echo_agent(),
        transport="ws-dial-in",
        route_token="s3cret-token-0123456",
        dial_token="s3cret-token-0123456",
    ) as s:
        await s.say("Hello over dial-in")
        assert await s.wait_replies(1) == ["Echo: Hello over dial-in"]
        await s.idle()
        assert s.actions(1).count("message") == 1
        assert_typing_paired(s.actions(1))
        status = await s.agent_status()
        assert (status["transport"], status["connected"]) == ("ws-dial-in", True)


async def test_dial_in_agent_with_token_from_settings_answers(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url,
        agent=echo_agent(),
        transport="ws-dial-in",
        agent_tokens={"agent1": "from-env-token-0123456"},
        dial_token="from-env-token-0123456",
    ) as s:
        await s.say("token from CHATBRIDGE_AGENT_TOKENS")
        assert await s.wait_replies(1) == ["Echo: token from CHATBRIDGE_AGENT_TOKENS"]


@pytest.mark.parametrize(
    ("agent_id", "token"),
    [
        ("agent1", "wrong"),
        ("agent1", "from-env-token-0123456"),
        ("stranger", "s3cret-token-0123456"),
    ],
    ids=["wrong-token", "another-agents-token", "unknown-agent"],
)
async def test_dial_in_with_a_bad_token_is_refused(
    sqlite_url: str, agent_id: str, token: str
) -> None:
    # agent1's token is s3cret-… (route); "from-env-…" is agent2's (CHATBRIDGE_AGENT_TOKENS)
    async with running_stack(
        sqlite_url,
        transport="ws-dial-in",
        route_token="s3cret-token-0123456",
        agent_tokens={"agent2": "from-env-token-0123456"},
    ) as s:
        agent = echo_agent(agent_id)
        with pytest.raises(HelloRejected) as refused:
            async with asyncio.timeout(5):
                await agent.dial_in(s.ws_url, token)
        assert refused.value.code == "unauthorized"
        assert not s.bridge.hub.is_connected(agent_id)
        assert [a["agent_id"] for a in (await s.http.get("/agents/status")).json()["agents"]] == [
            "agent1"
        ]
        assert (await s.agent_status())["connected"] is False


async def test_raw_hello_with_a_bad_token_gets_hello_error_and_1008(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token="s3cret-token-0123456"
    ) as s:
        async with connect(s.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "agent_id": "agent1", "token": "nope"}))
            answer = json.loads(await ws.recv())
            assert answer["type"] == "hello_error"
            await ws.wait_closed()
            assert ws.close_code == 1008
        assert not s.bridge.hub.is_connected("agent1")


async def test_dial_in_resume_answers_a_turn_in_flight_exactly_once(sqlite_url: str) -> None:
    agent = fast_agent()
    release = asyncio.Event()
    calls: list[str] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        calls.append(turn.content)
        if turn.content == "in flight":
            await release.wait()
        return f"got {turn.content}"

    async with running_stack(
        sqlite_url,
        agent=agent,
        transport="ws-dial-in",
        route_token="s3cret-token-0123456",
        dial_token="s3cret-token-0123456",
        timeout_seconds=20,
    ) as s:
        await s.say("before")
        await s.wait_replies(1)
        await s.say("in flight", conv=2)
        await wait_until(lambda: "in flight" in calls)
        dropped_at = time.time()
        await agent.close_connections()

        async def reconnected() -> bool:
            status = await s.agent_status()
            return bool(status["connected"] and status["last_seen"] > dropped_at)

        await wait_until(reconnected)
        await s.say("after", conv=3)
        await s.wait_replies(2, conv=None)
        release.set()
        await s.wait_replies(3)
        await s.idle()
        assert sorted(s.replies()) == ["got after", "got before", "got in flight"]
        assert s.replies(2) == ["got in flight"]
        assert calls.count("in flight") == 1
        counts = await s.bridge.store.counts()
        assert counts["turns"] == {"done": 3}


async def test_dial_in_answer_finished_while_disconnected_is_posted_once(
    sqlite_url: str,
) -> None:
    agent = fast_agent()
    release = asyncio.Event()
    calls: list[str] = []
    finished: list[str] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        calls.append(turn.content)
        await release.wait()
        finished.append(turn.content)  # the SDK keeps the answer in this same step
        return f"got {turn.content}"

    async with running_stack(
        sqlite_url,
        agent=agent,
        transport="ws-dial-in",
        route_token="s3cret-token-0123456",
        timeout_seconds=20,
    ) as s:
        # The agent also serves (as ``Agent.run(dial_in=…, serve=…)`` does), so its running
        # handlers outlive the dial-in session: the SDK cancels them once no mode is running.
        async with agent.serving("127.0.0.1", 0):
            async with dialing_in(agent, s.ws_url, "s3cret-token-0123456"):
                await s.agent_connected()
                await s.say("in flight")
                await wait_until(lambda: calls == ["in flight"])
            await wait_until(lambda: not s.bridge.hub.is_connected("agent1"))
            release.set()  # the handler finishes while the agent is not connected …
            await wait_until(lambda: finished)
            assert s.replies() == []
            async with dialing_in(agent, s.ws_url, "s3cret-token-0123456"):  # … and comes back
                assert await s.wait_replies(1) == ["got in flight"]
                await s.idle()
        assert s.replies() == ["got in flight"]
        assert calls == ["in flight"]


# ---------------------------------------------------------------------------------- events


async def test_widget_and_created_events_reach_the_agent_and_its_greeting_is_posted_once(
    sqlite_url: str,
) -> None:
    agent = echo_agent()
    events: list[Event] = []

    @agent.on_event
    async def greet(event: Event) -> str | None:
        events.append(event)
        if event.event in ("webwidget_triggered", "conversation_created"):
            return f"Welcome! ({event.event})"
        return None

    async with running_stack(
        sqlite_url,
        agent=agent,
        transport="ws-dial-in",
        route_token="s3cret-token-0123456",
        dial_token="s3cret-token-0123456",
    ) as s:
        widget = await s.event("webwidget_triggered", conv=1, delivery_id="d-widget-1")
        assert widget["response"]["status"] == "forwarded"
        assert await s.wait_replies(1, conv=1) == ["Welcome! (webwidget_triggered)"]
        again = await s.event("webwidget_triggered", conv=1, delivery_id="d-widget-1")
        assert again["response"]["status"] == "duplicate"

        created = await s.event("conversation_created", conv=2)
        assert created["response"]["status"] == "forwarded"
        assert await s.wait_replies(1, conv=2) == ["Welcome! (conversation_created)"]

        await s.idle()
        assert s.replies(1) == ["Welcome! (webwidget_triggered)"]
        assert s.replies(2) == ["Welcome! (conversation_created)"]
        assert [e.event for e in events] == ["webwidget_triggered", "conversation_created"]
        widget_event = events[0]
        conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None and widget_event.conversation_id == conv.id
        assert widget_event.raw["sender"]["name"]
        assert widget_event.raw["inbox_id"] == 1
        # the greeting is an ordinary bot message of the conversation, then the customer talks
        await s.say("thanks", conv=1)
        assert await s.wait_replies(2, conv=1) == [
            "Welcome! (webwidget_triggered)",
            "Echo: thanks",
        ]


async def test_event_with_the_agent_offline_is_stored_not_lost(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token="s3cret-token-0123456"
    ) as s:
        r = await s.event("conversation_created", conv=4)
        assert r["status_code"] == 200
        assert r["response"]["status"] == "stored"
        assert r["response"]["reason"] == "agent_offline"
        assert await s.bridge.store.find_conversation("chatwoot", "1:4") is not None


# ---------------------------------------------------------------------------------- raw agents


class RawDialIn:
    """A hand-driven dial-in agent: sends exactly the frames a test gives it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, type_: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of ``type_`` (answering pings on the way)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                self.received.append(frame)
                if frame.get("type") == "ping" and type_ != "ping":
                    await self.send({"type": "pong"})
                    continue
                if frame.get("type") == type_:
                    return frame

    async def flush(self) -> None:
        """Return once the bridge has handled every frame sent so far: it reads in order and
        awaits its callbacks, so its ``pong`` to our ``ping`` comes after them."""
        await self.send({"type": "ping"})
        await self.recv("pong")


@asynccontextmanager
async def raw_dial_in(
    url: str, agent_id: str, token: str, *, resume_from: int | None = None
) -> AsyncIterator[RawDialIn]:
    async with connect(url) as ws:
        raw = RawDialIn(ws)
        hello = {"type": "hello", "agent_id": agent_id, "token": token, "protocol": "chatbridge/1"}
        if resume_from is not None:
            hello["resume_from"] = resume_from
        await raw.send(hello)
        await raw.recv("hello_ok")
        yield raw


def reply_to(turn: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "type": "agent_message",
        "message_id": turn["message_id"],
        "conversation_id": turn["conversation_id"],
        "content": text,
    }


async def test_resume_resends_a_lost_turn_sent_after_a_higher_seq(sqlite_url: str) -> None:
    """``seq`` is the turn id, and turns do not go out in id order: a conversation's second
    turn waits for its first while later turns of other conversations are sent. So a
    ``resume_from`` above a turn's ``seq`` does not prove the agent got it; its ``ack`` does."""
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token="s3cret-token-0123456", timeout_seconds=20
    ) as s:
        async with raw_dial_in(s.ws_url, "agent1", "s3cret-token-0123456") as raw:
            await s.agent_connected()
            await s.say("first", conv=1)
            first = await raw.recv("user_message")
            await raw.send({"type": "ack", "seq": first["seq"]})
            await s.say("second", conv=1)  # waits behind "first"
            await s.say("other", conv=2)
            other = await raw.recv("user_message")
            assert other["content"] == "other"
            await raw.send({"type": "ack", "seq": other["seq"]})
            await raw.send(reply_to(other, "answer other"))
            await raw.send(reply_to(first, "answer first"))
            second = await raw.recv("user_message")
            assert second["content"] == "second" and second["seq"] < other["seq"]
            # the connection dies with "second" on the wire: never acked, never seen
        async with raw_dial_in(
            s.ws_url, "agent1", "s3cret-token-0123456", resume_from=other["seq"]
        ) as raw:
            again = await raw.recv("user_message")
            assert again["message_id"] == second["message_id"]
            await raw.send({"type": "ack", "seq": again["seq"]})
            await raw.send(reply_to(again, "answer second"))
            assert await s.wait_replies(2, conv=1) == ["answer first", "answer second"]
            await s.idle()
        assert s.replies(2) == ["answer other"]
        assert s.replies(1) == ["answer first", "answer second"]


async def test_resume_does_not_resend_turns_the_agent_acknowledged(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token="s3cret-token-0123456", timeout_seconds=20
    ) as s:
        async with raw_dial_in(s.ws_url, "agent1", "s3cret-token-0123456") as raw:
            await s.agent_connected()
            await s.say("held", conv=1)
            held = await raw.recv("user_message")
            await raw.send({"type": "ack", "seq": held["seq"]})
        async with raw_dial_in(
            s.ws_url, "agent1", "s3cret-token-0123456", resume_from=held["seq"]
        ) as raw:
            await s.say("fresh", conv=2)
            fresh = await raw.recv("user_message")
            assert fresh["content"] == "fresh"  # "held" was not sent again before it
            await raw.send(reply_to(held, "answer held"))
            await raw.send(reply_to(fresh, "answer fresh"))
            await s.wait_replies(2)
            await s.idle()
            assert [f["content"] for f in raw.received if f["type"] == "user_message"] == ["fresh"]
        assert sorted(s.replies()) == ["answer fresh", "answer held"]


async def test_proactive_message_and_typing_into_a_human_conversation_are_kept_quiet(
    sqlite_url: str,
) -> None:
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token="s3cret-token-0123456"
    ) as s:
        async with raw_dial_in(s.ws_url, "agent1", "s3cret-token-0123456") as raw:
            await s.agent_connected()
            # conversation 1: a human took it over; conversation 2: the bot owns it
            took = await s.say(
                "Hi, Sam here", message_type="outgoing", sender_type="user", sender={"id": 5}
            )
            assert took["response"]["reason"] == "owner:human"
            await s.event("conversation_created", conv=2)
            human = await s.bridge.store.find_conversation("chatwoot", "1:1")
            bot = await s.bridge.store.find_conversation("chatwoot", "1:2")
            assert human is not None and human.owner == "human"
            assert bot is not None and bot.owner == "bot"
            for conv in (human, bot):
                await raw.send({"type": "typing", "conversation_id": conv.id, "on": True})
                await raw.send(
                    {"type": "agent_message", "conversation_id": conv.id, "content": "Psst"}
                )
                await raw.send({"type": "typing", "conversation_id": conv.id, "on": False})
            await raw.flush()
            await s.wait_replies(1, conv=2)
            await s.idle()
        assert s.replies(1) == []
        assert s.actions(1) == []
        assert s.replies(2) == ["Psst"]
        assert s.actions(2) == ["typing_on", "message", "typing_off"]
        kept = [
            (m.direction, m.author, m.text) for m in await s.bridge.store.list_messages(human.id)
        ]
        assert ("note", "agent", "Psst") in kept


async def test_proactive_message_to_an_unknown_conversation_is_dropped(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token="s3cret-token-0123456"
    ) as s:
        async with raw_dial_in(s.ws_url, "agent1", "s3cret-token-0123456") as raw:
            await raw.send(
                {"type": "agent_message", "conversation_id": "c_nope", "content": "hello?"}
            )
            await raw.flush()
        await s.idle()
        assert s.replies() == []
        metrics = (await s.http.get("/metrics")).text
        assert 'chatbridge_agent_replies_dropped_total{agent_id="agent1"} 1.0' in metrics


async def test_an_agent_cannot_write_into_another_agents_conversation(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token="s3cret-token-0123456"
    ) as s:
        other_agent = AgentConfig(
            agent_id="agent2", transport="ws-dial-in", token="other-token-0123456"
        )
        await s.bridge.save_mapping(InboxMapping(inbox_id=2, agent_config=other_agent))
        await s.mock.trigger("conversation_created", TriggerRequest(conversation_id=7, inbox_id=2))
        theirs = await s.bridge.store.find_conversation("chatwoot", "1:7")
        assert theirs is not None and theirs.owner == "bot"
        async with raw_dial_in(s.ws_url, "agent1", "s3cret-token-0123456") as raw:
            await raw.send({"type": "typing", "conversation_id": theirs.id, "on": True})
            await raw.send(
                {"type": "agent_message", "conversation_id": theirs.id, "content": "Buy now!"}
            )
            await raw.send({"type": "handoff", "conversation_id": theirs.id, "reason": "mine"})
            await raw.flush()
        await s.idle()
        assert s.replies(7) == []
        assert s.actions(7) == []
        after = await s.bridge.store.get_conversation(theirs.id)
        assert after is not None and after.owner == "bot"
        assert [m.text for m in await s.bridge.store.list_messages(theirs.id)] == []


@asynccontextmanager
async def seed_agent() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """An agent speaking the original bridge's untyped format (a plain ``websockets`` server)."""
    seen: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        async for data in ws:
            frame = json.loads(data)
            if frame.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if frame.get("type") != "user_message":
                continue
            seen.append(frame)
            await ws.send(
                json.dumps(
                    {
                        "message_id": frame["message_id"],
                        "content": f"Seed says: {frame['content']}",
                        "conversation_id": frame["conversation_id"],
                        "inbox_id": frame["inbox_id"],
                        "response_type": "text",
                        "metadata": {"agent_id": "agent1"},
                    }
                )
            )

    async with serve(handler, "127.0.0.1", 0) as server:
        yield int(next(iter(server.sockets)).getsockname()[1]), seen


async def test_seed_format_reply_is_posted(sqlite_url: str) -> None:
    async with seed_agent() as (port, seen):
        async with running_stack(sqlite_url, agent_port=port) as s:
            await s.say("old school")
            assert await s.wait_replies(1) == ["Seed says: old school"]
            synced = await s.say("and in sync mode", conv=2, query={"mode": "sync"})
            assert synced["response"]["reply"] == {
                "outcome": "reply",
                "content": "Seed says: and in sync mode",
            }
            await s.idle()
            assert s.replies() == ["Seed says: old school", "Seed says: and in sync mode"]
            assert [f["content"] for f in seen] == ["old school", "and in sync mode"]


# ---------------------------------------------------------------------------------- breaker


async def test_circuit_breaker_opens_fails_fast_and_lets_a_trial_through(sqlite_url: str) -> None:
    agent = fast_agent()
    calls: list[str] = []
    healthy = False

    @agent.on_message
    async def answer(turn: Turn) -> str:
        calls.append(turn.content)
        if not healthy:
            raise TurnError("down", "always failing")
        return f"back: {turn.content}"

    async with running_stack(
        sqlite_url,
        agent=agent,
        transport="ws-dial-in",
        route_token="s3cret-token-0123456",
        dial_token="s3cret-token-0123456",
        mapping={"fallback_text": "Fallback"},
        breaker_failure_threshold=2,
        breaker_reset_seconds=1.5,
    ) as s:
        for n, conv in enumerate((1, 2), start=1):
            await s.say(f"fail {n}", conv=conv)
            await s.wait_replies(n)
        status = await s.agent_status()
        assert (status["breaker"], status["consecutive_failures"]) == ("open", 2)
        await s.say("while open", conv=3)
        assert await s.wait_replies(1, conv=3) == ["Fallback"]
        assert calls == ["fail 1", "fail 2"]  # never reached the agent
        assert (await s.agent_status())["breaker"] == "open"

        async def half_open() -> bool:
            return (await s.agent_status())["breaker"] == "half_open"

        await wait_until(half_open, timeout=5)
        healthy = True
        await s.say("trial", conv=4)
        assert await s.wait_replies(1, conv=4) == ["back: trial"]
        assert calls == ["fail 1", "fail 2", "trial"]
        status = await s.agent_status()
        assert (status["breaker"], status["consecutive_failures"]) == ("closed", 0)
        metrics = (await s.http.get("/metrics")).text
        assert 'chatbridge_agent_errors_total{agent_id="agent1",kind="circuit_open"} 1.0' in metrics


# ---------------------------------------------------------------------------------- status


async def test_agents_status_follows_connection_in_flight_turns_and_latency(
    sqlite_url: str,
) -> None:
    agent = fast_agent()
    release = asyncio.Event()

    @agent.on_message
    async def answer(turn: Turn) -> str:
        if turn.content == "slow":
            await release.wait()
        return f"ok {turn.content}"

    async with running_stack(
        sqlite_url,
        agent=agent,
        transport="ws-dial-in",
        route_token="s3cret-token-0123456",
        timeout_seconds=20,
    ) as s:
        before = await s.agent_status()
        assert before["connected"] is False
        assert before["inboxes"] == [{"channel": "chatwoot", "inbox_id": 1}]
        assert (before["in_flight_turns"], before["latency_ms_p50"]) == (0, None)

        async with dialing_in(agent, s.ws_url, "s3cret-token-0123456"):
            await s.agent_connected()
            assert (await s.agent_status())["connected"] is True

            await s.say("slow")

            async def one_in_flight() -> bool:
                return (await s.agent_status())["in_flight_turns"] == 1

            await wait_until(one_in_flight)
            release.set()
            await s.wait_replies(1)
            for n in range(3):
                await s.say(f"quick {n}", conv=2 + n)
            await s.wait_replies(4)
            await s.idle()
            during = await s.agent_status()
            assert during["in_flight_turns"] == 0
            assert during["turns_answered"] == 4
            assert during["latency_ms_p50"] is not None and during["latency_ms_p50"] > 0
            assert during["latency_ms_p95"] >= during["latency_ms_p50"]
            assert during["last_seen"] is not None

        async def gone() -> bool:
            return (await s.agent_status())["connected"] is False

        await wait_until(gone)


# ---------------------------------------------------------------------------------- scale-out


@asynccontextmanager
async def two_bridges_on_one_database(
    database_url: str, agent_port: int
) -> AsyncIterator[tuple[Any, list[str], list[Any]]]:
    """A mock Chatwoot and two bridge processes (in-process apps) sharing ``database_url``."""
    async with AsyncExitStack() as exits:
        mock_app = create_mock_chatwoot(api_token=TOKEN)
        chatwoot_url = await exits.enter_async_context(serve_app(mock_app))
        urls, bridges = [], []
        for name in ("bridge-a", "bridge-b"):
            config = Settings(
                database_url=database_url,
                chatwoot_base_url=chatwoot_url,
                chatwoot_api_access_token=TOKEN,
                inbox_agent_mappings=[
                    InboxMapping(
                        inbox_id=1,
                        agent_config=AgentConfig(
                            agent_id="agent1",
                            websocket_url=f"ws://127.0.0.1:{agent_port}",
                            timeout_seconds=10,
                        ),
                    )
                ],
                instance_id=name,
                **FAST,
            )
            app = create_app(config)
            urls.append(await exits.enter_async_context(serve_app(app)))
            bridges.append(app.state.bridge)
        for bridge in bridges:
            await wait_until(lambda b=bridge: b.hub.is_connected("agent1"))
        yield mock_app.state.mock, urls, bridges


async def test_two_bridges_on_one_postgres_answer_each_message_once_in_order(
    database_url_pg: str,
) -> None:
    agent = fast_agent()
    handled: list[str] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        handled.append(turn.content)
        await asyncio.sleep(0.005 * (len(handled) % 3))  # let the two bridges interleave
        return f"Echo: {turn.content}"

    async with agent.serving("127.0.0.1", 0) as port:
        async with two_bridges_on_one_database(database_url_pg, port) as (mock, urls, bridges):
            expected: dict[int, list[str]] = {c: [] for c in range(1, 7)}
            for n in range(30):
                conv = n % 6 + 1
                # each round of six goes to the other bridge, so every conversation's
                # messages alternate between the two processes
                mock.webhook_url = f"{urls[(n // 6) % 2]}/webhook/chatwoot"
                text = f"c{conv} m{n // 6}"
                sent = await mock.trigger(
                    "message_created",
                    TriggerRequest(conversation_id=conv, inbox_id=1, content=text),
                )
                assert sent["response"]["status"] == "accepted"
                expected[conv].append(f"Echo: {text}")

            def replies(conv: int | None = None) -> list[str]:
                return [
                    m["content"]
                    for m in mock.received_messages
                    if conv is None or m["conversation_id"] == conv
                ]

            await wait_until(lambda: len(replies()) >= 30, timeout=20)

            async def idle() -> bool:
                counts = await bridges[0].store.counts()
                return not any(
                    counts[k].get(state, 0)
                    for k in ("turns", "deliveries")
                    for state in ("pending", "leased")
                )

            await wait_until(idle)
            for conv, texts in expected.items():
                assert replies(conv) == texts
            assert len(replies()) == 30
            assert sorted(handled) == sorted(
                t.removeprefix("Echo: ") for v in expected.values() for t in v
            )
            ran = []
            for url in urls:
                async with httpx.AsyncClient(base_url=url) as http:
                    metrics = (await http.get("/metrics")).text
                ran.append(
                    sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in metrics.splitlines()
                        if line.startswith("chatbridge_turns_total{")
                    )
                )
            assert sum(ran) == 30
            assert all(r > 0 for r in ran), f"one bridge ran no turn: {ran}"
