"""AgentHub dial-in: ``handle_dial_in`` served by uvicorn, reached by the SDK and by raw clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from chatbridge.agent import Agent, HelloRejected, Turn
from chatbridge.errors import TurnCancelled
from chatbridge.metrics import Metrics
from chatbridge.testing.mock_agent import build_mock_agent
from chatbridge.transports.hub import AgentHub
from tests.transports.hub_helpers import (
    FRAME_LIMIT,
    connected_gauge,
    dropped,
    recv_frame,
    round_trip,
    turn_request,
)


@asynccontextmanager
async def dialing_in(agent: Agent, url: str, token: str = "secret") -> AsyncIterator[None]:
    """Run ``agent.dial_in`` for the duration of the block, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.dial_in(url, token, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def hello(
    url: str, frame: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open a raw connection, send ``frame`` first and return the bridge's answer."""
    ws = await connect(url, additional_headers=headers)
    await ws.send(json.dumps(frame))
    return ws, await recv_frame(ws)


def hello_frame(agent_id: str = "agent1", token: str | None = "secret", **extra: Any) -> dict:
    frame: dict[str, Any] = {"type": "hello", "agent_id": agent_id, "protocol": "chatbridge/1"}
    if token is not None:
        frame["token"] = token
    return {**frame, **extra}


async def test_sdk_dial_in_echo_round_trip(
    hub: AgentHub, bridge_url: str, metrics: Metrics
) -> None:
    async with dialing_in(build_mock_agent("echo", agent_id="agent1"), bridge_url):
        outcome = await hub.run_turn(turn_request("agent1", content="hi there"))
        assert (outcome.kind, outcome.content) == ("reply", "Echo: hi there")
        [row] = hub.status()
        assert (row.agent_id, row.transport, row.connected) == ("agent1", "ws-dial-in", True)
        assert connected_gauge(metrics, "agent1") == 1


async def test_sdk_dial_in_streaming(hub: AgentHub, bridge_url: str) -> None:
    async with dialing_in(build_mock_agent("auto", agent_id="agent1"), bridge_url):
        outcome = await hub.run_turn(turn_request("agent1", content="please stream"))
    assert outcome.content == "Echo: please stream"
    assert outcome.streamed_chunks == 3


async def test_sdk_with_bad_token_is_rejected(bridge_url: str) -> None:
    agent = build_mock_agent("echo", agent_id="agent1")
    with pytest.raises(HelloRejected) as info:
        await agent.dial_in(bridge_url, "wrong")
    assert info.value.code == "unauthorized"


async def test_bad_token_gets_hello_error_and_1008(bridge_url: str) -> None:
    ws, answer = await hello(bridge_url, hello_frame(token="wrong"))
    assert (answer["type"], answer["error_code"]) == ("hello_error", "unauthorized")
    await ws.wait_closed()
    assert ws.close_code == 1008


async def test_missing_token_gets_hello_error(bridge_url: str) -> None:
    ws, answer = await hello(bridge_url, hello_frame(token=None))
    assert answer["error_code"] == "unauthorized"
    await ws.wait_closed()
    assert ws.close_code == 1008


async def test_first_frame_must_be_hello(bridge_url: str) -> None:
    ws, answer = await hello(bridge_url, {"type": "ping"})
    assert (answer["type"], answer["error_code"]) == ("hello_error", "bad_hello")
    await ws.wait_closed()
    assert ws.close_code == 1008


async def test_token_in_authorization_header(hub: AgentHub, bridge_url: str) -> None:
    headers = {"Authorization": "Bearer secret"}
    ws, answer = await hello(bridge_url, hello_frame(token=None), headers)
    assert answer == {
        "type": "hello_ok",
        "agent_id": "agent1",
        "protocol": "chatbridge/1",
        "heartbeat_interval": 0.5,
        "version": "1.2",  # a hello without version: an agent from before negotiation
        "features": [],
    }
    assert hub.is_connected("agent1")
    await ws.close()


async def test_errors_keep_the_connection_open_and_big_frames_close_it(
    hub: AgentHub, bridge_url: str
) -> None:
    ws, _ = await hello(bridge_url, hello_frame())
    await ws.send(json.dumps({"type": "user_message"}))  # a bridge → agent type
    assert (await recv_frame(ws))["error_code"] == "unknown_type"
    await ws.send("{nope")
    assert (await recv_frame(ws))["error_code"] == "invalid_json"
    await round_trip(ws)
    assert hub.is_connected("agent1")
    await ws.send("x" * (FRAME_LIMIT + 1))
    await ws.wait_closed()
    assert ws.close_code == 1009


async def test_new_connection_replaces_the_old_one(hub: AgentHub, bridge_url: str) -> None:
    old, _ = await hello(bridge_url, hello_frame())
    new, _ = await hello(bridge_url, hello_frame())
    await old.wait_closed()
    task = asyncio.create_task(hub.run_turn(turn_request("agent1")))
    assert (await recv_frame(new))["message_id"] == "t_1"
    await new.send(json.dumps({"type": "agent_message", "message_id": "t_1", "content": "new"}))
    assert (await task).content == "new"
    await new.close()


async def test_resume_skips_turns_the_agent_has(hub: AgentHub, bridge_url: str) -> None:
    first, _ = await hello(bridge_url, hello_frame())
    has_it = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_a", seq=5)))
    assert (await recv_frame(first))["seq"] == 5
    await first.send(json.dumps({"type": "ack", "seq": 5}))
    await first.close()

    second, _ = await hello(bridge_url, hello_frame(resume_from=5))
    await round_trip(second)  # no resend of seq 5 came before the pong
    await second.send(json.dumps({"type": "no_reply", "message_id": "t_a"}))
    assert (await has_it).kind == "no_reply"
    await second.close()


@pytest.mark.parametrize("same_name", [True, False])
async def test_resume_under_another_connection_name_sends_the_turn_again(
    hub: AgentHub, bridge_url: str, same_name: bool
) -> None:
    """The agent answers from memory only on the connection a turn came on (by name); one
    that comes back under another name (another ``dial_in``, another process) gets the turn
    again even at or below ``resume_from``, so its kept answer is not stranded."""
    first, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "a"}))
    task = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_n", seq=5)))
    sent = await recv_frame(first)
    await first.send(json.dumps({"type": "ack", "seq": 5}))
    await round_trip(first)
    await first.close()

    name = "a" if same_name else "b"
    second, _ = await hello(bridge_url, hello_frame(resume_from=5, metadata={"link_id": name}))
    if same_name:
        await round_trip(second)  # no resend of seq 5 came before the pong
    else:
        assert await recv_frame(second) == sent
    await second.send(json.dumps({"type": "agent_message", "message_id": "t_n", "content": "n"}))
    assert (await task).content == "n"
    await second.close()


async def test_resume_resends_newer_turns(hub: AgentHub, bridge_url: str) -> None:
    first, _ = await hello(bridge_url, hello_frame())
    task = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_b", seq=6)))
    sent = await recv_frame(first)
    await first.close()

    second, _ = await hello(bridge_url, hello_frame(resume_from=5))
    assert await recv_frame(second) == sent
    await second.send(json.dumps({"type": "agent_message", "message_id": "t_b", "content": "b"}))
    assert (await task).content == "b"
    await second.close()


async def test_sdk_disconnect_mid_turn_answers_once(hub: AgentHub, bridge_url: str) -> None:
    agent = Agent("agent1")
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    @agent.on_message
    async def slow(turn: Turn) -> str:
        calls.append(turn.id)
        started.set()
        await release.wait()
        return "finally"

    async with dialing_in(agent, bridge_url):
        task = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_mid", seq=3)))
        await started.wait()
        await agent.close_connections()
        release.set()
        assert (await task).content == "finally"
    assert calls == ["t_mid"]


async def test_dial_in_for_a_dial_out_agent_is_refused(hub: AgentHub, bridge_url: str) -> None:
    hub.configure("agent1", "ws-dial-out", "ws://127.0.0.1:9/never")
    ws, answer = await hello(bridge_url, hello_frame())
    assert answer["error_code"] == "unauthorized"
    await ws.wait_closed()
    assert ws.close_code == 1008


async def test_named_connections_of_one_agent_all_carry_turns(
    hub: AgentHub, bridge_url: str
) -> None:
    """An agent keeping two connections (two link ids): neither replaces the other, and a
    turn answered on one stays there."""
    one, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "one"}))
    two, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "two"}))
    first = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_1", seq=1)))
    assert (await recv_frame(two))["message_id"] == "t_1"  # the newest link
    await one.close()  # the other connection going away leaves the turn where it is
    second = asyncio.create_task(
        hub.run_turn(turn_request("agent1", "t_2", conversation_id="c_2", seq=2))
    )
    assert (await recv_frame(two))["message_id"] == "t_2"
    for key in ("t_1", "t_2"):
        await two.send(json.dumps({"type": "agent_message", "message_id": key, "content": key}))
    assert [(await first).content, (await second).content] == ["t_1", "t_2"]
    assert hub.is_connected("agent1")
    await two.close()


async def test_a_turn_moves_to_the_agents_other_connection_when_its_own_drops(
    hub: AgentHub, bridge_url: str
) -> None:
    one, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "one"}))
    two, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "two"}))
    task = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_m", seq=4)))
    sent = await recv_frame(two)
    await two.close()
    assert await recv_frame(one) == sent  # the same frame, same message_id
    await one.send(json.dumps({"type": "agent_message", "message_id": "t_m", "content": "m"}))
    assert (await task).content == "m"
    await one.close()


async def test_a_connection_reopened_under_its_name_replaces_only_that_one(
    hub: AgentHub, bridge_url: str
) -> None:
    old, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "a"}))
    other, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "b"}))
    new, _ = await hello(bridge_url, hello_frame(metadata={"link_id": "a"}))
    await old.wait_closed()
    await round_trip(other)  # still open
    await round_trip(new)
    await other.close()
    await new.close()


async def test_cancel_turn_sends_cancel_on_the_dial_in_connection(
    hub: AgentHub, bridge_url: str, metrics: Metrics
) -> None:
    ws, _ = await hello(bridge_url, hello_frame())
    task = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_c", timeout=30)))
    assert (await recv_frame(ws))["message_id"] == "t_c"
    hub.cancel_turn("agent1", "t_c", "c_1", reason="superseded")
    with pytest.raises(TurnCancelled):
        async with asyncio.timeout(5):
            await task
    frame = await recv_frame(ws)
    assert (frame["type"], frame["message_id"], frame["conversation_id"], frame["reason"]) == (
        "cancel",
        "t_c",
        "c_1",
        "superseded",
    )
    await ws.send(json.dumps({"type": "no_reply", "message_id": "t_c"}))
    await round_trip(ws)
    assert dropped(metrics, "agent1") == 1
    await ws.close()
