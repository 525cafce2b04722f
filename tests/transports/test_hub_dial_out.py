"""AgentHub dialing out: to the SDK agent (end to end) and to a scripted fake agent."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.exceptions import ConnectionClosed

from chatbridge.agent import Agent, Turn
from chatbridge.errors import AgentTimeout, AgentUnavailable, ConfigError, TurnCancelled
from chatbridge.metrics import Metrics
from chatbridge.protocol import error_frame
from chatbridge.testing.mock_agent import build_mock_agent
from chatbridge.transports.hub import AgentHub
from tests.transports.hub_helpers import (
    FRAME_LIMIT,
    FakeAgent,
    Recorder,
    connected_gauge,
    dropped,
    recv_frame,
    round_trip,
    turn_request,
)


@asynccontextmanager
async def dialed(hub: AgentHub, agent: Agent, agent_id: str = "a1") -> AsyncIterator[None]:
    """Serve ``agent`` on a free port and have the hub dial it."""
    async with agent.serving("127.0.0.1", 0) as port:
        hub.configure(agent_id, "ws-dial-out", f"ws://127.0.0.1:{port}")
        yield
        hub.remove(agent_id)


# -- with the SDK agent -------------------------------------------------------------------------


async def test_echo_round_trip(hub: AgentHub, metrics: Metrics) -> None:
    async with dialed(hub, build_mock_agent("echo")):
        outcome = await hub.run_turn(turn_request("a1", content="Hello there"))
        assert outcome.kind == "reply"
        assert outcome.content == "Echo: Hello there"
        assert outcome.metadata["agent_id"] == "mock-agent"
        assert hub.is_connected("a1")
        [row] = hub.status()
        assert (row.agent_id, row.transport, row.connected) == ("a1", "ws-dial-out", True)
        assert row.turns_answered == 1 and row.in_flight == 0
        assert row.latency_ms_p50 is not None and row.latency_ms_p95 is not None
        assert connected_gauge(metrics, "a1") == 1


async def test_streaming_assembles_chunks_and_reports_them(
    hub: AgentHub, recorder: Recorder
) -> None:
    async with dialed(hub, build_mock_agent("stream")):
        outcome = await hub.run_turn(turn_request("a1", "t_s", content="one two three"))
    assert outcome.kind == "reply"
    assert outcome.content == "Echo: one two three"
    assert outcome.streamed_chunks == 4
    assert [(key, index) for key, _, index, _ in recorder.chunks] == [
        ("t_s", 0), ("t_s", 1), ("t_s", 2), ("t_s", 3),
    ]  # fmt: skip
    assert "".join(text for *_, text in recorder.chunks) == "Echo: one two three"


async def test_error_message_becomes_error_outcome(hub: AgentHub) -> None:
    async with dialed(hub, build_mock_agent("error")):
        outcome = await hub.run_turn(turn_request("a1"))
    assert outcome.kind == "error"
    assert outcome.error_code == "mock_error"


async def test_handoff(hub: AgentHub) -> None:
    async with dialed(hub, build_mock_agent("handoff")):
        outcome = await hub.run_turn(turn_request("a1", content="I want a human"))
    assert outcome.kind == "handoff"
    assert outcome.reason == "customer asked for a human"
    assert outcome.content == "Let me connect you with a human agent."


async def test_no_reply(hub: AgentHub) -> None:
    agent = Agent("quiet")

    @agent.on_message
    async def ignore(turn: Turn) -> None:
        return None

    async with dialed(hub, agent):
        outcome = await hub.run_turn(turn_request("a1"))
    assert outcome.kind == "no_reply"


async def test_unanswered_turn_times_out(hub: AgentHub) -> None:
    agent = Agent("stuck")
    never = asyncio.Event()

    @agent.on_message
    async def wait_forever(turn: Turn) -> str:
        await never.wait()
        return "too late"

    async with dialed(hub, agent):
        assert await hub.wait_connected("a1", 5)
        with pytest.raises(AgentTimeout):
            await hub.run_turn(turn_request("a1", timeout=0.3))
        assert hub.status()[0].in_flight == 0


async def test_unreachable_agent_is_unavailable_at_deadline(hub: AgentHub) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub.configure("a1", "ws-dial-out", f"ws://127.0.0.1:{port}")
    with pytest.raises(AgentUnavailable):
        await hub.run_turn(turn_request("a1", timeout=0.3))
    with pytest.raises(AgentUnavailable):
        await hub.run_turn(turn_request("never-configured", "t_2", timeout=0.1))
    assert not hub.is_connected("a1")


async def test_disconnect_mid_turn_resends_and_answers_once(hub: AgentHub) -> None:
    agent = Agent("flaky")
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    @agent.on_message
    async def slow(turn: Turn) -> str:
        calls.append(turn.id)
        started.set()
        await release.wait()
        return f"done: {turn.content}"

    async with dialed(hub, agent):
        task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_flaky", content="x")))
        await started.wait()
        await agent.close_connections()
        release.set()
        outcome = await task
    assert outcome.content == "done: x"
    assert calls == ["t_flaky"]


def test_configure_rejects_bad_settings(hub: AgentHub) -> None:
    with pytest.raises(ConfigError):
        hub.configure("a1", "ws-dial-out", None)
    with pytest.raises(ConfigError):
        hub.configure("a1", "ws-dial-out", "http://example.invalid")
    with pytest.raises(ConfigError):
        hub.configure("a1", "http-webhook", None)  # type: ignore[arg-type]


# -- with a scripted fake agent -----------------------------------------------------------------


async def test_turn_is_resent_with_same_id_after_reconnect(
    hub: AgentHub, fake_agent: FakeAgent
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_r", seq=7)))
    first = await fake_agent.next_connection()
    sent = await recv_frame(first)
    assert (sent["type"], sent["message_id"], sent["seq"]) == ("user_message", "t_r", 7)
    await first.close()

    second = await fake_agent.next_connection()
    again = await recv_frame(second)
    assert again == sent
    await second.send(json.dumps({"type": "agent_message", "message_id": "t_r", "content": "ok"}))
    assert (await task).content == "ok"


async def test_unknown_type_and_bad_json_get_errors_and_connection_stays(
    hub: AgentHub, fake_agent: FakeAgent
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    await ws.send(json.dumps({"type": "telepathy"}))
    error = await recv_frame(ws)
    assert (error["type"], error["error_code"]) == ("error_message", "unknown_type")
    await ws.send("{this is not json")
    error = await recv_frame(ws)
    assert (error["type"], error["error_code"]) == ("error_message", "invalid_json")
    await ws.send(json.dumps({"type": "agent_streaming", "message_id": "t"}))
    error = await recv_frame(ws)
    assert error["error_code"] == "invalid_message"
    await round_trip(ws)  # still open and answering
    assert hub.is_connected("a1")


async def test_oversized_frame_closes_with_1009(hub: AgentHub, fake_agent: FakeAgent) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    await ws.send(json.dumps({"type": "typing", "conversation_id": "x" * FRAME_LIMIT}))
    with pytest.raises(ConnectionClosed):
        await recv_frame(ws)
    assert ws.close_code == 1009
    await fake_agent.next_connection()  # and the hub comes back


async def test_late_and_duplicate_replies_are_dropped_and_counted(
    hub: AgentHub, fake_agent: FakeAgent, metrics: Metrics
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_d")))
    ws = await fake_agent.next_connection()
    await recv_frame(ws)
    reply = {"type": "agent_message", "message_id": "t_d", "content": "first"}
    await ws.send(json.dumps(reply))
    await ws.send(json.dumps({**reply, "content": "second"}))
    await ws.send(json.dumps({"type": "no_reply", "message_id": "t_unknown"}))
    await round_trip(ws)
    assert (await task).content == "first"
    assert dropped(metrics, "a1") == 2


async def test_proactive_typing_and_ack(
    hub: AgentHub, fake_agent: FakeAgent, recorder: Recorder
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    await ws.send(json.dumps({"type": "typing", "conversation_id": "c_9", "on": True}))
    await ws.send(json.dumps({"type": "agent_message", "conversation_id": "c_9", "content": "Hi"}))
    await ws.send(json.dumps({"type": "handoff", "conversation_id": "c_9", "reason": "vip"}))
    await ws.send(json.dumps({"type": "typing", "conversation_id": "c_9", "on": False}))
    await ws.send(json.dumps({"type": "ack", "seq": 3}))
    await ws.send(json.dumps({"type": "agent_message", "content": "to nowhere"}))
    error = await recv_frame(ws)
    assert error["error_code"] == "invalid_message"
    assert recorder.typing == [("a1", "c_9", True), ("a1", "c_9", False)]
    assert [(aid, f["type"], f["conversation_id"]) for aid, f in recorder.proactive] == [
        ("a1", "agent_message", "c_9"),
        ("a1", "handoff", "c_9"),
    ]
    assert recorder.proactive[0][1]["content"] == "Hi"


async def test_stream_gap_is_an_error_and_repeated_chunks_are_ignored(
    hub: AgentHub, fake_agent: FakeAgent, recorder: Recorder
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_g")))
    ws = await fake_agent.next_connection()
    await recv_frame(ws)
    for index in (0, 0, 2):
        chunk = {"type": "agent_streaming", "message_id": "t_g", "stream_index": index}
        await ws.send(json.dumps({**chunk, "content": f"c{index}"}))
    await ws.send(json.dumps({"type": "agent_complete", "message_id": "t_g"}))
    outcome = await task
    assert (outcome.kind, outcome.error_code) == ("error", "stream_gap")
    assert outcome.error_details == {"missing": [1]}
    assert [index for _, _, index, _ in recorder.chunks] == [0, 2]


async def test_agent_complete_with_content_wins_over_chunks(
    hub: AgentHub, fake_agent: FakeAgent
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_c")))
    ws = await fake_agent.next_connection()
    await recv_frame(ws)
    chunk = {"type": "agent_streaming", "message_id": "t_c", "stream_index": 1, "content": "b"}
    await ws.send(json.dumps(chunk))
    done = {"type": "agent_complete", "message_id": "t_c", "content": "full text"}
    await ws.send(json.dumps(done))
    assert (await task).content == "full text"


async def test_same_turn_key_is_sent_once(hub: AgentHub, fake_agent: FakeAgent) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    req = turn_request("a1", "t_once")
    first = asyncio.create_task(hub.run_turn(req))
    second = asyncio.create_task(hub.run_turn(req))
    ws = await fake_agent.next_connection()
    assert (await recv_frame(ws))["message_id"] == "t_once"
    await round_trip(ws)  # a second copy would have arrived before the pong
    await ws.send(json.dumps({"type": "agent_message", "message_id": "t_once", "content": "1"}))
    assert (await first).content == (await second).content == "1"


async def test_turns_of_one_conversation_go_one_at_a_time(
    hub: AgentHub, fake_agent: FakeAgent
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    one = asyncio.create_task(hub.run_turn(turn_request("a1", "t_1", seq=1)))
    ws = await fake_agent.next_connection()
    assert (await recv_frame(ws))["message_id"] == "t_1"
    two = asyncio.create_task(hub.run_turn(turn_request("a1", "t_2", seq=2)))
    other = asyncio.create_task(
        hub.run_turn(turn_request("a1", "t_3", seq=3, conversation_id="c_other"))
    )
    assert (await recv_frame(ws))["message_id"] == "t_3"  # other conversations are not held
    await round_trip(ws)
    assert hub.status()[0].in_flight == 3
    await ws.send(json.dumps({"type": "no_reply", "message_id": "t_1"}))
    assert (await recv_frame(ws))["message_id"] == "t_2"
    await ws.send(json.dumps({"type": "no_reply", "message_id": "t_2"}))
    await ws.send(json.dumps({"type": "no_reply", "message_id": "t_3"}))
    outcomes = await asyncio.gather(one, two, other)
    assert [o.kind for o in outcomes] == ["no_reply"] * 3


async def test_silent_connection_is_dropped_and_redialed(
    hub: AgentHub, fake_agent: FakeAgent
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    ping = await recv_frame(ws, skip=())
    assert ping["type"] == "ping"
    await ws.wait_closed()  # we never answer: 3 silent heartbeats later the hub gives up
    assert ws.close_code == 1011
    await fake_agent.next_connection()


async def test_send_event_and_remove(
    hub: AgentHub, fake_agent: FakeAgent, metrics: Metrics
) -> None:
    assert not await hub.send_event("a1", {"type": "conversation_event"})
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    assert await hub.wait_connected("a1", 5)
    event = {"type": "conversation_event", "conversation_id": "c_1", "event": "closed"}
    assert await hub.send_event("a1", event)
    ws = await fake_agent.next_connection()
    assert await recv_frame(ws) == event
    pending = asyncio.create_task(hub.run_turn(turn_request("a1", "t_rm")))
    await recv_frame(ws)
    hub.remove("a1")
    with pytest.raises(AgentUnavailable):
        await pending
    await ws.wait_closed()
    assert hub.status() == []
    assert connected_gauge(metrics, "a1") == 0


async def test_stop_fails_waiting_turns(hub: AgentHub) -> None:
    pending = asyncio.create_task(hub.run_turn(turn_request("nobody", timeout=30)))
    await hub.stop()  # whether the turn was already waiting or comes after: it fails at once
    with pytest.raises(AgentUnavailable):
        await pending


# -- cancel (protocol 1.1) ----------------------------------------------------------------------


async def test_cancel_turn_ends_the_wait_sends_cancel_and_drops_the_late_answer(
    hub: AgentHub, fake_agent: FakeAgent, metrics: Metrics
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_c", timeout=30)))
    assert (await recv_frame(ws))["message_id"] == "t_c"
    hub.cancel_turn("a1", "t_c", "c_1")
    with pytest.raises(TurnCancelled):
        async with asyncio.timeout(5):
            await task
    frame = await recv_frame(ws)
    frame.pop("timestamp")
    assert frame == {
        "type": "cancel",
        "message_id": "t_c",
        "conversation_id": "c_1",
        "reason": "superseded",
    }
    await ws.send(json.dumps({"type": "agent_message", "message_id": "t_c", "content": "late"}))
    await round_trip(ws)
    assert dropped(metrics, "a1") == 1
    # an agent older than 1.1 answering ``cancel`` with unknown_type is no trouble
    old_agent = {"message": "unknown message type 'cancel'"}
    await ws.send(json.dumps(error_frame("unknown_type", details=old_agent)))
    await round_trip(ws)
    assert hub.is_connected("a1")


async def test_cancelling_a_turn_queued_behind_its_conversation_ends_it_and_frees_the_slot(
    hub: AgentHub, fake_agent: FakeAgent
) -> None:
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    first = asyncio.create_task(hub.run_turn(turn_request("a1", "t_1", seq=1, timeout=30)))
    assert (await recv_frame(ws))["message_id"] == "t_1"
    queued = asyncio.create_task(hub.run_turn(turn_request("a1", "t_2", seq=2, timeout=30)))
    newest = asyncio.create_task(hub.run_turn(turn_request("a1", "t_3", seq=3, timeout=30)))
    await round_trip(ws)  # both wait for the slot: nothing was sent for them
    hub.cancel_turn("a1", "t_2", "c_1")  # never sent: no frame to the agent
    with pytest.raises(TurnCancelled):
        async with asyncio.timeout(5):
            await queued
    hub.cancel_turn("a1", "t_1", "c_1")  # superseded: its slot goes to t_3 at once
    with pytest.raises(TurnCancelled):
        async with asyncio.timeout(5):
            await first
    assert (await recv_frame(ws))["type"] == "cancel"
    sent = await recv_frame(ws)
    assert (sent["type"], sent["message_id"]) == ("user_message", "t_3")
    await ws.send(json.dumps({"type": "agent_message", "message_id": "t_3", "content": "all"}))
    assert (await newest).content == "all"


async def test_cancel_turn_for_an_unknown_agent_or_turn_is_a_no_op(
    hub: AgentHub, fake_agent: FakeAgent
) -> None:
    hub.cancel_turn("nobody", "t_1", "c_1")
    hub.configure("a1", "ws-dial-out", fake_agent.url)
    ws = await fake_agent.next_connection()
    hub.cancel_turn("a1", "t_404", "c_1")
    task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_1")))
    assert (await recv_frame(ws))["type"] == "user_message"  # no cancel came first
    await ws.send(json.dumps({"type": "agent_message", "message_id": "t_1", "content": "ok"}))
    assert (await task).content == "ok"


async def test_cancel_reaches_the_sdk_agent_whose_handler_stops(hub: AgentHub) -> None:
    agent = Agent("sdk")
    started, stopped = asyncio.Event(), asyncio.Event()
    seen: list[Turn] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        seen.append(turn)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "never"

    async with dialed(hub, agent):
        task = asyncio.create_task(hub.run_turn(turn_request("a1", "t_x", timeout=30)))
        async with asyncio.timeout(5):
            await started.wait()
        hub.cancel_turn("a1", "t_x", "c_1")
        with pytest.raises(TurnCancelled):
            await task
        async with asyncio.timeout(5):
            await stopped.wait()
    assert seen[0].cancelled and seen[0].cancel_reason == "superseded"
