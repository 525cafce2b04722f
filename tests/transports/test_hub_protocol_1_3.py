"""Protocol 1.3 over real sockets: negotiation, live frames and notices, agent_handoff, rich
data, feature-gated events, and a 1.0 agent that keeps working unchanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from chatbridge.metrics import Metrics
from chatbridge.protocol import AGENT_TYPES, BRIDGE_TYPES, FEATURE_OF
from chatbridge.transports.hub import AgentHub
from tests.transports.hub_helpers import (
    FakeAgent,
    Recorder,
    recv_frame,
    round_trip,
    turn_request,
    withheld,
)

# What a 1.0 agent knows: anything else reaching it would be a frame it cannot read.
V1_BRIDGE_TYPES = {
    "user_message", "ping", "pong", "hello_ok", "hello_error", "error_message",
    "conversation_event",
}  # fmt: skip

GATED_EVENTS: list[dict[str, Any]] = [
    {"type": "session_created", "session_id": "s_1", "channel": "webchat", "data": {}},
    {"type": "session_updated", "session_id": "s_1", "conversation_id": "c_1", "data": {}},
    {"type": "session_expired", "session_id": "s_1", "reason": "idle", "data": {}},
    {"type": "system_message", "conversation_id": "c_1", "content": "Operator joined"},
    {"type": "warning_message", "conversation_id": "c_1", "content": "Visitor went offline"},
]
MARKER = {"type": "conversation_event", "event": "closed", "conversation_id": "c_1"}


@asynccontextmanager
async def dialed_in(url: str, **hello: Any) -> AsyncIterator[tuple[ClientConnection, dict]]:
    """A raw agent connection past its handshake, and the bridge's ``hello_ok``."""
    frame = {"type": "hello", "agent_id": "agent1", "token": "secret", **hello}
    async with connect(url) as ws:
        await ws.send(json.dumps(frame))
        answer = await recv_frame(ws)
        assert answer["type"] == "hello_ok", answer
        yield ws, answer


async def next_turn(ws: ClientConnection) -> dict[str, Any]:
    frame = await recv_frame(ws)
    assert frame["type"] == "user_message", frame
    return frame


async def events_received(ws: ClientConnection, hub: AgentHub, agent_id: str) -> list[str]:
    """Send every gated event, then an ungated marker; the types the agent got, in order
    (a socket keeps order: whatever was sent before the marker arrives before it)."""
    for event in GATED_EVENTS:
        await hub.send_event(agent_id, event)
    assert await hub.send_event(agent_id, MARKER)
    types = []
    while True:
        frame = await recv_frame(ws)
        types.append(frame["type"])
        if frame["type"] == "conversation_event":
            return types


# -- negotiation --------------------------------------------------------------------------------


async def test_hello_ok_names_the_negotiated_version_and_features(
    hub: AgentHub, bridge_url: str
) -> None:
    async with dialed_in(
        bridge_url, version="1.3", features=["sessions", "status", "telepathy"]
    ) as (_, answer):
        assert (answer["version"], answer["features"]) == ("1.3", ["sessions", "status"])
        transport = hub.transport("agent1")
        assert transport is not None
        assert transport.features == {"sessions", "status"}
    async with dialed_in(bridge_url, version="9.1", capabilities=["notices"]) as (_, answer):
        assert (answer["version"], answer["features"]) == ("1.3", ["notices"])
    async with dialed_in(bridge_url) as (_, answer):
        assert (answer["version"], answer["features"]) == ("1.2", [])
        assert hub.transport("agent1").features == frozenset()  # type: ignore[union-attr]


async def test_an_agent_announcing_nothing_never_receives_gated_frames(
    hub: AgentHub, bridge_url: str, metrics: Metrics
) -> None:
    async with dialed_in(bridge_url, version="1.3") as (ws, _):
        for event in GATED_EVENTS:
            assert await hub.send_event("agent1", event) is False
            assert withheld(metrics, "agent1", event["type"]) == 1
        assert await events_received(ws, hub, "agent1") == ["conversation_event"]


async def test_an_agent_gets_exactly_the_features_it_announced(
    hub: AgentHub, bridge_url: str
) -> None:
    async with dialed_in(bridge_url, version="1.3", features=["sessions"]) as (ws, _):
        got = await events_received(ws, hub, "agent1")
        assert got == ["session_created", "session_updated", "session_expired", MARKER["type"]]
    async with dialed_in(bridge_url, version="1.3", features=["notices"]) as (ws, _):
        got = await events_received(ws, hub, "agent1")
        assert got == ["system_message", "warning_message", MARKER["type"]]


async def test_a_dial_out_agent_announces_its_features_in_its_config(
    hub: AgentHub, fake_agent: FakeAgent, metrics: Metrics
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    assert await hub.wait_connected("a1", 5)
    assert await events_received(ws, hub, "a1") == [MARKER["type"]]
    assert withheld(metrics, "a1", "session_created") == 1

    hub.configure("a1", "ws-dial-out", fake_agent.url, {"features": ["sessions", "notices"]})
    got = await events_received(ws, hub, "a1")  # new options alone keep the connection
    assert got == [event["type"] for event in GATED_EVENTS] + [MARKER["type"]]
    hub.configure("a1", "ws-dial-out", fake_agent.url, {"features": "sessions"})  # not a list
    assert await hub.send_event("a1", GATED_EVENTS[0]) is False


# -- frames from the agent -------------------------------------------------------------------


async def test_live_frames_are_placed_in_the_turns_conversation(
    hub: AgentHub, bridge_url: str, recorder: Recorder
) -> None:
    async with dialed_in(bridge_url, version="1.3", features=["status", "progress"]) as (ws, _):
        task = asyncio.create_task(
            hub.run_turn(turn_request("agent1", "t_1", conversation_id="c_9"))
        )
        await next_turn(ws)
        for frame in (
            {"type": "status_update", "message_id": "t_1", "content": "Searching your orders…"},
            {"type": "progress_update", "message_id": "t_1", "progress": 0.5},
            {"type": "file_processing", "message_id": "t_1", "file_id": "f_1",
             "content": "Reading"},
            {"type": "file_complete", "message_id": "t_1", "file_id": "f_1"},
            {"type": "file_error", "message_id": "t_1", "file_id": "f_2", "error": "encrypted"},
            # the turn's conversation wins over one the agent names
            {"type": "status_update", "message_id": "t_1", "conversation_id": "c_x",
             "content": "x"},
            # outside a turn: a conversation is enough; neither: nowhere to show it
            {"type": "status_update", "conversation_id": "c_5", "content": "Still here"},
            {"type": "status_update", "content": "lost"},
            {"type": "progress_update", "message_id": "t_unknown", "progress": 0.1},
        ):  # fmt: skip
            await ws.send(json.dumps(frame))
        await round_trip(ws)
        live = [(agent, f["type"], f["conversation_id"]) for agent, f in recorder.live]
        assert live == [
            ("agent1", "status_update", "c_9"),
            ("agent1", "progress_update", "c_9"),
            ("agent1", "file_processing", "c_9"),
            ("agent1", "file_complete", "c_9"),
            ("agent1", "file_error", "c_9"),
            ("agent1", "status_update", "c_9"),
            ("agent1", "status_update", "c_5"),
        ]
        assert recorder.live[0][1] == {
            "type": "status_update",
            "message_id": "t_1",
            "conversation_id": "c_9",
            "content": "Searching your orders…",
        }
        assert recorder.live[4][1]["error"] == "encrypted"
        assert not task.done()  # none of them answers the turn
        cards = {"kind": "cards", "cards": [{"title": "Order 42", "url": "https://shop/42"}]}
        await ws.send(
            json.dumps({"type": "agent_message", "message_id": "t_1", "content": "Found it",
                        "data": cards})
        )  # fmt: skip
        outcome = await task
        assert (outcome.kind, outcome.content) == ("reply", "Found it")
        assert outcome.extras()["data"]["cards"][0]["title"] == "Order 42"
        assert recorder.proactive == []


async def test_notices_go_to_on_notice(hub: AgentHub, bridge_url: str, recorder: Recorder) -> None:
    async with dialed_in(bridge_url, version="1.3") as (ws, _):
        await ws.send(
            json.dumps({"type": "warning_message", "conversation_id": "c_1",
                        "content": "Prices may have changed"})
        )  # fmt: skip
        await ws.send(json.dumps({"type": "system_message", "content": "no conversation"}))
        error = await recv_frame(ws)
        assert (error["type"], error["error_code"]) == ("error_message", "invalid_message")
        await round_trip(ws)
    assert recorder.notices == [
        (
            "agent1",
            {"type": "warning_message", "conversation_id": "c_1",
             "content": "Prices may have changed"},
        )
    ]  # fmt: skip


async def test_agent_handoff_ends_the_turn_and_outside_a_turn_is_proactive(
    hub: AgentHub, bridge_url: str, recorder: Recorder
) -> None:
    async with dialed_in(bridge_url, version="1.3", features=["agent_handoff"]) as (ws, _):
        task = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_1")))
        await next_turn(ws)
        await ws.send(
            json.dumps({"type": "agent_handoff", "message_id": "t_1", "to_role": "billing",
                        "reason": "refund", "content": "A colleague takes over."})
        )  # fmt: skip
        outcome = await task
        assert (outcome.kind, outcome.to_role, outcome.to_agent) == (
            "agent_handoff",
            "billing",
            None,
        )
        assert (outcome.reason, outcome.content) == ("refund", "A colleague takes over.")

        await ws.send(
            json.dumps({"type": "agent_handoff", "conversation_id": "c_3", "to_agent": "b"})
        )
        await ws.send(json.dumps({"type": "agent_handoff", "to_agent": "b"}))  # where?
        error = await recv_frame(ws)
        assert (error["error_code"], error["error_details"]["message"]) == (
            "invalid_message",
            "agent_handoff needs message_id or conversation_id",
        )
        await ws.send(json.dumps({"type": "agent_handoff", "message_id": "t_2", "to_agent": "b",
                                  "to_role": "billing"}))  # fmt: skip
        error = await recv_frame(ws)
        assert error["error_code"] == "invalid_message"
        await round_trip(ws)
    assert recorder.proactive == [
        ("agent1", {"type": "agent_handoff", "conversation_id": "c_3", "to_agent": "b"})
    ]


async def test_unknown_type_gets_error_message_and_the_connection_keeps_working(
    hub: AgentHub, bridge_url: str
) -> None:
    async with dialed_in(bridge_url, version="1.3") as (ws, _):
        await ws.send(json.dumps({"type": "hologram", "message_id": "t_1", "content": "hi"}))
        error = await recv_frame(ws)
        assert (error["type"], error["error_code"]) == ("error_message", "unknown_type")
        assert error["error_details"]["errors"] == {"type": "hologram"}
        task = asyncio.create_task(hub.run_turn(turn_request("agent1", "t_2")))
        await next_turn(ws)
        await ws.send(json.dumps({"type": "agent_message", "message_id": "t_2", "content": "ok"}))
        assert (await task).content == "ok"


# -- an agent from before 1.3 -------------------------------------------------------------------


async def test_a_1_0_agent_keeps_working_and_never_sees_a_new_frame_type(
    hub: AgentHub, bridge_url: str
) -> None:
    """A raw client speaking only 1.0: hello without version or features, answers turns with
    1.0 frames, and reads every frame the bridge sends it with a 1.0 list of types."""
    seen: list[str] = []
    async with dialed_in(bridge_url, protocol="chatbridge/1", capabilities=["streaming"]) as (
        ws,
        answer,
    ):
        seen.append(answer["type"])
        for n in range(2):
            task = asyncio.create_task(
                hub.run_turn(turn_request("agent1", f"t_{n}", content=f"question {n}"))
            )
            for event in GATED_EVENTS:  # the bridge's new frames, between its turns
                assert await hub.send_event("agent1", event) is False
            turn = await next_turn(ws)
            seen.append(turn["type"])
            assert (turn["message_id"], turn["content"]) == (f"t_{n}", f"question {n}")
            await ws.send(
                json.dumps({"type": "agent_streaming", "message_id": f"t_{n}", "stream_index": 0,
                            "content": "Answer "})
            )  # fmt: skip
            await ws.send(json.dumps({"type": "agent_complete", "message_id": f"t_{n}"}))
            outcome = await task
            assert (outcome.kind, outcome.content, outcome.data) == ("reply", "Answer ", None)
        seen += await events_received(ws, hub, "agent1")
        await ws.send(json.dumps({"type": "ping"}))
        seen.append((await recv_frame(ws, skip=()))["type"])
    assert set(seen) <= V1_BRIDGE_TYPES, seen
    assert set(FEATURE_OF) <= BRIDGE_TYPES - V1_BRIDGE_TYPES
    assert "agent_handoff" in AGENT_TYPES
