"""The agent SDK dialing in, against a raw WebSocket server playing the bridge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from chatbridge.agent import Agent, HelloRejected, Turn
from tests.agent.sdk_helpers import FakeBridge, recv, round_trip, send, user_message


@asynccontextmanager
async def dialing_in(agent: Agent, url: str) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.dial_in(url, "tok", stop=stop))
    try:
        yield
    finally:
        stop.set()
        await task


def fast_agent() -> Agent:
    return Agent("dialer", reconnect_initial_delay=0.01, reconnect_max_delay=0.05)


async def test_hello_carries_identity_token_and_resume_point(fake_bridge: FakeBridge) -> None:
    agent = fast_agent()

    @agent.on_message
    async def answer(turn: Turn) -> str:
        return "ok"

    async with dialing_in(agent, fake_bridge.url):
        first, hello = await fake_bridge.accept()
        assert first.request is not None
        assert first.request.headers["Authorization"] == "Bearer tok"
        assert hello["agent_id"] == "dialer"
        assert hello["token"] == "tok"
        assert hello["protocol"] == "chatbridge/1"
        assert "streaming" in hello["capabilities"]
        assert "resume_from" not in hello
        await send(first, user_message("t_1", seq=7))
        assert await recv(first, skip=("ping", "pong")) == {"type": "ack", "seq": 7}
        assert (await recv(first))["content"] == "ok"
        await first.close()

        second, hello = await fake_bridge.accept()
        assert hello["resume_from"] == 7
        await round_trip(second)


async def test_answer_finished_while_disconnected_arrives_after_reconnect(
    fake_bridge: FakeBridge,
) -> None:
    agent = fast_agent()
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    @agent.on_message
    async def slow(turn: Turn) -> str:
        calls.append(turn.id)
        started.set()
        await release.wait()
        return "worth the wait"

    async with dialing_in(agent, fake_bridge.url):
        first, _ = await fake_bridge.accept()
        await send(first, user_message("t_w", seq=1))
        await started.wait()
        await first.close()
        second, hello = await fake_bridge.accept()
        assert hello["resume_from"] == 1  # so the bridge does not send t_w again
        release.set()
        reply = await recv(second)
    assert (reply["message_id"], reply["content"]) == ("t_w", "worth the wait")
    assert calls == ["t_w"]


async def test_answer_finished_between_two_dial_ins_goes_out_on_the_next(
    fake_bridge: FakeBridge,
) -> None:
    """``dial_in`` stopped while a turn runs, then called again: the new connection has the
    old one's name (the bridge resumes it and does not send the turn again) and carries the
    answer kept in between."""
    agent = fast_agent()
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    @agent.on_message
    async def slow(turn: Turn) -> str:
        calls.append(turn.id)
        started.set()
        await release.wait()
        finished.set()  # the SDK keeps the answer in this same step
        return "kept"

    # Serving too keeps the handler running while no dial-in runs (as Agent.run does).
    async with agent.serving("127.0.0.1", 0):
        async with dialing_in(agent, fake_bridge.url):
            first, hello_1 = await fake_bridge.accept()
            await send(first, user_message("t_k", seq=1))
            await started.wait()
        release.set()
        await finished.wait()
        async with dialing_in(agent, fake_bridge.url):
            second, hello_2 = await fake_bridge.accept()
            assert hello_2["resume_from"] == 1
            assert hello_2["metadata"]["link_id"] == hello_1["metadata"]["link_id"]
            reply = await recv(second)
    assert (reply["message_id"], reply["content"]) == ("t_k", "kept")
    assert calls == ["t_k"]


async def test_recent_answers_are_sent_again_after_a_drop(fake_bridge: FakeBridge) -> None:
    agent = fast_agent()

    @agent.on_message
    async def answer(turn: Turn) -> str:
        return "maybe lost"

    async with dialing_in(agent, fake_bridge.url):
        first, _ = await fake_bridge.accept()
        await send(first, user_message("t_l", seq=2))
        delivered = await recv(first)
        await first.close()  # the bridge cannot know whether that answer made it
        second, _ = await fake_bridge.accept()
        assert await recv(second) == delivered


async def test_hello_error_stops_dialing(fake_bridge: FakeBridge) -> None:
    agent = fast_agent()
    task = asyncio.create_task(agent.dial_in(fake_bridge.url, "bad"))
    ws = await fake_bridge.connections.get()
    await recv(ws)
    await send(ws, {"type": "hello_error", "error_code": "unauthorized", "message": "no"})
    await ws.close(1008)
    with pytest.raises(HelloRejected) as info:
        await task
    assert info.value.code == "unauthorized"


async def test_keeps_trying_until_the_bridge_answers(fake_bridge: FakeBridge) -> None:
    agent = fast_agent()
    async with dialing_in(agent, fake_bridge.url):
        ws = await fake_bridge.connections.get()
        await recv(ws)
        await send(ws, {"type": "pong"})  # not a hello answer: the agent gives up on it
        await ws.wait_closed()
        again, _ = await fake_bridge.accept()
        await round_trip(again)


async def test_several_connections_each_named_and_each_answering_its_own_turns(
    fake_bridge: FakeBridge,
) -> None:
    """``connections=2``: two connections (to two replicas behind a load balancer), each
    with its own link id, kept across its reconnects; a turn is answered where it came."""
    agent = fast_agent()

    @agent.on_message
    async def answer(turn: Turn) -> str:
        return f"re: {turn.content}"

    stop = asyncio.Event()
    task = asyncio.create_task(agent.dial_in(fake_bridge.url, "tok", stop=stop, connections=2))
    try:
        a, hello_a = await fake_bridge.accept()
        b, hello_b = await fake_bridge.accept()
        names = {hello_a["metadata"]["link_id"], hello_b["metadata"]["link_id"]}
        assert len(names) == 2
        await send(a, user_message("t_a", seq=1, content="a", conversation_id="c_a"))
        await send(b, user_message("t_b", seq=2, content="b", conversation_id="c_b"))
        assert (await recv(b, skip=("ping", "pong", "ack")))["content"] == "re: b"
        assert (await recv(a, skip=("ping", "pong", "ack")))["content"] == "re: a"
        await a.close()
        again, hello = await fake_bridge.accept()
        assert hello["metadata"]["link_id"] == hello_a["metadata"]["link_id"]
        await round_trip(again)
        await round_trip(b)  # the other connection stayed as it was
    finally:
        stop.set()
        await task


async def test_several_connections_with_a_refused_token_raise(fake_bridge: FakeBridge) -> None:
    agent = fast_agent()
    task = asyncio.create_task(agent.dial_in(fake_bridge.url, "bad", connections=2))
    ws = await fake_bridge.connections.get()
    await recv(ws)
    await send(ws, {"type": "hello_error", "error_code": "unauthorized", "message": "no"})
    await ws.close(1008)
    with pytest.raises(HelloRejected):
        await task
