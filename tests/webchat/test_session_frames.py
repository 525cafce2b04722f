"""Session lifecycle frames over real sockets, on SQLite and PostgreSQL: a web chat inbox whose
route has two dial-in agents, one announcing the ``sessions`` feature and one not. Creation,
new metadata and expiry reach the open widget and the announcing agent — expiry found by the
bridge's own sweep while the widget is open, once — and never the other agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from sqlalchemy import update

from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, RouteAgentConfig, Settings
from chatbridge.pipeline import webchat_sessions
from chatbridge.pipeline.bridge import Bridge
from chatbridge.pipeline.webchat_sessions import expire_idle_sessions
from chatbridge.store import tables as t
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import FAST, agent_ws_url, wait_until

TOKENS = {"watcher": "watcher-token-0123456789", "plain": "plain-token-0123456789ab"}
TIMEOUT = 600.0
FAST_SETTINGS: dict[str, Any] = dict(FAST)
SESSION_FRAMES = ("session_created", "session_updated", "session_expired")


class RawAgent:
    """A dial-in agent on a bare WebSocket: says ``hello`` with the given features, keeps
    every frame the bridge sends, answers pings and each turn (``agent_message``)."""

    def __init__(self, ws: websockets.ClientConnection, hello_ok: dict[str, Any]) -> None:
        self.ws = ws
        self.hello_ok = hello_ok
        self.frames: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif frame["type"] == "user_message":
                    reply = {
                        "type": "agent_message",
                        "message_id": frame["message_id"],
                        "conversation_id": frame["conversation_id"],
                        "content": "ok",
                    }
                    await self.ws.send(json.dumps(reply))
        except websockets.ConnectionClosed:
            pass

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


@asynccontextmanager
async def raw_agent(url: str, agent_id: str, features: list[str]) -> AsyncIterator[RawAgent]:
    async with websockets.connect(url) as ws:
        hello = {
            "type": "hello",
            "agent_id": agent_id,
            "token": TOKENS[agent_id],
            "protocol": "chatbridge/1",
            "version": "1.3",
            "features": features,
        }
        await ws.send(json.dumps(hello))
        ok = json.loads(await ws.recv())
        assert ok["type"] == "hello_ok", ok
        agent = RawAgent(ws, ok)
        yield agent
        agent._task.cancel()


class Widget:
    """The widget's live socket: keeps every frame."""

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

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


@dataclass
class Rig:
    bridge: Bridge
    url: str
    http: httpx.AsyncClient
    watcher: RawAgent
    plain: RawAgent
    exits: AsyncExitStack

    async def widget(self, session_id: str) -> Widget:
        url = self.url.replace("http://", "ws://") + f"/api/ws/chat/{session_id}"
        ws = await self.exits.enter_async_context(websockets.connect(url))
        widget = Widget(ws)
        await wait_until(lambda: widget.of("session"))
        return widget

    async def idle(self, session_id: str, seconds: float) -> None:
        ws = t.webchat_sessions
        # through the store's own transaction: on SQLite it runs inline on the loop, and a
        # write on another connection would hold the lock the bridge's next one waits for
        async with self.bridge.store._tx() as conn:
            await conn.execute(
                update(ws)
                .where(ws.c.id == session_id)
                .values(last_active=ws.c.last_active - seconds)
            )


@asynccontextmanager
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    """Web chat inbox 1 → the route of ``watcher`` (default, announces ``sessions``) and
    ``plain`` (announces nothing), both dialled in when the block starts."""
    async with AsyncExitStack() as exits:
        config = Settings(
            database_url=database_url,
            inbox_agent_mappings=[
                InboxMapping(
                    channel="webchat",
                    inbox_id=1,
                    agent_config=AgentConfig(agent_id="watcher", transport="ws-dial-in"),
                    agents=[
                        RouteAgentConfig(agent_id="watcher", role="guide"),
                        RouteAgentConfig(agent_id="plain", role="other"),
                    ],
                )
            ],
            agent_tokens=TOKENS,
            webchat_session_timeout=TIMEOUT,
            media_dir=str(tmp_path / "media"),
            instance_id="sessions",
            **FAST_SETTINGS,
        )
        app = create_app(config)
        url = await exits.enter_async_context(serve_app(app))
        bridge: Bridge = app.state.bridge
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        watcher = await exits.enter_async_context(
            raw_agent(agent_ws_url(url), "watcher", ["sessions", "status"])
        )
        plain = await exits.enter_async_context(raw_agent(agent_ws_url(url), "plain", []))
        await wait_until(lambda: bridge.hub.is_connected("watcher"))
        await wait_until(lambda: bridge.hub.is_connected("plain"))
        yield Rig(bridge, url, http, watcher, plain, exits)


async def test_session_frames_reach_the_widget_and_only_the_agent_that_asked(
    database_url: str, tmp_path: Path
) -> None:
    async with rig(database_url, tmp_path) as r:
        assert "sessions" in r.watcher.hello_ok["features"]
        assert "sessions" not in r.plain.hello_ok["features"]

        opened = await r.http.post(
            "/api/webchat/sessions", json={"inbox_id": 1, "metadata": {"page": "/pricing"}}
        )
        sid, uid = opened.json()["session_id"], opened.json()["uid"]
        [created] = await wait_until(lambda: r.watcher.of("session_created"))
        assert (created["session_id"], created["channel"]) == (sid, "webchat")
        assert "conversation_id" not in created  # no conversation before the first message
        assert created["data"]["uid"] == uid and created["data"]["metadata"] == {"page": "/pricing"}

        widget = await r.widget(sid)
        r1 = await r.http.post(
            f"/api/webchat/sessions/{sid}/messages",
            json={"text": "hello", "client_message_id": "a"},
        )
        conversation_id = r1.json()["conversation_id"]
        await wait_until(lambda: r.watcher.of("user_message"))

        # the page tells the bridge who the visitor is: session_updated, on both ends
        await r.http.post(
            "/api/webchat/sessions",
            json={"inbox_id": 1, "session_id": sid, "metadata": {"name": "Ann"}},
        )
        [updated] = await wait_until(lambda: widget.of("session_updated"))
        assert (updated["session_id"], updated["uid"]) == (sid, uid)
        assert updated["data"]["metadata"] == {"name": "Ann"}
        [to_agent] = await wait_until(lambda: r.watcher.of("session_updated"))
        assert to_agent["data"]["metadata"] == {"name": "Ann"} and "uid" not in to_agent

        # idle past the timeout with the widget open: the bridge's sweep finds it
        await r.idle(sid, TIMEOUT + 1)
        [expired] = await wait_until(lambda: widget.of("session_expired"))
        assert (expired["session_id"], expired["reason"]) == (sid, "idle")
        assert expired["conversation_id"] == conversation_id
        [agent_expired] = await wait_until(lambda: r.watcher.of("session_expired"))
        assert (agent_expired["session_id"], agent_expired["reason"]) == (sid, "idle")
        assert agent_expired["conversation_id"] == conversation_id
        assert await expire_idle_sessions(r.bridge) == 0  # announced once, not again

        # the visitor writes again on the same socket: a new session, announced to it
        await widget.ws.send(
            json.dumps({"type": "user_message", "content": "back", "client_message_id": "b"})
        )
        fresh = await wait_until(
            lambda: [f for f in widget.of("session_created") if f["uid"] != uid]
        )
        assert fresh[0]["session_id"] == sid
        await wait_until(lambda: len(r.watcher.of("session_created")) == 2)

        # the agent that did not announce the feature was sent none of it (each withheld and
        # counted), though it is connected and on the route
        def withheld() -> dict[str, float | None]:
            return {
                kind: r.bridge.metrics.registry.get_sample_value(
                    "chatbridge_agent_frames_withheld_total", {"agent_id": "plain", "type": kind}
                )
                for kind in SESSION_FRAMES
            }

        expected = {"session_created": 2, "session_updated": 1, "session_expired": 1}
        await wait_until(lambda: withheld() == expected)
        assert not [f for f in r.plain.frames if f["type"] in SESSION_FRAMES]
        assert r.bridge.hub.is_connected("plain")
        assert not [
            f for f in r.watcher.frames if f["type"] in SESSION_FRAMES and f.get("uid")
        ]  # the widget's uid is the widget's copy only


async def test_an_idle_session_reopened_before_or_after_the_sweep_is_announced_expired_once(
    database_url: str, tmp_path: Path
) -> None:
    async with rig(database_url, tmp_path) as r:
        opened = (await r.http.post("/api/webchat/sessions", json={"inbox_id": 1})).json()
        sid, old_uid = opened["session_id"], opened["uid"]
        await r.idle(sid, TIMEOUT + 1)
        # the page comes back at once: the sweep may or may not have seen the session first
        again = (
            await r.http.post("/api/webchat/sessions", json={"inbox_id": 1, "session_id": sid})
        ).json()
        assert again["created"] is True and again["uid"] != old_uid

        def expired_old() -> list[dict[str, Any]]:
            return [f for f in r.watcher.of("session_expired") if f["data"]["uid"] == old_uid]

        await wait_until(expired_old)
        await wait_until(
            lambda: [f for f in r.watcher.of("session_created") if f["data"]["uid"] == again["uid"]]
        )
        await webchat_sessions.drain()
        # a frame sent after every announcement so far: a second expiry would come before it
        barrier = (await r.http.post("/api/webchat/sessions", json={"inbox_id": 1})).json()
        await wait_until(
            lambda: [
                f
                for f in r.watcher.of("session_created")
                if f["session_id"] == barrier["session_id"]
            ]
        )
        [expired] = expired_old()
        assert (expired["session_id"], expired["reason"]) == (sid, "idle")
