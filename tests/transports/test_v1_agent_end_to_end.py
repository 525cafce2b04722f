"""A 1.0 agent against the whole 1.3 bridge: a raw WebSocket client that knows only the 1.0
frames dials in, answers customer messages, and never receives a frame type it cannot read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.e2e.harness import running_stack

TOKEN = "v1-agent-token-0123456789"
V1_BRIDGE_TYPES = {
    "user_message", "ping", "pong", "hello_ok", "hello_error", "error_message",
    "conversation_event",
}  # fmt: skip
V1_USER_MESSAGE_FIELDS = {
    "type", "protocol", "message_id", "seq", "conversation_id", "inbox_id", "channel",
    "content", "messages", "sender", "context", "response_mode", "deadline", "timestamp",
    "metadata",
}  # fmt: skip


async def test_a_1_0_agent_answers_through_the_new_bridge(database_url: str) -> None:
    async with running_stack(database_url, transport="ws-dial-in", route_token=TOKEN) as stack:
        seen: list[dict[str, Any]] = []
        async with connect(stack.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "agent_id": "agent1", "token": TOKEN,
                                      "protocol": "chatbridge/1"}))  # fmt: skip
            hello_ok = json.loads(await ws.recv())
            assert hello_ok["type"] == "hello_ok"
            await stack.agent_connected()
            hub = stack.bridge.hub
            for n, text in enumerate(("hello", "and another thing")):
                await stack.say(text, conv=1)
                async with asyncio.timeout(10):
                    while True:
                        frame = json.loads(await ws.recv())
                        seen.append(frame)
                        if frame["type"] == "ping":
                            await ws.send(json.dumps({"type": "pong"}))
                        if frame["type"] == "user_message":
                            break
                await ws.send(
                    json.dumps({"type": "agent_message", "message_id": frame["message_id"],
                                "conversation_id": frame["conversation_id"],
                                "content": f"answer {n}"})
                )  # fmt: skip
                assert await stack.wait_replies(n + 1, conv=1) == [
                    f"answer {i}" for i in range(n + 1)
                ]
            # what the bridge would tell a 1.3 agent about sessions and notices stays here
            for event in (
                {"type": "session_expired", "session_id": "s_1", "reason": "idle", "data": {}},
                {"type": "system_message", "conversation_id": "c", "content": "note"},
            ):
                assert await hub.send_event("agent1", event) is False
            await ws.send(json.dumps({"type": "ping"}))
            async with asyncio.timeout(10):
                while True:
                    frame = json.loads(await ws.recv())
                    seen.append(frame)
                    if frame["type"] == "pong":
                        break
        await stack.idle()
    types = {frame["type"] for frame in seen}
    assert types <= V1_BRIDGE_TYPES, types
    for frame in seen:
        if frame["type"] == "user_message":
            # fields a 1.0 agent does not know are only ever additions it may ignore
            assert frame["protocol"] == "chatbridge/1"
            assert frame["content"] in ("hello", "and another thing")
            assert not (set(frame) - V1_USER_MESSAGE_FIELDS) - {"fresh", "files", "agent", "role"}
