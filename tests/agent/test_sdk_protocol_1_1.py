"""Protocol 1.1 in the SDK: ``turn.fresh``, ``turn.cancelled`` on a ``cancel`` frame (the
handler is stopped and nothing is sent), ``Handoff(summary=...)``, over a WebSocket the bridge
dials and over http-webhook."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from websockets.asyncio.client import connect

from chatbridge.agent import Agent, Handoff, Turn
from chatbridge.signing import SIGNATURE_HEADER, sign
from chatbridge.testing.servers import serve_app
from tests.agent.sdk_helpers import recv, round_trip, send, user_message

SECRET = "sdk-secret-0123456789"


def cancel(key: str = "t_1", conversation_id: str = "c_1") -> dict[str, Any]:
    return {
        "type": "cancel",
        "message_id": key,
        "conversation_id": conversation_id,
        "reason": "superseded",
    }


class Held:
    """A handler that holds its turn until released, and records what it saw."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.stopped = asyncio.Event()  # the SDK cancelled the handler's task
        self.turns: list[Turn] = []

    async def __call__(self, turn: Turn) -> str:
        self.turns.append(turn)
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.stopped.set()
            raise
        return "an answer the bridge no longer wants"


async def test_fresh_and_the_merged_messages_reach_the_handler() -> None:
    agent = Agent("sdk-agent")
    seen: list[Turn] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        seen.append(turn)
        return "ok"

    burst = {
        **user_message("t_1", content="hi\nabout my order"),
        "fresh": True,
        "messages": [{"id": "m_1", "content": "hi"}, {"id": "m_2", "content": "about my order"}],
    }
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, burst)
        assert (await recv(ws))["type"] == "agent_message"
        await send(ws, user_message("t_2", seq=2))  # a 1.0 bridge sends no ``fresh``
        assert (await recv(ws))["type"] == "agent_message"
    assert [t.fresh for t in seen] == [True, False]
    assert [m["content"] for m in seen[0].messages] == ["hi", "about my order"]
    assert not seen[0].cancelled and seen[0].cancel_reason is None


async def test_a_cancel_stops_the_running_handler_and_nothing_is_sent() -> None:
    agent = Agent("sdk-agent")
    held = agent.on_message(Held())
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message("t_1"))
        async with asyncio.timeout(5):
            await held.started.wait()
        await send(ws, cancel("t_1"))
        async with asyncio.timeout(5):
            await held.stopped.wait()
        [turn] = held.turns
        assert turn.cancelled and turn.cancel_reason == "superseded"
        # the next turn is answered, and nothing about t_1 came before it
        await send(ws, user_message("t_2", seq=2, conversation_id="c_2"))
        held.release.set()
        reply = await recv(ws)
    assert (reply["type"], reply["message_id"]) == ("agent_message", "t_2")


async def test_a_cancel_for_another_conversation_or_an_unknown_turn_changes_nothing() -> None:
    agent = Agent("sdk-agent")
    held = agent.on_message(Held())
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message("t_1"))
        async with asyncio.timeout(5):
            await held.started.wait()
        await send(ws, cancel("t_1", conversation_id="c_other"))
        await send(ws, cancel("t_404"))
        await round_trip(ws)  # both read, neither answered with an error
        assert not held.turns[0].cancelled and not held.stopped.is_set()
        held.release.set()
        reply = await recv(ws)
    assert (reply["message_id"], reply["content"]) == (
        "t_1",
        "an answer the bridge no longer wants",
    )


async def test_with_cancel_handlers_off_the_handler_finishes_but_its_answer_is_dropped() -> None:
    agent = Agent("sdk-agent", cancel_handlers=False)
    held = agent.on_message(Held())
    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message("t_1"))
        async with asyncio.timeout(5):
            await held.started.wait()
        await send(ws, cancel("t_1"))
        async with asyncio.timeout(5):
            assert await held.turns[0].wait_cancelled() == "superseded"
        held.release.set()
        await send(ws, user_message("t_2", seq=2, conversation_id="c_2"))
        reply = await recv(ws)
    assert reply["message_id"] == "t_2"  # t_1's late answer never went out
    assert not held.stopped.is_set()


async def test_handoff_with_a_summary_is_sent() -> None:
    agent = Agent("sdk-agent")

    @agent.on_message
    async def answer(turn: Turn) -> Handoff:
        return Handoff(reason="billing", content="One moment.", summary="Wants a refund.")

    async with agent.serving() as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, user_message("t_1"))
        frame = await recv(ws)
    assert (frame["type"], frame["reason"], frame["content"], frame["summary"]) == (
        "handoff",
        "billing",
        "One moment.",
        "Wants a refund.",
    )


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> httpx.Response:
    raw = httpx.Request("POST", url, json=body).content
    headers = {SIGNATURE_HEADER: sign(SECRET, raw), "Content-Type": "application/json"}
    return await client.post(url, content=raw, headers=headers, timeout=10)


async def test_a_webhook_cancel_stops_the_handler_and_the_turns_request_ends_empty() -> None:
    agent = Agent("sdk-agent")
    held = agent.on_message(Held())
    async with serve_app(agent.webhook_app(SECRET)) as base, httpx.AsyncClient() as client:
        url = base + "/"
        turn = asyncio.create_task(_post(client, url, user_message("t_1")))
        async with asyncio.timeout(5):
            await held.started.wait()
        assert (await _post(client, url, cancel("t_1"))).status_code == 204
        async with asyncio.timeout(5):
            answered = await turn
            await held.stopped.wait()
        assert (answered.status_code, answered.content) == (204, b"")
        assert held.turns[0].cancelled
        # not kept: the same turn asked again runs again
        held.release.set()
        again = await _post(client, url, user_message("t_1"))
    assert again.json()["content"] == "an answer the bridge no longer wants"
    assert len(held.turns) == 2
