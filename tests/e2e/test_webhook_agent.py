"""The http-webhook agent transport end to end: the bridge POSTs turns to an agent's URL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from chatbridge.config import AgentConfig
from chatbridge.signing import SIGNATURE_HEADER, sign, verify
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import running_stack, wait_until

SECRET = "hook-secret"
AGENT_TOKEN = "hook-agent-token"


@dataclass
class HookAgent:
    """A webhook agent whose answers the test scripts; it checks every signature."""

    # per turn request: a Response, a function of the frame giving one, "later", or None (echo)
    plan: list[Any] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    later: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            raw = await request.body()
            if not verify(SECRET, raw, request.headers.get(SIGNATURE_HEADER)):
                self.bad_signatures += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
            frame = json.loads(raw)
            self.received.append(frame)
            if frame.get("type") != "user_message":
                return Response(status_code=204)
            planned = self.plan.pop(0) if self.plan else None
            if planned == "later":
                self.later.append(frame)
                return Response(status_code=202)
            if isinstance(planned, Response):
                return planned
            if callable(planned):
                return planned(frame)  # type: ignore[no-any-return]
            return JSONResponse(
                {
                    "type": "agent_message",
                    "message_id": frame["message_id"],
                    "content": f"hook: {frame['content']}",
                }
            )

        return app


@asynccontextmanager
async def hook_stack(database_url: str, agent: HookAgent, **kw: Any) -> AsyncIterator[Any]:
    async with serve_app(agent.app()) as hook_url:
        config = AgentConfig(
            agent_id="agent1",
            transport="http-webhook",
            webhook_url=f"{hook_url}/hook",
            secret=SECRET,
            token=AGENT_TOKEN,
            timeout_seconds=kw.pop("timeout_seconds", 5.0),
        )
        async with running_stack(database_url, agent_config=config, **kw) as stack:
            yield stack


async def _reply_later(stack: Any, frame: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
    """Answer through the ``reply_url`` the turn came with (on the bridge's real port)."""
    parts = urlsplit(frame["reply_url"])
    return await stack.http.post(
        f"{parts.path}?{parts.query}",
        json=body,
        headers={"Authorization": f"Bearer {AGENT_TOKEN}", "X-Agent-Id": "agent1"},
    )


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    import hashlib
    import hmac

    body = b'{"type":"user_message"}'
    expected = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign("k", body) == expected
    assert verify("k", body, expected)
    assert not verify("k", body + b" ", expected)
    assert not verify("other", body, expected)
    assert not verify("k", body, None)


async def test_turns_are_posted_signed_and_answered_in_the_response(database_url: str) -> None:
    agent = HookAgent()
    async with hook_stack(database_url, agent) as stack:
        await stack.say("hello", conv=1)
        await stack.say("again", conv=1)
        assert await stack.wait_replies(2, conv=1) == ["hook: hello", "hook: again"]
        await stack.idle()
        frames = [f for f in agent.received if f["type"] == "user_message"]
        assert [f["content"] for f in frames] == ["hello", "again"]
        first = frames[0]
        assert first["protocol"] == "chatbridge/1" and first["message_id"].startswith("t_")
        assert first["lease_id"] and first["reply_url"].endswith(
            f"/api/agent/turns/{first['message_id']}/reply?lease={first['lease_id']}"
        )
        assert agent.bad_signatures == 0
        status = await stack.agent_status()
        assert status["transport"] == "http-webhook" and status["connected"] is True


async def test_an_agent_may_accept_and_answer_later_with_chunks(sqlite_url: str) -> None:
    agent = HookAgent(plan=["later"])
    async with hook_stack(sqlite_url, agent) as stack:
        await stack.say("think about it", conv=3)
        await wait_until(lambda: agent.later, 5)
        frame = agent.later[0]
        turn = frame["message_id"]
        for i, piece in enumerate(["Done ", "thinking."]):
            r = await _reply_later(
                stack,
                frame,
                {
                    "type": "agent_streaming",
                    "message_id": turn,
                    "stream_index": i,
                    "content": piece,
                },
            )
            assert r.status_code == 200 and r.json() == {"status": "chunk"}
        r = await _reply_later(stack, frame, {"type": "agent_complete", "message_id": turn})
        assert r.status_code == 200 and r.json() == {"status": "answered"}
        assert await stack.wait_replies(1, conv=3) == ["Done thinking."]
        # the turn is over: a second answer is refused and sends nothing
        r = await _reply_later(stack, frame, {"type": "agent_message", "content": "twice"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_turn"
        await stack.idle()
        assert stack.replies(3) == ["Done thinking."]


async def test_a_reply_with_a_wrong_lease_or_token_is_refused(sqlite_url: str) -> None:
    agent = HookAgent(plan=["later"])
    async with hook_stack(sqlite_url, agent) as stack:
        await stack.say("wait", conv=4)
        await wait_until(lambda: agent.later, 5)
        frame = agent.later[0]
        turn = frame["message_id"]
        r = await stack.http.post(
            f"/api/agent/turns/{turn}/reply?lease=not-the-lease",
            json={"type": "agent_message", "content": "x"},
            headers={"Authorization": f"Bearer {AGENT_TOKEN}", "X-Agent-Id": "agent1"},
        )
        assert r.status_code == 409 and r.json()["error"]["code"] == "lease_expired"
        parts = urlsplit(frame["reply_url"])
        r = await stack.http.post(
            f"{parts.path}?{parts.query}",
            json={"type": "agent_message", "content": "x"},
            headers={"Authorization": "Bearer wrong", "X-Agent-Id": "agent1"},
        )
        assert r.status_code == 401
        r = await _reply_later(stack, frame, {"type": "agent_message", "content": "right"})
        assert r.status_code == 200
        assert await stack.wait_replies(1, conv=4) == ["right"]


async def test_failures_are_retried_with_the_same_turn_and_answered_once(sqlite_url: str) -> None:
    agent = HookAgent(
        plan=[
            Response(status_code=503, headers={"Retry-After": "0"}),
            Response(status_code=500),
            None,
        ]
    )
    async with hook_stack(sqlite_url, agent) as stack:
        await stack.say("flaky", conv=5)
        assert await stack.wait_replies(1, conv=5) == ["hook: flaky"]
        await stack.idle()
        ids = [f["message_id"] for f in agent.received if f["type"] == "user_message"]
        assert len(ids) == 3 and len(set(ids)) == 1
        assert stack.replies(5) == ["hook: flaky"]


@pytest.mark.parametrize(
    "answer",
    [
        Response(status_code=400),
        Response(b"not json", status_code=200, media_type="text/plain"),
        JSONResponse({"type": "bogus"}),
    ],
    ids=["http-400", "not-json", "not-a-frame"],
)
async def test_a_refusal_or_a_bad_body_gets_the_fallback(sqlite_url: str, answer: Any) -> None:
    agent = HookAgent(plan=[answer])
    async with hook_stack(sqlite_url, agent, mapping={"fallback_text": "A human will reply."}) as s:
        await s.say("hi", conv=6)
        assert await s.wait_replies(1, conv=6) == ["A human will reply."]
        await s.idle()
        assert len([f for f in agent.received if f["type"] == "user_message"]) == 1


async def test_a_list_of_frames_in_the_response_streams_then_completes(sqlite_url: str) -> None:
    def streamed(frame: dict[str, Any]) -> Response:
        turn = frame["message_id"]
        pieces = [
            {"type": "agent_streaming", "message_id": turn, "stream_index": i, "content": c}
            for i, c in enumerate(["Hel", "lo"])
        ]
        typing = {"type": "typing", "conversation_id": frame["conversation_id"], "on": True}
        done = {"type": "agent_complete", "message_id": turn}
        return JSONResponse([typing, *pieces, done])

    agent = HookAgent(plan=[streamed])
    chunks: list[tuple[int, str]] = []
    async with hook_stack(sqlite_url, agent) as stack:
        original = stack.bridge.hub.pull._on_chunk

        async def spy(turn: str, conv: str, index: int, text: str) -> None:
            chunks.append((index, text))
            if original is not None:
                await original(turn, conv, index, text)

        stack.bridge.hub.pull._on_chunk = spy
        await stack.say("stream please", conv=7)
        assert await stack.wait_replies(1, conv=7) == ["Hello"]
        assert chunks == [(0, "Hel"), (1, "lo")]


async def test_the_agent_down_until_the_deadline_gets_the_fallback(sqlite_url: str) -> None:
    config = AgentConfig(
        agent_id="agent1",
        transport="http-webhook",
        webhook_url="http://127.0.0.1:9/hook",  # nothing listens on the discard port
        secret=SECRET,
        timeout_seconds=1.0,
    )
    async with running_stack(
        sqlite_url, agent_config=config, mapping={"fallback_text": "Later, sorry."}
    ) as stack:
        await stack.say("anyone?", conv=8)
        assert await stack.wait_replies(1, conv=8, timeout=15) == ["Later, sorry."]
        status = await stack.agent_status()
        assert status["connected"] is False


async def test_conversation_events_are_posted_too(sqlite_url: str) -> None:
    agent = HookAgent()
    async with hook_stack(sqlite_url, agent) as stack:
        sent = await stack.event("webwidget_triggered", conv=9)
        assert sent["response"]["status"] == "forwarded", sent
        conv = await stack.bridge.store.find_conversation("chatwoot", "1:9")
        assert conv is not None and sent["response"]["conversation_id"] == conv.id
        [payload] = [h["payload"] for h in stack.mock.webhook_history]
        contact = payload["contact"]
        # the event went out while the webhook was handled ("forwarded"): it is there now
        assert agent.received == [
            {
                "type": "conversation_event",
                "event": "webwidget_triggered",
                "conversation_id": conv.id,
                "inbox_id": 1,
                "channel": "chatwoot",
                "sender": {
                    "id": str(contact["id"]),
                    "name": contact["name"],
                    "email": contact.get("email"),
                },
                "data": payload["event_info"],
            }
        ]
        assert payload["event_info"]  # the widget's details are passed on, not dropped
        assert agent.bad_signatures == 0


async def test_mappings_show_the_webhook_but_never_its_secret(sqlite_url: str) -> None:
    agent = HookAgent()
    async with hook_stack(sqlite_url, agent) as stack:
        r = await stack.http.get("/config/mappings")
        config = r.json()["mappings"][0]["agent_config"]
        assert config["transport"] == "http-webhook"
        assert config["webhook_url"].endswith("/hook")
        assert config["secret_set"] is True and config["token_set"] is True
        assert SECRET not in r.text and AGENT_TOKEN not in r.text
        # saving the route again without the secret keeps it: turns are still signed
        body = r.json()["mappings"][0]
        put = {
            "inbox_id": 1,
            "agent_config": {
                "agent_id": "agent1",
                "transport": "http-webhook",
                "webhook_url": config["webhook_url"],
                "timeout_seconds": 5,
            },
            "reply_mode": body["reply_mode"],
        }
        r = await stack.http.put("/config/mappings/1", json=put)
        assert r.status_code == 200, r.text
        await stack.say("still signed?", conv=10)
        assert await stack.wait_replies(1, conv=10) == ["hook: still signed?"]
        assert agent.bad_signatures == 0


@pytest.mark.parametrize(
    ("agent_config", "problem"),
    [
        ({"agent_id": "a", "transport": "http-webhook"}, "webhook_url"),
        ({"agent_id": "a", "transport": "http-webhook", "webhook_url": "ftp://x/hook"}, "http"),
        ({"agent_id": "a", "webhook_url": "http://"}, "host"),
    ],
)
async def test_a_bad_webhook_config_is_refused_and_stores_nothing(
    sqlite_url: str, agent_config: dict[str, Any], problem: str
) -> None:
    async with running_stack(sqlite_url) as stack:
        before = (await stack.http.get("/config/mappings")).json()
        r = await stack.http.post(
            "/config/mappings", json={"inbox_id": 77, "agent_config": agent_config}
        )
        assert r.status_code == 422, r.text
        assert problem in r.text
        assert (await stack.http.get("/config/mappings")).json() == before
        assert await stack.bridge.store.get_agent("a") is None
