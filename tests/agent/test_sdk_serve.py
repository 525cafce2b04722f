"""The agent SDK as a server the bridge dials, driven by a raw WebSocket client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import connect

from chatbridge.agent import Agent, Event, Handoff, NoReply, Turn, TurnError
from tests.agent.sdk_helpers import recv, round_trip, send, user_message


def echo_agent(calls: list[str] | None = None) -> Agent:
    agent = Agent("sdk-agent")

    @agent.on_message
    async def answer(turn: Turn) -> str:
        if calls is not None:
            calls.append(turn.id)
        return f"Echo: {turn.content}"

    return agent


async def test_turn_is_acked_answered_and_exposes_its_fields() -> None:
    agent = Agent("sdk-agent")
    seen: list[Turn] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        seen.append(turn)
        return "got it"

    frame = {
        **user_message("t_f", seq=41, content="line 1\nline 2"),
        "inbox_id": 3,
        "channel": "webchat",
        "messages": [{"id": "m_1", "content": "line 1"}, {"id": "m_2", "content": "line 2"}],
        "sender": {"id": 789, "name": "John Doe"},
        "context": {"external_conversation_id": "456", "additional_attributes": {"a": 1}},
        "x_future_field": True,
    }
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, frame)
        assert await recv(ws, skip=("ping", "pong")) == {"type": "ack", "seq": 41}
        reply = await recv(ws)
    assert reply["type"] == "agent_message"
    assert (reply["message_id"], reply["conversation_id"], reply["content"]) == (
        "t_f", "c_1", "got it",
    )  # fmt: skip
    assert reply["metadata"]["agent_id"] == "sdk-agent"
    assert reply["metadata"]["processing_time_ms"] >= 0
    [turn] = seen
    assert (turn.id, turn.seq, turn.conversation_id) == ("t_f", 41, "c_1")
    assert (turn.channel, turn.inbox_id, turn.content) == ("webchat", 3, "line 1\nline 2")
    assert [m["id"] for m in turn.messages] == ["m_1", "m_2"]
    assert turn.sender is not None and turn.sender["id"] == "789"
    assert turn.context is not None and turn.context["external_conversation_id"] == "456"
    assert turn.raw["x_future_field"] is True
    assert agent.last_seq == 41


async def test_results_become_the_right_frames() -> None:
    agent = Agent("sdk-agent")
    results: dict[str, Any] = {
        "none": None,
        "noreply": NoReply(),
        "handoff": Handoff(reason="angry", content="A human will help you."),
        "bare-handoff": Handoff(),
    }

    @agent.on_message
    def answer(turn: Turn) -> Any:  # a plain function works too
        return results[turn.content]

    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        replies = []
        for i, content in enumerate(results):
            await send(ws, user_message(f"t_{i}", content=content))
            replies.append(await recv(ws))
    assert [r["type"] for r in replies] == ["no_reply", "no_reply", "handoff", "handoff"]
    assert (replies[2]["reason"], replies[2]["content"]) == ("angry", "A human will help you.")
    assert "reason" not in replies[3] and "content" not in replies[3]
    assert all(r["conversation_id"] == "c_1" for r in replies)


async def test_streamed_reply() -> None:
    agent = Agent("sdk-agent")

    @agent.on_message
    async def answer(turn: Turn) -> AsyncIterator[str]:
        for word in ("I ", "can ", "help"):
            yield word

    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message("t_s"))
        frames = [await recv(ws) for _ in range(4)]
    assert [(f["type"], f.get("stream_index")) for f in frames] == [
        ("agent_streaming", 0), ("agent_streaming", 1), ("agent_streaming", 2),
        ("agent_complete", None),
    ]  # fmt: skip
    assert "".join(f["content"] for f in frames[:3]) == "I can help"
    assert "content" not in frames[3]  # the bridge joins the chunks
    assert all(f["message_id"] == "t_s" for f in frames)


async def test_failures_become_error_messages() -> None:
    agent = Agent("sdk-agent")

    @agent.on_message
    async def answer(turn: Turn) -> Any:
        if turn.content == "boom":
            raise ValueError("kaput")
        if turn.content == "refuse":
            raise TurnError("out_of_scope", details={"topic": "weather"})
        return 42  # not a valid result

    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message("t_1", content="boom"))
        boom = await recv(ws)
        await send(ws, user_message("t_2", content="refuse"))
        refused = await recv(ws)
        await send(ws, user_message("t_3", content="number"))
        wrong = await recv(ws)
    assert (boom["type"], boom["message_id"], boom["error_code"]) == (
        "error_message", "t_1", "handler_error",
    )  # fmt: skip
    assert boom["error_details"] == {"type": "ValueError", "message": "kaput"}
    assert refused["error_code"] == "out_of_scope"
    assert refused["error_details"] == {"topic": "weather"}
    assert (wrong["error_code"], wrong["error_details"]["type"]) == ("handler_error", "TypeError")


async def test_agent_without_handler_answers_no_handler() -> None:
    agent = Agent("empty")
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message())
        reply = await recv(ws)
    assert (reply["type"], reply["error_code"], reply["message_id"]) == (
        "error_message", "no_handler", "t_1",
    )  # fmt: skip


async def test_repeat_while_running_runs_once_and_answers_the_new_connection() -> None:
    agent = Agent("sdk-agent")
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    @agent.on_message
    async def slow(turn: Turn) -> str:
        calls.append(turn.id)
        started.set()
        await release.wait()
        return "slow answer"

    async with agent.serving() as port:
        async with connect(f"ws://127.0.0.1:{port}") as first:
            await send(first, user_message("t_r"))
            await started.wait()
        async with connect(f"ws://127.0.0.1:{port}") as second:
            await send(second, user_message("t_r"))
            await round_trip(second)  # the repeat has been read
            release.set()
            reply = await recv(second)
    assert reply["content"] == "slow answer"
    assert calls == ["t_r"]


async def test_repeat_after_answer_sends_the_kept_answer() -> None:
    calls: list[str] = []
    agent = echo_agent(calls)
    async with agent.serving() as port:
        async with connect(f"ws://127.0.0.1:{port}") as first:
            await send(first, user_message("t_k", content="once"))
            original = await recv(first)
        async with connect(f"ws://127.0.0.1:{port}") as second:
            await send(second, user_message("t_k", content="once"))
            again = await recv(second)
    assert again == original
    assert calls == ["t_k"]


async def test_turns_run_concurrently() -> None:
    agent = Agent("sdk-agent")
    second_done = asyncio.Event()

    @agent.on_message
    async def answer(turn: Turn) -> str:
        if turn.content == "first":
            await second_done.wait()
        else:
            second_done.set()
        return turn.content

    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message("t_1", content="first", conversation_id="c_1"))
        await send(ws, user_message("t_2", content="second", conversation_id="c_2"))
        replies = [await recv(ws), await recv(ws)]
    assert [r["message_id"] for r in replies] == ["t_2", "t_1"]


async def test_protocol_hygiene() -> None:
    async with echo_agent().serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, {"type": "ping"})
        assert (await recv(ws, skip=("ack",)))["type"] == "pong"
        await send(ws, {"type": "agent_message", "content": "that's my line"})
        assert (await recv(ws))["error_code"] == "unknown_type"
        await send(ws, "{broken")
        assert (await recv(ws))["error_code"] == "invalid_json"
        await send(ws, {"type": "user_message", "message_id": "t_x"})  # no conversation_id
        assert (await recv(ws))["error_code"] == "invalid_message"
        await send(ws, {"type": "error_message", "error_code": "whatever"})
        await send(ws, {"type": "error_message"})  # invalid, but never answered with an error
        await send(ws, user_message("t_ok", content="still here"))
        assert (await recv(ws))["content"] == "Echo: still here"


async def test_conversation_event_may_answer_proactively() -> None:
    agent = echo_agent()
    events: list[Event] = []

    @agent.on_event
    async def on_event(event: Event) -> str | None:
        events.append(event)
        return "Welcome back!" if event.event == "reopened" else None

    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        base = {"type": "conversation_event", "conversation_id": "c_7"}
        await send(ws, {**base, "event": "closed"})
        await send(ws, {**base, "event": "reopened", "data": {"by": "operator"}})
        proactive = await recv(ws)
    assert proactive == {
        "type": "agent_message",
        "conversation_id": "c_7",
        "content": "Welcome back!",
        "metadata": {"agent_id": "sdk-agent"},
    }
    assert [(e.event, e.data) for e in events] == [("closed", {}), ("reopened", {"by": "operator"})]
