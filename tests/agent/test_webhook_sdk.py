"""The SDK agent as an http-webhook endpoint, alone and behind a real bridge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from chatbridge.agent import Agent
from chatbridge.agent.turn import Handoff, Turn, TurnError
from chatbridge.config import AgentConfig
from chatbridge.signing import SIGNATURE_HEADER, sign
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import running_stack

SECRET = "sdk-secret"


def _turn(message_id: str, content: str) -> dict[str, Any]:
    return {
        "type": "user_message",
        "protocol": "chatbridge/1",
        "message_id": message_id,
        "conversation_id": "c_1",
        "content": content,
        "messages": [],
    }


async def _post(http: httpx.AsyncClient, frame: dict[str, Any], secret: str = SECRET) -> Any:
    body = json.dumps(frame).encode()
    return await http.post("/", content=body, headers={SIGNATURE_HEADER: sign(secret, body)})


def _agent() -> tuple[Agent, list[str]]:
    agent = Agent("sdk")
    ran: list[str] = []

    @agent.on_message
    async def answer(turn: Turn) -> Any:
        ran.append(turn.content)
        if turn.content == "stream":

            async def pieces() -> AsyncIterator[str]:
                for p in ("one ", "two"):
                    yield p

            return pieces()
        if turn.content == "human":
            return Handoff(reason="asked for a person")
        if turn.content == "fail":
            raise TurnError("no_stock", "out of teapots")
        if turn.content == "slow":
            await asyncio.sleep(0.3)
        return f"sdk: {turn.content}"

    return agent, ran


async def test_the_endpoint_answers_checks_signatures_and_never_runs_a_turn_twice() -> None:
    agent, ran = _agent()
    transport = httpx.ASGITransport(app=agent.webhook_app(SECRET))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
        r = await _post(http, _turn("t_1", "hi"))
        assert r.status_code == 200
        assert r.json()["type"] == "agent_message" and r.json()["content"] == "sdk: hi"
        assert r.json()["message_id"] == "t_1"

        r = await _post(http, _turn("t_2", "stream"))
        frames = r.json()
        kinds = [f["type"] for f in frames]
        assert kinds == ["agent_streaming", "agent_streaming", "agent_complete"]
        assert [f["stream_index"] for f in frames[:2]] == [0, 1]
        assert frames[2]["content"] == "one two"

        assert (await _post(http, _turn("t_3", "human"))).json()["type"] == "handoff"
        failed = (await _post(http, _turn("t_4", "fail"))).json()
        assert failed["type"] == "error_message" and failed["error_code"] == "no_stock"

        # the bridge retried: the kept answer, the handler not run again
        again = await _post(http, _turn("t_1", "hi"))
        assert again.json()["content"] == "sdk: hi"
        # two copies of one slow turn at once: run once, both answered
        both = await asyncio.gather(
            _post(http, _turn("t_5", "slow")), _post(http, _turn("t_5", "slow"))
        )
        assert [b.json()["content"] for b in both] == ["sdk: slow", "sdk: slow"]
        assert ran == ["hi", "stream", "human", "fail", "slow"]

        bad = await _post(http, _turn("t_6", "sneaky"), secret="wrong")
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_signature"
        unsigned = await http.post("/", json=_turn("t_7", "x"))
        assert unsigned.status_code == 401
        assert "sneaky" not in ran and "x" not in ran

        body = b"{not json"
        r = await http.post("/", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_message"
        event = {"type": "conversation_event", "event": "conversation_opened", "data": {}}
        assert (await _post(http, event)).status_code == 204


async def test_a_bridge_reaches_the_sdk_agent_by_webhook(sqlite_url: str) -> None:
    agent, ran = _agent()
    async with serve_app(agent.webhook_app(SECRET, path="/turns")) as agent_url:
        config = AgentConfig(
            agent_id="agent1",
            transport="http-webhook",
            webhook_url=f"{agent_url}/turns",
            secret=SECRET,
            timeout_seconds=5,
        )
        async with running_stack(sqlite_url, agent_config=config) as stack:
            await stack.say("hello", conv=1)
            await stack.say("stream", conv=1)
            assert await stack.wait_replies(2, conv=1) == ["sdk: hello", "one two"]
            await stack.say("human", conv=2)
            await stack.idle()
            assert "toggle_status" in stack.actions(2)
            assert ran == ["hello", "stream", "human"]
