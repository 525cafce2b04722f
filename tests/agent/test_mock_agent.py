"""The mock agent: its behaviours, over a real connection, and its runner."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from chatbridge.testing.mock_agent import (
    HANDOFF_REASON,
    HANDOFF_TEXT,
    auto_behaviour,
    build_mock_agent,
    keyword_answer,
    run_mock_agent,
    split_chunks,
)
from tests.agent.sdk_helpers import FakeBridge, recv, send, user_message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello!", "Hello! I'm the Chatbridge test agent. How can I help you today?"),
        ("hi there", "Hello! I'm the Chatbridge test agent. How can I help you today?"),
        ("I need HELP", "I can answer questions about orders and prices. Just ask!"),
        ("where is my order?", "I can look up your order. What is your order number?"),
        ("what's the price", "Our plans start at $10 per month. Want the details?"),
        ("ok bye", "Goodbye! Thanks for chatting with us."),
        ("this is history", "I received your message: this is history"),  # no "hi" inside words
    ],
)
def test_keyword_answers(text: str, expected: str) -> None:
    assert keyword_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "behaviour"),
    [
        ("Can I talk to a HUMAN?", "handoff"),
        ("please stream this", "stream"),
        ("trigger an error", "error"),
        ("be slow", "delay"),
        ("anything else", "echo"),
    ],
)
def test_auto_picks_by_message(text: str, behaviour: str) -> None:
    assert auto_behaviour(text) == behaviour


@given(st.text(), st.none() | st.integers(min_value=1, max_value=40))
def test_chunks_join_back_to_the_text(text: str, count: int | None) -> None:
    pieces = split_chunks(text, count)
    assert "".join(pieces) == text
    assert all(pieces)


def test_word_by_word() -> None:
    assert split_chunks("Echo: one  two", None) == ["Echo: ", "one  ", "two"]


def test_unknown_behaviour_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mock behaviour"):
        build_mock_agent("sing")


@pytest.mark.parametrize(
    ("behaviour", "content", "expected"),
    [
        ("echo", "yo", {"type": "agent_message", "content": "Echo: yo"}),
        ("test", "hello", {"type": "agent_message"}),
        ("delay", "late", {"type": "agent_message", "content": "Echo: late"}),
        ("error", "x", {"type": "error_message", "error_code": "mock_error"}),
        ("handoff", "x", {"type": "handoff", "reason": HANDOFF_REASON, "content": HANDOFF_TEXT}),
        ("stream", "a b", {"type": "agent_streaming", "stream_index": 0, "content": "Echo: "}),
        ("auto", "human please", {"type": "handoff"}),
        ("auto", "slow one", {"type": "agent_message", "content": "Echo: slow one"}),
    ],
)
async def test_behaviours_over_a_connection(
    behaviour: str, content: str, expected: dict[str, object]
) -> None:
    agent = build_mock_agent(behaviour, agent_id="m", delay=0.01)
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message(content=content))
        reply = await recv(ws)
    assert reply["message_id"] == "t_1"
    assert expected.items() <= reply.items()


async def test_stream_chunk_count_option() -> None:
    agent = build_mock_agent("stream", chunks=2)
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message(content="abcd"))
        frames = [await recv(ws) for _ in range(3)]
    assert [f["type"] for f in frames] == ["agent_streaming", "agent_streaming", "agent_complete"]
    assert frames[0]["content"] + frames[1]["content"] == "Echo: abcd"


async def test_run_mock_agent_dials_in(fake_bridge: FakeBridge) -> None:
    task = asyncio.create_task(
        run_mock_agent("auto", agent_id="demo", dial_in_url=fake_bridge.url, token="t")
    )
    try:
        ws, hello = await fake_bridge.accept()
        assert hello["agent_id"] == "demo"
        await send(ws, user_message(content="hi"))
        assert (await recv(ws))["content"] == "Echo: hi"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_mock_agent_needs_somewhere_to_run() -> None:
    with pytest.raises(ValueError):
        await run_mock_agent("echo")
    with pytest.raises(ValueError):
        await run_mock_agent("echo", dial_in_url="ws://127.0.0.1:1/api/ws/agent")
