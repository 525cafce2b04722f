"""The native web chat API and its live WebSocket, over real sockets (see docs/webchat.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from sqlalchemy import func, select, update

from chatbridge.agent import Agent, Turn
from chatbridge.store import tables as t
from chatbridge.testing.mock_agent import auto_behaviour, echo_text, split_chunks
from tests.e2e.drain import within
from tests.e2e.harness import Stack, running_stack, wait_until


def ws_url(s: Stack, session_id: str) -> str:
    return s.url.replace("http://", "ws://") + f"/api/ws/chat/{session_id}"


async def new_session(s: Stack, **body: Any) -> dict[str, Any]:
    r = await s.http.post("/api/webchat/sessions", json={"inbox_id": 1, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def counts(s: Stack) -> dict[str, int]:
    out = {}
    async with s.bridge.store.engine.connect() as conn:
        for table in (t.messages, t.turns, t.webchat_sessions, t.conversations):
            out[table.name] = (
                await conn.execute(select(func.count()).select_from(table))
            ).scalar_one()
    return out


async def idle_for(s: Stack, session_id: str, seconds: float) -> None:
    """Make the session look idle for ``seconds`` (instead of waiting that long)."""
    sessions = t.webchat_sessions
    async with s.bridge.store.engine.begin() as conn:
        await conn.execute(
            update(sessions)
            .where(sessions.c.id == session_id)
            .values(last_active=sessions.c.last_active - seconds)
        )


def held_poll(s: Stack, uid: str) -> bool:
    """Whether a history long-poll of session ``uid`` is waiting for news."""
    return uid in s.bridge.webchat_live._news


def typing_first_agent(stacks: list[Stack], release: asyncio.Event | None = None) -> Agent:
    """An agent that answers only once its turn's typing indicator is on for the visitor (and,
    given ``release``, once the test sets it), so the indicator shows however slow the machine
    is. It answers like the mock's ``auto`` behaviour (echo, stream)."""
    agent = Agent("agent1")

    async def stream(text: str) -> AsyncIterator[str]:
        for piece in split_chunks(text, 4):
            yield piece

    @agent.on_message
    async def answer(turn: Turn) -> str | AsyncIterator[str]:
        [s] = stacks
        conversation = await s.bridge.store.get_conversation(turn.conversation_id)
        assert conversation is not None
        uid = conversation.channel_key  # a web chat conversation's key is the visitor's uid
        await wait_until(lambda: s.bridge.webchat_live.typing(uid), timeout=20)
        if release is not None:
            await release.wait()
        if auto_behaviour(turn.content) == "stream":
            return stream(echo_text(turn.content))
        return echo_text(turn.content)

    return agent


class Live:
    """A widget-like WebSocket client that keeps every frame it got."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def texts(self, role: str) -> list[str]:
        return [f["message"]["text"] for f in self.of("message") if f["message"]["role"] == role]


@asynccontextmanager
async def live_socket(s: Stack, session_id: str, **kw: Any) -> AsyncIterator[Live]:
    async with websockets.connect(ws_url(s, session_id), **kw) as ws:
        client = Live(ws)
        await wait_until(lambda: client.of("session"))
        yield client


# --------------------------------------------------------------------------- sessions


async def test_a_session_is_created_resumed_and_replaced_after_it_expires(
    database_url: str,
) -> None:
    async with running_stack(database_url, webchat=True, webchat_session_timeout=60) as s:
        first = await new_session(s)
        assert first["created"] is True and first["session_id"].startswith("ws_")
        assert len(first["uid"]) == 16 and int(first["uid"], 16) >= 0
        again = await new_session(s, session_id=first["session_id"])
        assert (again["created"], again["uid"]) == (False, first["uid"])
        await idle_for(s, first["session_id"], 61)
        # idle past the timeout: same id, new visitor id, so a new conversation
        renewed = await new_session(s, session_id=first["session_id"])
        assert renewed["created"] is True and renewed["uid"] != first["uid"]


async def test_a_message_to_an_expired_session_starts_a_new_conversation(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True, delay=0, webchat_session_timeout=60) as s:
        sid = (await new_session(s, session_id="visitor-1"))["session_id"]
        one = (
            await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "a"})
        ).json()
        await idle_for(s, sid, 61)
        two = (
            await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "b"})
        ).json()
        assert one["uid"] != two["uid"] and one["conversation_id"] != two["conversation_id"]
        # the new session's history is the new conversation only
        r = await s.http.get(f"/api/webchat/sessions/{sid}/messages", params={"wait": 5})
        assert [m["text"] for m in r.json()["messages"]][:1] == ["b"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"inbox_id": 7}, 404, "unknown_inbox"),
        ({"inbox_id": 1, "session_id": "has space"}, 422, "invalid_request"),
        ({"inbox_id": 1, "session_id": "x" * 65}, 422, "invalid_request"),
        ({"inbox_id": -1}, 422, "invalid_request"),
        ({"inbox_id": 1, "metadata": {"k": "\x00"}}, 422, "invalid_request"),
        ({"inbox_id": 1, "metadata": {f"k{i}": i for i in range(30)}}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
    ],
)
async def test_bad_session_requests_are_refused_and_write_nothing(
    sqlite_url: str, body: dict[str, Any], status: int, code: str
) -> None:
    async with running_stack(sqlite_url, webchat=True) as s:
        before = await counts(s)
        r = await s.http.post("/api/webchat/sessions", json=body)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        assert await counts(s) == before


# --------------------------------------------------------------------------- messages


async def test_a_repeated_client_message_id_is_stored_once(database_url: str) -> None:
    async with running_stack(database_url, webchat=True, delay=0) as s:
        sid = (await new_session(s))["session_id"]
        path = f"/api/webchat/sessions/{sid}/messages"
        first = await s.http.post(path, json={"text": "hello", "client_message_id": "k1"})
        again = await s.http.post(path, json={"text": "hello", "client_message_id": "k1"})
        assert (first.status_code, again.status_code) == (202, 202)
        assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
        assert again.json()["message_id"] == first.json()["message_id"]
        await wait_until(lambda: len(s.bridge.channels) and True)
        history = await wait_until(
            lambda: _history_with_reply(s, sid),
        )
        assert [m["role"] for m in history] == ["user", "agent"]
        assert history[0]["client_message_id"] == "k1"
        assert history[1]["text"] == "Echo: hello" and history[1]["turn_id"].startswith("t_")
        assert (await counts(s))["turns"] == 1


async def _history_with_reply(s: Stack, sid: str) -> list[dict[str, Any]] | None:
    r = await s.http.get(f"/api/webchat/sessions/{sid}/messages")
    messages = r.json()["messages"]
    return messages if any(m["role"] == "agent" for m in messages) else None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"text": "   "}, 400, "empty_message"),
        ({"text": ""}, 422, "invalid_request"),
        ({"text": "x" * 10_001}, 413, "message_too_long"),
        ({"text": "hi", "client_message_id": "no spaces"}, 422, "invalid_request"),
        ('{"text": "\\ud800"}', 422, "invalid_request"),
        ({"text": 5}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
    ],
)
async def test_bad_messages_are_refused_and_write_nothing(
    database_url: str, body: dict[str, Any] | str, status: int, code: str
) -> None:
    async with running_stack(database_url, webchat=True) as s:
        sid = (await new_session(s))["session_id"]
        before = await counts(s)
        path = f"/api/webchat/sessions/{sid}/messages"
        if isinstance(body, str):  # raw JSON: a lone surrogate escape httpx would not encode
            r = await s.http.post(path, content=body, headers={"content-type": "application/json"})
        else:
            r = await s.http.post(path, json=body)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        assert await counts(s) == before


async def test_a_message_to_an_unknown_session_needs_an_inbox(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True, delay=0) as s:
        r = await s.http.post("/api/webchat/sessions/nobody/messages", json={"text": "hi"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_session"
        r = await s.http.post(
            "/api/webchat/sessions/nobody/messages", json={"text": "hi", "inbox_id": 1}
        )
        assert r.status_code == 202 and r.json()["session_id"] == "nobody"


async def test_text_is_stored_and_returned_exactly_as_sent(sqlite_url: str) -> None:
    text = "<img src=x onerror=alert(1)> & 'quotes' \"too\" — ünïcode 🙂"
    async with running_stack(sqlite_url, webchat=True, delay=0) as s:
        sid = (await new_session(s))["session_id"]
        await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text})
        history = await wait_until(lambda: _history_with_reply(s, sid))
        assert history[0]["text"] == text and history[1]["text"] == f"Echo: {text}"


# --------------------------------------------------------------------------- long-poll


async def test_history_long_poll_returns_when_the_reply_arrives(sqlite_url: str) -> None:
    stacks: list[Stack] = []
    release = asyncio.Event()
    agent = typing_first_agent(stacks, release)
    async with running_stack(sqlite_url, webchat=True, agent=agent, timeout_seconds=60) as s:
        stacks.append(s)
        session = await new_session(s)
        sid, uid = session["session_id"], session["uid"]
        posted = await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": "q"})
        cursor = posted.json()["message_id"]
        await wait_until(lambda: s.bridge.webchat_live.typing(uid))  # the agent is thinking
        poll = asyncio.create_task(
            s.http.get(
                f"/api/webchat/sessions/{sid}/messages", params={"after": cursor, "wait": 30}
            )
        )
        await wait_until(lambda: held_poll(s, uid))  # held: nothing new yet
        release.set()
        # the poll may wait 30 s: its answer within 15 s came with the reply
        r = await within(15, poll)
        assert [m["text"] for m in r.json()["messages"]] == ["Echo: q"]
        assert r.json()["cursor"] == r.json()["messages"][-1]["id"]
        # nothing new: an empty answer after the wait, cursor unchanged
        r = await s.http.get(
            f"/api/webchat/sessions/{sid}/messages",
            params={"after": r.json()["cursor"], "wait": 0.2},
        )
        assert r.json()["messages"] == [] and r.json()["cursor"] == r.json()["cursor"]


async def test_history_of_an_unknown_session_is_a_404(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True) as s:
        r = await s.http.get("/api/webchat/sessions/nobody/messages")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_session"
        r = await s.http.get("/api/webchat/sessions/nobody/messages", params={"wait": 99})
        assert r.status_code == 422


# --------------------------------------------------------------------------- live socket


async def test_live_socket_acks_echoes_and_delivers_the_reply(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True, delay=0) as s:
        sid = (await new_session(s))["session_id"]
        async with live_socket(s, sid) as c:
            await c.send({"type": "user_message", "client_message_id": "c1", "content": "hi"})
            await wait_until(lambda: c.texts("agent"))
            [ack] = c.of("ack")
            assert ack["status"] == "accepted" and ack["client_message_id"] == "c1"
            assert c.texts("user") == ["hi"] and c.texts("agent") == ["Echo: hi"]
            # the same message again (a retry after a lost ack): acknowledged, stored once
            await c.send({"type": "user_message", "client_message_id": "c1", "content": "hi"})
            await wait_until(lambda: len(c.of("ack")) == 2)
            assert c.of("ack")[1]["status"] == "duplicate"
            assert c.of("ack")[1]["message_id"] == ack["message_id"]
            # resume: what came after a cursor
            await c.send({"type": "resume", "after": ack["message_id"]})
            [history] = await wait_until(lambda: c.of("history"))
            assert [m["text"] for m in history["messages"]] == ["Echo: hi"]
            # bad frames get an error frame and the socket stays open
            await c.ws.send("{not json")
            await c.send({"type": "nonsense"})
            await c.send({"type": "user_message", "content": "x" * 10_001})
            await wait_until(lambda: len(c.of("error")) == 3)
            assert [e["code"] for e in c.of("error")] == [
                "invalid_json",
                "unknown_type",
                "message_too_long",
            ]
            await c.send({"type": "ping"})
            await wait_until(lambda: c.of("pong"))
        assert (await counts(s))["messages"] == 2


async def test_live_socket_shows_typing_and_streamed_chunks(sqlite_url: str) -> None:
    stacks: list[Stack] = []
    agent = typing_first_agent(stacks)
    async with running_stack(sqlite_url, webchat=True, agent=agent, timeout_seconds=30) as s:
        stacks.append(s)
        sid = (await new_session(s))["session_id"]
        async with live_socket(s, sid) as c:
            await c.send({"type": "user_message", "content": "slow one"})
            # typing on/off and the reply are separate deliveries: "off" may land just after the
            # reply (the widget hides the indicator on a reply either way)
            await wait_until(lambda: c.texts("agent") and len(c.of("typing")) >= 2)
            typing = [f["on"] for f in c.of("typing")]
            assert typing == [True, False]
            await c.send({"type": "user_message", "content": "stream this please"})
            await wait_until(lambda: len(c.texts("agent")) == 2)
            chunks = c.of("agent_streaming")
            assert "".join(f["content"] for f in chunks) == "Echo: stream this please"
            assert [f["stream_index"] for f in chunks] == list(range(len(chunks)))
            final = c.of("message")[-1]["message"]
            assert final["turn_id"] == chunks[0]["turn_id"]
            # the chunks came before the final message
            assert c.frames.index(chunks[-1]) < c.frames.index(c.of("message")[-1])


async def test_live_socket_announces_a_handoff(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True, behaviour="handoff", delay=0) as s:
        sid = (await new_session(s))["session_id"]
        async with live_socket(s, sid) as c:
            await c.send({"type": "user_message", "content": "let me talk to a human"})
            await wait_until(lambda: c.of("system"))
            assert "person" in c.of("system")[0]["text"]
            # a human owns the conversation now: the bot stays quiet
            await c.send({"type": "user_message", "content": "hello?"})
            await wait_until(lambda: len(c.texts("user")) == 2)
            await s.idle()
            assert len(c.texts("agent")) == 1


async def test_every_socket_of_a_session_sees_the_conversation(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True, delay=0) as s:
        sid = (await new_session(s))["session_id"]
        async with live_socket(s, sid) as tab1, live_socket(s, sid) as tab2:
            await tab1.send({"type": "user_message", "content": "from tab one"})
            for tab in (tab1, tab2):
                await wait_until(lambda tab=tab: tab.texts("agent"))
                assert tab.texts("user") == ["from tab one"]


async def test_live_socket_refuses_unknown_expired_and_foreign_origin(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, webchat=True, webchat_session_timeout=60, webchat_cors_origins=[]
    ) as s:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with websockets.connect(ws_url(s, "nobody")) as ws:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
        sid = (await new_session(s))["session_id"]
        with pytest.raises(websockets.InvalidStatus):
            # a page on another site may not open the socket when the allowlist is empty
            await websockets.connect(ws_url(s, sid), origin="http://evil.example")  # type: ignore[arg-type]
        await idle_for(s, sid, 61)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with websockets.connect(ws_url(s, sid)) as ws:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410


async def test_server_side_drop_closes_every_live_socket(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True) as s:
        sid = (await new_session(s))["session_id"]
        async with live_socket(s, sid) as c:
            assert await s.bridge.webchat_live.close_all() == 1
            await wait_until(lambda: c._task.done())
            assert c.ws.close_code == 1012


# --------------------------------------------------------------------------- CORS


async def test_cors_follows_the_allowlist(sqlite_url: str) -> None:
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    async with running_stack(
        sqlite_url, webchat=True, webchat_cors_origins=["https://shop.example"]
    ) as s:
        r = await s.http.options("/api/webchat/sessions", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        r = await s.http.options(
            "/api/webchat/sessions", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in r.headers
        # the management API is not for other sites' pages
        r = await s.http.get("/health", headers={"Origin": "https://shop.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_a_held_long_poll_reports_typing_and_ends_when_the_bridge_stops(
    sqlite_url: str,
) -> None:
    stacks: list[Stack] = []
    release = asyncio.Event()
    agent = typing_first_agent(stacks, release)
    async with running_stack(sqlite_url, webchat=True, agent=agent, timeout_seconds=60) as s:
        stacks.append(s)
        session = await new_session(s)
        sid, uid = session["session_id"], session["uid"]
        path = f"/api/webchat/sessions/{sid}/messages"
        cursor = (await s.http.post(path, json={"text": "q"})).json()["message_id"]
        # the agent is thinking: a poll comes back with the indicator on
        await wait_until(lambda: s.bridge.webchat_live.typing(uid))
        r = await s.http.get(path, params={"after": cursor})
        assert r.json() == {"messages": [], "cursor": cursor, "typing": True}
        release.set()
        r = await s.http.get(path, params={"after": cursor, "wait": 10})
        if r.json()["messages"] == []:  # woken by the indicator going off first: again
            r = await s.http.get(path, params={"after": cursor, "wait": 10})
        assert [m["text"] for m in r.json()["messages"]] == ["Echo: q"]
        await wait_until(lambda: not s.bridge.webchat_live.typing(uid))
        held = asyncio.create_task(
            s.http.get(path, params={"after": r.json()["cursor"], "wait": 30})
        )
        await wait_until(lambda: held_poll(s, uid))
        await s.bridge.webchat_live.stop()
        # the poll may wait 30 s: its answer within 15 s came with the stop
        r = await within(15, held)
        assert r.status_code == 200 and r.json()["messages"] == []
