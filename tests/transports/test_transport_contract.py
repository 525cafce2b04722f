"""One behaviour suite for every ``AgentTransport``: the five real kinds and the mock.

Each kind runs against a real agent over real sockets on 127.0.0.1: the agent SDK
(``chatbridge.agent``) served for ws-dial-out, dialing in for ws-dial-in, polling for
http-pull (against a minimal turns endpoint over the transport's broker) and answering POSTs
for http-webhook; the fake OpenAI-compatible server for openai. The agent answers by the turn's
text: ``silent`` declines (no_reply), ``human`` hands over (with a summary), ``specialist``
hands to another agent (protocol 1.3), ``work`` reports a status and a notice before it answers
(1.3), ``fail`` reports an error, ``hang`` holds the turn until the test ends (or the turn is
cancelled), anything else is echoed.

What a transport cannot carry at all it declares in its ``Capabilities``; the suite then
checks that it says so and does not pretend (an openai model asked to stay silent replies).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse

from chatbridge.agent import (
    Agent,
    Event,
    Handoff,
    HandTo,
    NoReply,
    PullClient,
    PullConfig,
    Turn,
    TurnError,
)
from chatbridge.config import Settings
from chatbridge.errors import AgentTimeout, AgentUnavailable, TurnCancelled
from chatbridge.metrics import Metrics
from chatbridge.testing.fake_openai import Answer, create_fake_openai
from chatbridge.testing.servers import serve_app
from chatbridge.transports import dial_in
from chatbridge.transports.base import AgentOutcome, AgentTransport, TurnRequest
from chatbridge.transports.context import TransportContext
from chatbridge.transports.dial_in import DialInTransport
from chatbridge.transports.dial_out import DialOutTransport
from chatbridge.transports.mock import MockAgentTransport
from chatbridge.transports.openai import OpenAITransport
from chatbridge.transports.pull import LeaseExpired, PullBroker, PullTransport, UnknownTurn
from chatbridge.transports.webhook import WebhookTransport
from tests.transports.hub_helpers import turn_request

AGENT = "agent1"
TOKEN = "contract-token-0123456789"
SECRET = "contract-secret-0123456789"
KINDS = ("ws-dial-out", "ws-dial-in", "http-pull", "http-webhook", "openai", "mock")
SHORT = 1.0  # deadline of the turns that are meant to miss it


# ----------------------------------------------------------------------------------------------
# the agent: one script for every transport


@dataclass
class Script:
    """How the test agent answers, and what it saw."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[dict[str, Any]] = field(default_factory=list)
    got_event: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # a held turn was cancelled
    cancelled_turns: list[bool] = field(default_factory=list)  # ``turn.cancelled`` when stopped
    live: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # what on_live got
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # on_notice

    async def on_live(self, agent_id: str, frame: dict[str, Any]) -> None:
        self.live.append((agent_id, frame))

    async def on_notice(self, agent_id: str, frame: dict[str, Any]) -> None:
        self.notices.append((agent_id, frame))

    async def answer(self, content: str) -> str | NoReply | Handoff | HandTo:
        match content:
            case "silent":
                return NoReply()
            case "specialist":
                return HandTo(role="specialist", reason="tax question", content="One moment.")
            case "human":
                return Handoff(
                    reason="asked for a human", content="One moment.", summary="Wants a person."
                )
            case "fail":
                raise TurnError("contract_error", "asked to fail")
            case "hang":
                self.hanging.set()
                try:
                    await self.release.wait()
                except asyncio.CancelledError:
                    self.stopped.set()
                    raise
                return "too late"
            case _:
                return f"Echo: {content}"

    def sdk_agent(self) -> Agent:
        agent = Agent(AGENT)

        @agent.on_message
        async def on_message(turn: Turn) -> str | NoReply | Handoff | HandTo:
            if turn.content == "work":
                await turn.status("Working on it")
                await turn.notice("Heads up", level="warning")
            try:
                return await self.answer(turn.content)
            except asyncio.CancelledError:
                self.cancelled_turns.append(turn.cancelled)
                raise

        @agent.on_event
        async def on_event(event: Event) -> None:
            self.events.append(event.raw)
            self.got_event.set()

        return agent

    async def mock_handler(self, req: TurnRequest) -> AgentOutcome | str | None:
        try:
            answer = await self.answer(str(req.frame.get("content")))
        except TurnError as exc:
            return AgentOutcome("error", error_code=exc.code)
        match answer:
            case NoReply():
                return None
            case Handoff():
                return AgentOutcome(
                    "handoff", answer.content, reason=answer.reason, summary=answer.summary
                )
            case HandTo():
                return AgentOutcome(
                    "agent_handoff", answer.content, reason=answer.reason, to_role=answer.role
                )
            case _:
                return answer


@dataclass
class Harness:
    """One transport wired to a live agent, and one of the same kind to nowhere."""

    transport: AgentTransport
    unreachable: AgentTransport
    script: Script
    plan: Callable[[str], None] = lambda content: None
    hang_started: Callable[[], bool] = lambda: False
    released: Callable[[], bool] = lambda: True
    event_seen: Callable[[], Awaitable[dict[str, Any]]] | None = None


# ----------------------------------------------------------------------------------------------
# wiring per kind


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def pull_app(broker: PullBroker) -> FastAPI:
    """The two http-pull endpoints, straight onto ``broker`` (the real ones add auth,
    rate limits and replicas, tested in ``tests/api`` and ``tests/e2e``)."""
    app = FastAPI()

    @app.get("/api/agent/turns")
    async def turns(wait: float = 0, limit: int = 10) -> dict[str, Any]:
        offers = await broker.pull(AGENT, limit=limit, wait=min(wait, 0.5))
        return {
            "turns": [
                {
                    "lease_id": o.lease_id,
                    "lease_expires_at": datetime.fromtimestamp(o.lease_expires_at, UTC).isoformat(),
                    "turn": o.req.frame,
                }
                for o in offers
            ]
        }

    @app.post("/api/agent/turns/{turn_id}/reply", response_model=None)
    async def reply(turn_id: str, request: Request, lease: str | None = None) -> Any:
        body = await request.json()
        body.setdefault("message_id", turn_id)
        try:
            return {"status": await broker.reply(AGENT, turn_id, lease, body)}
        except UnknownTurn:
            return JSONResponse({"error": {"code": "unknown_turn", "message": "-"}}, 404)
        except LeaseExpired:
            return JSONResponse({"error": {"code": "lease_expired", "message": "-"}}, 409)

    return app


async def wire(kind: str, ctx: TransportContext, script: Script, stack: AsyncExitStack) -> Harness:
    nowhere = f"127.0.0.1:{closed_port()}"
    if kind == "ws-dial-out":
        port = await stack.enter_async_context(script.sdk_agent().serving("127.0.0.1", 0))
        transport: AgentTransport = DialOutTransport(AGENT, f"ws://127.0.0.1:{port}", {}, ctx)
        return Harness(
            transport,
            DialOutTransport("agent2", f"ws://{nowhere}", {}, ctx),
            script,
            hang_started=script.hanging.is_set,
        )
    if kind == "ws-dial-in":
        dialed = DialInTransport(AGENT, None, {}, ctx)

        async def verify(agent_id: str, token: str) -> bool:
            return agent_id == AGENT and token == TOKEN

        app = FastAPI()

        @app.websocket("/api/ws/agent")
        async def agent_socket(websocket: WebSocket) -> None:
            hello = await dial_in.handshake(
                websocket, max_bytes=ctx.settings.ws_max_frame_bytes, verify_token=verify
            )
            if hello is not None:
                await dialed.serve(websocket, hello)

        base = await stack.enter_async_context(serve_app(app))
        stop = asyncio.Event()
        url = base.replace("http://", "ws://") + "/api/ws/agent"
        task = asyncio.create_task(script.sdk_agent().dial_in(url, TOKEN, stop=stop))
        stack.push_async_callback(_stop_task, task, stop)
        return Harness(
            dialed,
            DialInTransport("agent2", None, {}, ctx),
            script,
            hang_started=script.hanging.is_set,
            released=lambda: not dialed.links,
        )
    if kind == "http-pull":
        base = await stack.enter_async_context(serve_app(pull_app(ctx.pull)))
        config = PullConfig(url=base, agent_id=AGENT, token=TOKEN, wait=0.5, poll_interval=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(PullClient(config, script.sdk_agent()).run(stop))
        stack.push_async_callback(_stop_task, task, stop)
        transport = PullTransport(AGENT, None, {}, ctx)
        return Harness(
            transport,
            PullTransport("agent2", None, {}, ctx),
            script,
            hang_started=script.hanging.is_set,
            released=lambda: not ctx.pull.open_offers(AGENT),
        )
    if kind == "http-webhook":
        base = await stack.enter_async_context(serve_app(script.sdk_agent().webhook_app(SECRET)))
        transport = WebhookTransport(AGENT, base + "/", {"secret": SECRET}, ctx)
        return Harness(
            transport,
            WebhookTransport("agent2", f"http://{nowhere}/", {"secret": SECRET}, ctx),
            script,
            hang_started=script.hanging.is_set,
            released=lambda: not ctx.pull.open_offers(AGENT),
        )
    if kind == "openai":
        app = create_fake_openai()
        fake = app.state.fake
        base = await stack.enter_async_context(serve_app(app))
        options = {"model": "contract-model", "max_history": 0}

        def plan(content: str) -> None:
            if content == "fail":
                fake.plan(Answer.error(400, "asked to fail"))
            elif content == "hang":
                fake.plan(Answer.slow(30))

        return Harness(
            OpenAITransport(AGENT, base + "/v1", options, ctx),
            OpenAITransport("agent2", f"http://{nowhere}/v1", options, ctx),
            script,
            plan=plan,
            hang_started=lambda: bool(fake.completions()),
        )
    assert kind == "mock"

    async def nobody_there(req: TurnRequest) -> str:
        raise AgentUnavailable("nobody there")

    mock = MockAgentTransport(script.mock_handler, AGENT)

    async def event_seen() -> dict[str, Any]:
        return mock.events[-1]

    return Harness(
        mock,
        MockAgentTransport(nobody_there, "agent2"),
        script,
        hang_started=script.hanging.is_set,
        event_seen=event_seen,
    )


async def _stop_task(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    try:
        async with asyncio.timeout(5):
            await asyncio.gather(task, return_exceptions=True)
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        heartbeat_interval=0.5,
        reconnect_initial_delay=0.02,
        reconnect_max_delay=0.1,
        retry_base_seconds=0.02,
        pull_max_wait=1.0,
    )
    script = Script()
    ctx = TransportContext(settings, Metrics(), on_live=script.on_live, on_notice=script.on_notice)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(ctx.aclose)
        h = await wire(request.param, ctx, script, stack)
        stack.push_async_callback(h.unreachable.aclose)
        stack.push_async_callback(h.transport.aclose)
        stack.callback(script.release.set)  # first: a held turn lets go before servers stop
        h.transport.start()
        h.unreachable.start()
        yield h


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition another task or process makes true (checked every 10 ms)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def run(h: Harness, content: str, *, timeout: float = 5.0, key: str = "t_1") -> AgentOutcome:
    h.plan(content)
    return await h.transport.run_turn(turn_request(AGENT, key, content=content, timeout=timeout))


# ----------------------------------------------------------------------------------------------
# the contract


async def test_a_reply_comes_back_with_the_agents_text(harness: Harness) -> None:
    outcome = await run(harness, "hello there")
    assert outcome.kind == "reply"
    assert (outcome.content or "").lower() == "echo: hello there"


async def test_an_agent_that_declines_ends_the_turn_without_a_reply(harness: Harness) -> None:
    outcome = await run(harness, "silent")
    if harness.transport.capabilities.no_reply:
        assert outcome.kind == "no_reply"
        assert outcome.content is None
    else:  # a model cannot decline: it answers
        assert outcome.kind == "reply"


async def test_an_agent_can_hand_the_conversation_over(harness: Harness) -> None:
    outcome = await run(harness, "human")
    if harness.transport.capabilities.handoff:
        assert (outcome.kind, outcome.reason, outcome.content, outcome.summary) == (
            "handoff",
            "asked for a human",
            "One moment.",
            "Wants a person.",
        )
    else:
        assert outcome.kind == "reply"


async def test_an_agent_can_hand_the_conversation_to_another_agent(harness: Harness) -> None:
    outcome = await run(harness, "specialist")
    if harness.transport.capabilities.handoff:
        assert (outcome.kind, outcome.to_role, outcome.to_agent) == (
            "agent_handoff",
            "specialist",
            None,
        )
        assert (outcome.reason, outcome.content) == ("tax question", "One moment.")
    else:
        assert outcome.kind == "reply"


async def test_what_the_agent_reports_while_it_works_reaches_the_bridge(harness: Harness) -> None:
    outcome = await run(harness, "work")
    assert outcome.kind == "reply"
    script = harness.script
    if not harness.transport.capabilities.live:
        assert (script.live, script.notices) == ([], [])
        return
    assert script.live == [
        (
            AGENT,
            {"type": "status_update", "message_id": "t_1", "conversation_id": "c_1",
             "content": "Working on it"},
        )
    ]  # fmt: skip
    assert [(a, f["type"], f["conversation_id"], f["content"]) for a, f in script.notices] == [
        (AGENT, "warning_message", "c_1", "Heads up")
    ]


async def test_an_agent_error_ends_the_turn_as_an_error_outcome(harness: Harness) -> None:
    outcome = await run(harness, "fail")
    assert outcome.kind == "error"
    assert outcome.error_code


async def test_an_agent_out_of_reach_is_unavailable_at_the_deadline(harness: Harness) -> None:
    started = time.monotonic()
    req = turn_request("agent2", "t_9", content="hello", timeout=SHORT)
    with pytest.raises(AgentUnavailable):
        await harness.unreachable.run_turn(req)
    assert time.monotonic() - started < SHORT + 2.0
    status = harness.unreachable.status()
    assert status.connected is False
    assert (status.agent_id, status.turns_answered, status.in_flight) == ("agent2", 0, 0)


async def test_an_agent_that_does_not_answer_in_time_times_out(harness: Harness) -> None:
    with pytest.raises(AgentTimeout):
        await run(harness, "hang", timeout=SHORT)
    assert harness.hang_started()  # it got the turn: a timeout, not "unavailable"


async def test_events_reach_the_agent_or_are_refused(harness: Harness) -> None:
    await run(harness, "hello")  # connected, for the transports that keep a connection
    event = {"type": "conversation_event", "event": "conversation_closed", "conversation_id": "c_1"}
    sent = await harness.transport.send_event(event)
    if not harness.transport.capabilities.events:
        assert sent is False
        return
    assert sent is True
    if harness.event_seen is not None:
        seen = await harness.event_seen()
    else:
        async with asyncio.timeout(5):
            await harness.script.got_event.wait()
        seen = harness.script.events[-1]
    assert (seen["event"], seen["conversation_id"]) == ("conversation_closed", "c_1")


async def test_status_shows_the_agent_connected_and_its_answered_turns(harness: Harness) -> None:
    transport = harness.transport
    assert transport.status().turns_answered == 0
    await run(harness, "one", key="t_1")
    await run(harness, "two", key="t_2")
    status = transport.status()
    assert status.transport == transport.kind
    assert (status.agent_id, status.connected) == (AGENT, True)
    assert (status.turns_answered, status.in_flight) == (2, 0)
    assert status.last_seen is not None
    if transport.kind not in ("http-pull", "http-webhook"):  # timed where the answer arrives
        assert status.latency_ms_p50 is not None


async def test_close_ends_waiting_turns_and_releases_everything(harness: Harness) -> None:
    transport = harness.transport
    harness.plan("hang")
    waiting = asyncio.create_task(
        transport.run_turn(turn_request(AGENT, "t_5", content="hang", timeout=10))
    )
    await until(lambda: harness.hang_started() and transport.in_flight() == 1)
    await transport.aclose()
    with pytest.raises(AgentUnavailable):
        async with asyncio.timeout(5):
            await waiting
    with pytest.raises(AgentUnavailable):
        await run(harness, "hello", key="t_6")
    assert transport.connected is False
    assert await transport.send_event({"type": "conversation_event", "event": "x"}) is False
    await until(lambda: transport.in_flight() == 0 and harness.released())


async def test_a_cancelled_turn_stops_waiting_at_once_and_the_agent_stops(
    harness: Harness,
) -> None:
    transport = harness.transport
    harness.plan("hang")
    req = turn_request(AGENT, "t_5", content="hang", timeout=30)  # far off: not a timeout
    waiting = asyncio.create_task(transport.run_turn(req))
    await until(lambda: harness.hang_started() and transport.in_flight() == 1)
    assert transport.cancel_turn("t_5", "c_1", "superseded") is True
    with pytest.raises(TurnCancelled) as cancelled:
        async with asyncio.timeout(5):
            await waiting
    assert (cancelled.value.kind, cancelled.value.turn_key) == ("cancelled", "t_5")
    assert cancelled.value.reason == "superseded"
    await until(lambda: transport.in_flight() == 0)
    if isinstance(transport, PullTransport):  # not told: its late answer is refused
        assert not transport.capabilities.cancel
        late = {"type": "agent_message", "content": "too late"}
        with pytest.raises(UnknownTurn):
            await transport.context.pull.reply(AGENT, "t_5", "any-lease", late)
    elif not isinstance(transport, OpenAITransport):  # the agent's handler was stopped
        assert transport.capabilities.cancel
        async with asyncio.timeout(5):
            await harness.script.stopped.wait()
        if not isinstance(transport, MockAgentTransport):  # the SDK saw turn.cancelled
            assert harness.script.cancelled_turns == [True]
    assert transport.cancel_turn("t_5", "c_1") is False  # ended: nothing left to cancel
    assert transport.status().turns_answered == 0
    outcome = await run(harness, "after", key="t_6")  # the conversation goes on
    assert (outcome.content or "").lower() == "echo: after"


async def test_cancelling_an_unknown_turn_is_a_no_op(harness: Harness) -> None:
    assert harness.transport.cancel_turn("t_404", "c_1") is False
    outcome = await run(harness, "hello", key="t_1")
    assert outcome.kind == "reply"
    assert harness.transport.cancel_turn("t_1", "c_1") is False  # answered already
