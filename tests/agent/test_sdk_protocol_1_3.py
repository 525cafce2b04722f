"""Protocol 1.3 in the SDK against the bridge's real transports: hello negotiation, turn
files and addressed agent, live status/progress/file frames and notices, rich data, HandTo,
session and notice handlers — dialing in, dialed, as an http-webhook and pulling."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from chatbridge.agent import Agent, Answer, FileRef, HandTo, Notice, Session, Turn
from chatbridge.agent.live import SDK_FEATURES
from chatbridge.agent.pull import PullClient, PullConfig
from chatbridge.config import Settings
from chatbridge.metrics import Metrics
from chatbridge.protocol import UserMessage
from chatbridge.signing import SIGNATURE_HEADER, sign
from chatbridge.testing.servers import serve_app as serve_http
from chatbridge.transports.base import TurnRequest
from chatbridge.transports.hub import AgentHub
from chatbridge.transports.pull import PullBroker, PullPolicy
from tests.agent.sdk_helpers import FakeBridge, recv, round_trip, send
from tests.transports.hub_helpers import Recorder, serve_app, verify_token

SECRET = "sdk-1-3-secret"
FILE = {
    "file_id": "f_1",
    "file_name": "invoice.pdf",
    "file_url": "http://bridge/api/files/f_1?exp=1&sig=abc",
    "mime": "application/pdf",
    "size": 1234,
}
CARDS = {"kind": "cards", "cards": [{"title": "Order 42", "subtitle": "shipped"}]}


def turn_request(
    agent_id: str, key: str = "t_1", *, conversation_id: str = "c_1", content: str = "hi"
) -> TurnRequest:
    frame = UserMessage(
        message_id=key,
        seq=1,
        conversation_id=conversation_id,
        content=content,
        files=[FileRef.model_validate(FILE)],
        agent=agent_id,
        role="billing",
    ).model_dump(mode="json", exclude_none=True)
    return TurnRequest(key, 1, agent_id, conversation_id, frame, time.time() + 5)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def hub(recorder: Recorder) -> AsyncIterator[AgentHub]:
    settings = Settings(_env_file=None, heartbeat_interval=0.5)  # type: ignore[call-arg]
    hub = AgentHub(
        settings,
        Metrics(),
        verify_token=verify_token,
        on_proactive=recorder.on_proactive,
        on_typing=recorder.on_typing,
        on_chunk=recorder.on_chunk,
        on_live=recorder.on_live,
        on_notice=recorder.on_notice,
    )
    await hub.start()
    yield hub
    await hub.stop()


@asynccontextmanager
async def dialing_in(hub: AgentHub, agent: Agent) -> AsyncIterator[None]:
    """``agent`` dialed in to ``hub`` (served by uvicorn) for the block."""
    app = FastAPI()

    @app.websocket("/api/ws/agent")
    async def agent_socket(websocket: WebSocket) -> None:
        await hub.handle_dial_in(websocket)

    async with serve_app(app) as port:
        stop = asyncio.Event()
        task = asyncio.create_task(
            agent.dial_in(f"ws://127.0.0.1:{port}/api/ws/agent", "secret", stop=stop)
        )
        try:
            assert await hub.wait_connected(agent.agent_id, 5)
            yield
        finally:
            stop.set()
            await task
            await hub.stop()


class Working:
    """A handler that reports as it works, then answers with cards; records its turns."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.sent: list[bool] = []

    async def __call__(self, turn: Turn) -> Any:
        self.turns.append(turn)
        if turn.content == "hand over":
            return HandTo(role="specialist", reason="tax question", content="One moment")
        for step in (
            turn.status("Reading your invoice…"),
            turn.file_processing("f_1", "Reading invoice.pdf"),
            turn.progress(0.5),
            turn.file_complete("f_1", "3 pages"),
            turn.file_error("f_2", "encrypted"),
            turn.notice("Prices may have changed", level="warning"),
        ):
            self.sent.append(await step)
        return Answer("Here is your order", data=CARDS)


LIVE_SEEN = [
    ("status_update", "Reading your invoice…"),
    ("file_processing", "Reading invoice.pdf"),
    ("progress_update", None),
    ("file_complete", "3 pages"),
    ("file_error", None),
]


def live_seen(recorder: Recorder, conversation_id: str = "c_7") -> list[tuple[str, Any]]:
    assert {f["conversation_id"] for _, f in recorder.live} == {conversation_id}
    return [(f["type"], f.get("content")) for _, f in recorder.live]


def check_answer(outcome: Any) -> None:
    assert (outcome.kind, outcome.content) == ("reply", "Here is your order")
    assert outcome.data == {"kind": "cards", "cards": [{**CARDS["cards"][0], "buttons": []}]}


# -- dialing in ----------------------------------------------------------------------------------


async def test_the_sdk_announces_its_features_and_the_bridge_agrees(hub: AgentHub) -> None:
    plain = Agent("agent1")
    assert set(plain.features) == SDK_FEATURES  # no session or notice handler: not asked for
    async with dialing_in(hub, plain):
        transport = hub.transport("agent1")
        assert transport is not None and transport.features == SDK_FEATURES
        event = {"type": "session_created", "session_id": "s_1", "data": {}}
        assert await hub.send_event("agent1", event) is False


async def test_session_and_notice_frames_reach_their_handlers(hub: AgentHub) -> None:
    agent = Agent("agent1")
    sessions: asyncio.Queue[Session] = asyncio.Queue()
    notices: asyncio.Queue[Notice] = asyncio.Queue()
    agent.on_session(sessions.put)
    agent.on_notice(notices.put)
    assert {"sessions", "notices"} <= set(agent.features)
    async with dialing_in(hub, agent):
        expired = {"type": "session_expired", "session_id": "s_1", "conversation_id": "c_1",
                   "reason": "idle", "data": {"after_seconds": 1800}}  # fmt: skip
        assert await hub.send_event("agent1", expired)
        notice = {"type": "warning_message", "conversation_id": "c_1", "content": "Offline"}
        assert await hub.send_event("agent1", notice)
        async with asyncio.timeout(5):
            session, got = await sessions.get(), await notices.get()
    assert (session.kind, session.session_id, session.conversation_id, session.reason) == (
        "expired",
        "s_1",
        "c_1",
        "idle",
    )
    assert (session.channel, session.data) == ("webchat", {"after_seconds": 1800})
    assert (got.level, got.conversation_id, got.content) == ("warning", "c_1", "Offline")


async def test_a_dialed_in_turn_shows_its_work_live_and_answers_with_cards(
    hub: AgentHub, recorder: Recorder
) -> None:
    agent = Agent("agent1")
    handler = agent.on_message(Working())
    async with dialing_in(hub, agent):
        outcome = await hub.run_turn(turn_request("agent1", conversation_id="c_7"))
    check_answer(outcome)
    assert handler.sent == [True] * 6
    [turn] = handler.turns
    assert turn.files == [FileRef.model_validate(FILE)]
    assert turn.files[0].file_url == FILE["file_url"]
    assert (turn.agent, turn.role) == ("agent1", "billing")
    # frames on one socket arrive in order: all of them before the answer
    assert live_seen(recorder) == LIVE_SEEN
    assert recorder.live[2][1]["progress"] == 0.5
    assert recorder.live[4][1]["error"] == "encrypted"
    [(agent_id, notice)] = recorder.notices
    assert (agent_id, notice["type"], notice["conversation_id"], notice["content"]) == (
        "agent1",
        "warning_message",
        "c_7",
        "Prices may have changed",
    )


async def test_hand_to_another_agent_ends_the_turn(hub: AgentHub) -> None:
    agent = Agent("agent1")
    agent.on_message(Working())
    async with dialing_in(hub, agent):
        outcome = await hub.run_turn(turn_request("agent1", content="hand over"))
    assert (outcome.kind, outcome.to_role, outcome.to_agent) == (
        "agent_handoff",
        "specialist",
        None,
    )
    assert (outcome.reason, outcome.content) == ("tax question", "One moment")


async def test_a_bridge_before_1_3_gets_no_live_frames() -> None:
    """Its hello_ok names no version: turn.status() says False and sends nothing, so the
    old bridge never has to answer an unknown type."""
    agent = Agent("agent1")
    handler = agent.on_message(Working())
    fake = FakeBridge()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        stop = asyncio.Event()
        task = asyncio.create_task(agent.dial_in(f"ws://127.0.0.1:{port}", "tok", stop=stop))
        ws, hello = await fake.accept()
        assert (hello["version"], set(hello["features"])) == ("1.3", SDK_FEATURES)
        await send(ws, {"type": "user_message", "message_id": "t_1", "conversation_id": "c_1",
                        "content": "hi"})  # fmt: skip
        answer = await recv(ws)
        assert answer["type"] == "agent_message" and answer["data"]["kind"] == "cards"
        assert handler.sent == [False] * 6
        stop.set()
        await task


# -- dialed by the bridge ------------------------------------------------------------------------


async def test_a_dialed_agent_shows_its_work_live(hub: AgentHub, recorder: Recorder) -> None:
    agent = Agent("a1")
    agent.on_message(Working())
    async with agent.serving("127.0.0.1", 0) as port:
        hub.configure("a1", "ws-dial-out", f"ws://127.0.0.1:{port}")
        outcome = await hub.run_turn(turn_request("a1", conversation_id="c_7"))
        hub.remove("a1")
    check_answer(outcome)
    assert live_seen(recorder) == LIVE_SEEN
    assert [f["type"] for _, f in recorder.notices] == ["warning_message"]


# -- http-webhook --------------------------------------------------------------------------------


async def test_a_webhook_agent_sends_its_work_ahead_of_the_answer(
    hub: AgentHub, recorder: Recorder
) -> None:
    agent = Agent("w1")
    handler = agent.on_message(Working())
    async with serve_http(agent.webhook_app(SECRET)) as url:
        hub.configure("w1", "http-webhook", url, {"secret": SECRET})
        outcome = await hub.run_turn(turn_request("w1", conversation_id="c_7"))
    check_answer(outcome)
    assert handler.sent == [True] * 6
    assert live_seen(recorder) == LIVE_SEEN
    assert [f["conversation_id"] for _, f in recorder.notices] == ["c_7"]


async def test_a_webhook_repeat_gets_the_answer_without_the_live_frames() -> None:
    agent = Agent("w1")
    handler = agent.on_message(Working())
    frame = turn_request("w1", conversation_id="c_7").frame
    body = json.dumps(frame).encode()
    transport = httpx.ASGITransport(app=agent.webhook_app(SECRET))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
        first = await http.post("/", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)})
        again = await http.post("/", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)})
    assert [f["type"] for f in first.json()] == [t for t, _ in LIVE_SEEN[:2]] + [
        "progress_update", "file_complete", "file_error", "warning_message", "agent_message",
    ]  # fmt: skip
    assert again.json()["type"] == "agent_message"  # kept alone: a notice is not stored twice
    assert len(handler.turns) == 1


# -- http-pull -----------------------------------------------------------------------------------


async def test_a_pulling_agent_posts_its_work_as_it_goes(recorder: Recorder) -> None:
    """The pull client against the bridge's own broker (the reply endpoint's logic)."""
    broker = PullBroker(
        lambda _agent: PullPolicy(30), on_live=recorder.on_live, on_notice=recorder.on_notice
    )
    statuses: list[str] = []

    async def bridge(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/agent/turns":
            offers = await broker.pull("p1", limit=1, wait=0.05)
            turns = [{"lease_id": o.lease_id, "turn": o.req.frame} for o in offers]
            return httpx.Response(200, json={"turns": turns})
        turn_id = request.url.path.split("/")[-2]
        status = await broker.reply("p1", turn_id, request.url.params["lease"],
                                    json.loads(request.content))  # fmt: skip
        statuses.append(status)
        return httpx.Response(200, json={"status": status})

    agent = Agent("p1")
    handler = agent.on_message(Working())
    config = PullConfig(url="http://bridge.test", agent_id="p1", token="tok", poll_interval=0.01,
                        retry_delay=0.01, wait=0, drain_seconds=2)  # fmt: skip
    client = PullClient(config, agent, transport=httpx.MockTransport(bridge))
    stop = asyncio.Event()
    polling = asyncio.create_task(client.run(stop))
    try:
        outcome = await broker.run_turn(turn_request("p1", conversation_id="c_7"))
    finally:
        stop.set()
        await asyncio.wait_for(polling, 5)
    check_answer(outcome)
    assert handler.sent == [True] * 6
    assert statuses == ["live"] * 5 + ["notice", "answered"]
    assert live_seen(recorder) == LIVE_SEEN


# -- mistakes a handler can make ---------------------------------------------------------------


def test_hand_to_names_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        HandTo()
    with pytest.raises(ValueError, match="exactly one"):
        HandTo(agent="a", role="b")
    assert HandTo(agent="specialist").role is None


async def test_bad_live_calls_raise_and_long_lines_are_cut() -> None:
    sent: list[dict[str, Any]] = []

    async def collect(frame: dict[str, Any]) -> bool:
        sent.append(frame)
        return True

    message = UserMessage(message_id="t", conversation_id="c")
    turn = Turn.from_message(message, {}, live=collect)
    with pytest.raises(ValueError):
        await turn.progress(float("nan"))
    with pytest.raises(ValueError):
        await turn.status("   ")
    with pytest.raises(ValueError):
        await turn.notice("x", level="shout")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await turn.file_complete("")
    assert await turn.status("x" * 500) and await turn.progress(7)
    assert len(sent[0]["content"]) == 200 and sent[0]["content"].endswith("…")
    assert sent[1]["progress"] == 1.0
    turn.cancellation.set("superseded")
    assert await turn.status("too late") is False and len(sent) == 2


async def test_malformed_rich_data_answers_handler_error() -> None:
    agent = Agent("w1")

    @agent.on_message
    async def answer(turn: Turn) -> Answer:
        return Answer("x", data={"kind": "table", "columns": ["a"], "rows": [["1", "2"]]})

    frame = UserMessage(message_id="t_1", conversation_id="c_1")
    [reply] = await agent.answer(frame, frame.model_dump(mode="json"))
    assert (reply["type"], reply["error_code"]) == ("error_message", "handler_error")


async def test_a_served_agent_stops_live_frames_once_an_old_bridge_refuses_one() -> None:
    """A bridge that dials has no handshake to name its revision: the first live frame goes
    out, and its ``unknown_type`` answer stops the rest on that connection."""
    agent = Agent("a1")
    go_on = asyncio.Event()
    sent: list[bool] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        sent.append(await turn.status("Looking"))
        await go_on.wait()
        sent.append(await turn.status("Still looking"))
        sent.append(await turn.notice("note"))
        return "done"

    async with agent.serving("127.0.0.1", 0) as port, connect(f"ws://127.0.0.1:{port}") as ws:
        await send(ws, {"type": "user_message", "message_id": "t_1", "conversation_id": "c_1",
                        "content": "hi"})  # fmt: skip
        status = await recv(ws)
        assert status["type"] == "status_update"
        await send(ws, {"type": "error_message", "error_code": "unknown_type",
                        "error_details": {"message": "unknown message type 'status_update'",
                                          "errors": {"type": "status_update"}}})  # fmt: skip
        await round_trip(ws)  # the agent has read the refusal
        go_on.set()
        assert (await recv(ws))["type"] == "agent_message"
    assert sent == [True, False, False]
