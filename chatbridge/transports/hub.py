"""``AgentHub``: every WebSocket connection to every agent, both ways, and the turns on them.

The pipeline calls ``run_turn()`` with a ready ``user_message`` frame and gets one
``AgentOutcome`` back (or ``AgentUnavailable`` / ``AgentTimeout``). Underneath:

- ws-dial-out agents get a background task (``dial_out.dial_out_forever``) that keeps a
  connection to the agent's URL; ws-dial-in agents connect to ``GET /api/ws/agent`` and land in
  ``handle_dial_in()`` (handshake in ``dial_in``). Either way the open connection becomes a
  ``Link`` (``links``) and runs the same loop: read frames, answer pings, send a ping every
  heartbeat, drop the link after ``DEAD_AFTER_INTERVALS`` silent intervals.
- An agent may have several links here at once (a dial-in agent's connections, each named by
  its ``link_id``; a newer connection with the same id, or an unnamed one replacing an
  unnamed one, closes the older). A turn is sent on one of them and waits for its ending
  frame. If that link dies first, the same frame (same ``message_id``) goes out again on
  another or the next link, until the deadline; the agent treats the repeat as the same turn
  (``turns.drive``).
- Frames that are not the answer to a turn go to the callbacks given to the constructor
  (proactive messages, typing, streamed chunks). They are awaited in the read loop, which keeps
  their order; they should be quick.

The hub itself holds the registry of agents and their links, and dispatches their frames.

With several replicas (``cluster``) every replica with a live link to an agent runs its
turns: each dials a ws-dial-out agent, and a dial-in agent's connections may land on several
replicas. ``run_turn`` on a replica without a link raises ``AgentElsewhere`` when another
replica has one — at once, or as soon as the link here drops while a turn waits — and the
pipeline hands the turn back to the database for a replica with a link to claim
(``placement``). http-pull agents are still offered by the one replica holding their lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import httpx
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection

from chatbridge.cluster import Cluster
from chatbridge.config import Settings, Transport
from chatbridge.errors import AgentError, AgentUnavailable, ConfigError
from chatbridge.metrics import Metrics
from chatbridge.protocol import (
    PROTOCOL,
    Ack,
    AgentComplete,
    AgentMessage,
    AgentStreaming,
    ErrorMessage,
    Handoff,
    Hello,
    NoReply,
    Ping,
    Pong,
    ProtocolError,
    Typing,
    error_frame,
    parse_agent_frame,
    utc_now_iso,
)
from chatbridge.transports import dial_in, links
from chatbridge.transports.base import (
    AgentOutcome,
    AgentStatus,
    ChunkCallback,
    ProactiveCallback,
    TurnRequest,
    TypingCallback,
)
from chatbridge.transports.dial_out import close_timeout, dial_out_forever
from chatbridge.transports.links import Link, LinkClosed, frame_too_large
from chatbridge.transports.log import log_event
from chatbridge.transports.openai import History, OpenAICaller
from chatbridge.transports.placement import LEASED, Placement
from chatbridge.transports.pull import PullBroker, PullPolicy
from chatbridge.transports.turns import (
    ConversationSlots,
    PendingTurn,
    StreamGap,
    assemble_stream,
    consume_exception,
    drive,
    open_turn,
    outcome_of,
    percentile,
    resume_on,
    settle,
)
from chatbridge.transports.webhook import WebhookCaller

# ``Link``, ``LinkClosed`` and the decisions lived here before ``links`` and ``turns`` were
# split out; they stay importable from here.
__all__ = [
    "AgentHub",
    "Link",
    "LinkClosed",
    "StreamGap",
    "TransportName",
    "assemble_stream",
    "frame_too_large",
    "outcome_of",
    "percentile",
]

TransportName = Transport  # the config's list: one place to add a transport
LATENCY_WINDOW = 100
STOP_TIMEOUT = 5.0


async def _no_history(conversation_id: str, limit: int) -> list[Any]:
    return []


@dataclass(eq=False, slots=True)
class _Agent:
    agent_id: str
    transport: TransportName
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)  # open links here, oldest first
    dial_task: asyncio.Task[None] | None = None
    last_seen: float | None = None
    last_ack: int | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    turns_answered: int = 0

    def newest_link(self) -> Link | None:
        """The most recent link that is still open, if any."""
        for link in reversed(self.links):
            if not link.closed.is_set():
                return link
        return None


# ----------------------------------------------------------------------------------------------


class AgentHub:
    """Owns every agent connection (dial-out and dial-in) and runs turns on them.

    Args:
        settings: heartbeat, frame limit and reconnect backoff.
        metrics: ``agent_connected``, ``agent_replies_dropped`` and ``turn_seconds`` are updated.
        verify_token: ``(agent_id, token) -> bool`` for dial-in agents.
        on_proactive: ``agent_message`` / ``handoff`` naming a conversation but no turn.
        on_typing: typing indicator requests.
        on_chunk: streamed text as it arrives, for live widgets.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        verify_token: Callable[[str, str], Awaitable[bool]],
        on_proactive: ProactiveCallback,
        on_typing: TypingCallback,
        on_chunk: ChunkCallback | None = None,
        history: History | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._verify_token = verify_token
        self._on_proactive = on_proactive
        self._on_typing = on_typing
        self._on_chunk = on_chunk
        self._agents: dict[str, _Agent] = {}
        self._turns: dict[str, PendingTurn] = {}
        self._slots = ConversationSlots()
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closing = False
        self._attached = asyncio.Event()
        self.pull = PullBroker(self._pull_policy, on_chunk=on_chunk, on_typing=on_typing)
        # http-webhook and openai agents are reached by plain HTTP calls on one client
        self._http = httpx.AsyncClient(follow_redirects=False)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        self.webhook = WebhookCaller(
            self.pull,
            self._http,
            public_url=settings.public_url or f"http://{host}:{settings.port}",
            retry_base=settings.retry_base_seconds,
        )
        self.openai = OpenAICaller(
            self._http,
            history or _no_history,
            on_chunk=on_chunk,
            default_api_key=settings.openai_api_key,
            retry_base=settings.retry_base_seconds,
        )
        self.cluster: Cluster | None = None
        self._placement: Placement | None = None

    def join(self, cluster: Cluster) -> None:
        """Share agents with the other replicas (see the module docstring)."""
        self.cluster = cluster
        self._placement = placement = Placement(
            cluster, transport_of=self._transport_of, linked_here=self._linked_here
        )
        placement.on_link_taken(self._close_link_taken_elsewhere)
        placement.serve_events(self._send_event_here)
        for agent in self._agents.values():
            if agent.transport in LEASED:
                cluster.want_lease(agent.agent_id)
        placement.announce(self._linked_agents())

    def _transport_of(self, agent_id: str) -> str | None:
        agent = self._agents.get(agent_id)
        return agent.transport if agent is not None else None

    def _linked_here(self, agent_id: str) -> bool:
        agent = self._agents.get(agent_id)
        return agent is not None and agent.newest_link() is not None

    def _linked_agents(self) -> list[str]:
        return [a.agent_id for a in self._agents.values() if a.newest_link() is not None]

    def _links_changed(self, agent_id: str) -> None:
        """A link of ``agent_id`` here opened or closed: tell the others, move waiting turns."""
        if self._placement is not None:
            self._placement.announce(self._linked_agents())
            self._placement.check(agent_id)

    def _close_link_taken_elsewhere(self, agent_id: str, link_id: str) -> None:
        agent = self._agents.get(agent_id)
        for link in list(agent.links) if agent is not None else []:
            if link.link_id == link_id:
                log_event(
                    logging.INFO, "agent re-opened this connection on another replica", agent_id
                )
                self._spawn(link.close(1000, "replaced by a newer connection"))

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting to the ws-dial-out agents configured so far."""
        self._started = True
        self._closing = False
        if self._http.is_closed:  # started again after a stop
            self._http = httpx.AsyncClient(follow_redirects=False)
            self.webhook.client = self.openai.client = self._http
        for agent in self._agents.values():
            self._ensure_dialing(agent)

    async def stop(self) -> None:
        """Close every connection, fail waiting turns, cancel tasks; bounded in time."""
        self._closing = True
        self._started = False
        self.pull.stop()
        for turn in list(self._turns.values()):
            turn.fail(AgentUnavailable("agent hub is stopping"))
        for agent in self._agents.values():
            if agent.dial_task is not None:
                self._stop_dialing(agent)
            for link in agent.links:
                self._spawn(link.close(1001, "bridge shutting down"))
        pending = {t for t in self._background if not t.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=STOP_TIMEOUT)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        await self._http.aclose()

    # -- configuration -------------------------------------------------------------------------

    def configure(
        self,
        agent_id: str,
        transport: TransportName,
        url: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Register or update an agent.

        A ws-dial-out agent gets a task that connects to ``url`` (restarted when the URL
        changes); a ws-dial-in agent waits for the agent to connect to us; http-webhook and
        openai agents are called per turn (``url``, with ``options``).

        Raises:
            ConfigError: unknown transport, or a URL that does not fit the transport.
        """
        if transport not in get_args(TransportName):
            raise ConfigError(f"agent hub cannot run transport {transport!r}")
        if transport == "ws-dial-out" and not (url and url.startswith(("ws://", "wss://"))):
            raise ConfigError(f"ws-dial-out agent {agent_id!r} needs a ws:// or wss:// url")
        if transport in ("http-webhook", "openai") and not (
            url and url.startswith(("http://", "https://"))
        ):
            raise ConfigError(f"{transport} agent {agent_id!r} needs an http:// or https:// url")
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent(agent_id, transport, url)
            self.metrics.agent_connected.labels(agent_id).set(0)
        elif agent.transport != transport or agent.url != url:
            log_event(logging.INFO, "agent reconfigured", agent_id, transport=transport)
            self._stop_dialing(agent)
            if "ws-dial-out" in (agent.transport, transport):
                for link in agent.links:
                    self._spawn(link.close(1000, "agent reconfigured"))
            agent.transport, agent.url = transport, url
        agent.options = dict(options or {})
        if self.cluster is not None:
            self.cluster.want_lease(agent_id, transport in LEASED)
        self._ensure_dialing(agent)

    def remove(self, agent_id: str) -> None:
        """Forget an agent: stop dialing it, close its connection, fail its waiting turns."""
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        self._stop_dialing(agent)
        for link in agent.links:
            self._spawn(link.close(1000, "agent removed"))
        agent.links = []
        for turn in list(self._turns.values()):
            if turn.req.agent_id == agent_id:
                turn.fail(AgentUnavailable(f"agent {agent_id!r} was removed"))
        self.metrics.agent_connected.labels(agent_id).set(0)
        if self.cluster is not None:
            self.cluster.want_lease(agent_id, False)
            self._spawn(self.cluster.release(agent_id))
            self._links_changed(agent_id)

    def is_connected(self, agent_id: str) -> bool:
        """Whether the agent has an open connection right now (a puller: polled lately)."""
        agent = self._agents.get(agent_id)
        if agent is not None and agent.transport == "http-pull":
            return self._pulled_lately(agent_id)
        if agent is not None and agent.transport in ("http-webhook", "openai"):
            # nothing stays open: "connected" unless the last call failed
            return agent.agent_id not in self._caller(agent).last_error
        return agent is not None and agent.newest_link() is not None

    def _pull_policy(self, agent_id: str) -> PullPolicy:
        s = self.settings
        if agent_id == s.webchat_compat_agent_id:
            # The action API's poller: lease, re-offer a few times, then give up (contract).
            return PullPolicy(
                s.webchat_compat_lease_seconds,
                1 if s.webchat_mark_on_read else s.webchat_compat_max_offers,
            )
        return PullPolicy(s.pull_lease_seconds)

    def _pulled_lately(self, agent_id: str) -> bool:
        seen = self.pull.last_seen(agent_id)
        return seen is not None and time.time() - seen < self.settings.pull_max_wait + 15

    async def wait_connected(self, agent_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the agent to be connected; True if it is."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    attached = self._attached
                    if self.is_connected(agent_id):
                        return True
                    await attached.wait()
        except TimeoutError:
            return False

    def status(self) -> list[AgentStatus]:
        """One row per known agent, for ``/agents/status`` and the console."""
        in_flight: dict[str, int] = {}
        for turn in self._turns.values():
            in_flight[turn.req.agent_id] = in_flight.get(turn.req.agent_id, 0) + 1
        rows = []
        for agent in self._agents.values():
            if agent.transport in ("http-pull", "http-webhook"):
                in_flight[agent.agent_id] = self.pull.in_flight(agent.agent_id)
                agent.last_seen = self.pull.last_seen(agent.agent_id)
                agent.turns_answered = self.pull.answered(agent.agent_id)
            if agent.transport in ("http-webhook", "openai"):
                agent.last_seen = self._caller(agent).last_ok.get(agent.agent_id)
            connected = self.is_connected(agent.agent_id)
            self.metrics.agent_connected.labels(agent.agent_id).set(1 if connected else 0)
            latencies = list(agent.latencies_ms)
            rows.append(
                AgentStatus(
                    agent_id=agent.agent_id,
                    transport=agent.transport,
                    connected=connected,
                    last_seen=agent.last_seen,
                    in_flight=in_flight.get(agent.agent_id, 0),
                    latency_ms_p50=percentile(latencies, 50),
                    latency_ms_p95=percentile(latencies, 95),
                    turns_answered=agent.turns_answered,
                )
            )
        return rows

    # -- turns ---------------------------------------------------------------------------------

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        """Send one turn to its agent and wait for the answer.

        Waits for the agent to be connected, sends ``req.frame`` and returns how the agent
        ended the turn. A connection lost before the answer means the same frame is sent again
        on the next connection, until ``req.deadline`` (``time.time()``). A second call with a
        turn key already in flight waits for the first call's result instead of sending again.

        Raises:
            AgentUnavailable: the frame could not be sent before the deadline.
            AgentTimeout: it was sent but not answered in time.
        """
        if self._closing:
            raise AgentUnavailable("agent hub is stopping")
        if self._placement is None:
            return await self._run_turn(req)
        return await self._placement.run(req.agent_id, self._run_turn(req))

    async def _run_turn(self, req: TurnRequest) -> AgentOutcome:
        agent = self._agents.get(req.agent_id)
        if agent is not None and agent.transport == "http-pull":
            return await self.pull.run_turn(req)
        if agent is not None and agent.transport == "http-webhook" and agent.url:
            return await self.webhook.run_turn(req, agent.url, agent.options.get("secret"))
        if agent is not None and agent.transport == "openai" and agent.url:
            return await self._openai_turn(agent, req)
        existing = self._turns.get(req.turn_key)
        if existing is not None:
            log_event(
                logging.INFO, "turn already in flight, joining it", req.agent_id, req.turn_key
            )
            return await asyncio.shield(existing.result)
        result: asyncio.Future[AgentOutcome] = asyncio.get_running_loop().create_future()
        result.add_done_callback(consume_exception)
        turn = PendingTurn(req, result)
        self._turns[req.turn_key] = turn
        try:
            outcome = await drive(turn, self._slots, self._link_for)
        except AgentError as exc:
            settle(result, exc)
            raise
        except BaseException:
            settle(result, AgentUnavailable("turn abandoned by its caller"))
            raise
        finally:
            if self._turns.get(req.turn_key) is turn:
                del self._turns[req.turn_key]
        settle(result, outcome)
        return outcome

    async def _openai_turn(self, agent: _Agent, req: TurnRequest) -> AgentOutcome:
        started = time.monotonic()
        outcome = await self.openai.run_turn(req, agent.url or "", agent.options)
        elapsed = time.monotonic() - started
        agent.turns_answered += 1
        agent.latencies_ms.append(elapsed * 1000)
        self.metrics.turn_seconds.labels(agent.agent_id).observe(elapsed)
        return outcome

    def _caller(self, agent: _Agent) -> WebhookCaller | OpenAICaller:
        return self.webhook if agent.transport == "http-webhook" else self.openai

    def _link_for(self, turn: PendingTurn) -> Link | None:
        """The link ``turn`` goes out on: the one it was sent on while that stays open here,
        else the agent's newest open link."""
        agent = self._agents.get(turn.req.agent_id)
        if agent is None:
            return None
        sent_on = turn.sent_on
        if sent_on is not None and not sent_on.closed.is_set() and sent_on in agent.links:
            return sent_on
        return agent.newest_link()

    def _finish(self, agent: _Agent, turn: PendingTurn, outcome: AgentOutcome) -> None:
        turn.outcome = outcome
        turn.wake.set()
        agent.turns_answered += 1
        if turn.sent_at is not None:
            elapsed = time.monotonic() - turn.sent_at
            agent.latencies_ms.append(elapsed * 1000)
            self.metrics.turn_seconds.labels(agent.agent_id).observe(elapsed)
        log_event(
            logging.DEBUG,
            "turn answered",
            agent.agent_id,
            turn.req.turn_key,
            outcome=outcome.kind,
            conversation_id=turn.req.conversation_id,
        )

    def _wake_turns(self, agent_id: str) -> None:
        for turn in self._turns.values():
            if turn.req.agent_id == agent_id:
                turn.wake.set()

    # -- fire and forget -----------------------------------------------------------------------

    async def send_event(self, agent_id: str, frame: dict[str, Any]) -> bool:
        """Send a frame that expects no answer (e.g. ``conversation_event``).

        With several replicas, an agent with no link here gets it over another replica's.

        Returns:
            False if the agent is not connected or the send failed.
        """
        agent = self._agents.get(agent_id)
        if agent is not None and agent.transport == "http-webhook" and agent.url:
            return await self.webhook.send_event(agent.url, agent.options.get("secret"), frame)
        if await self._send_event_here(agent_id, frame):
            return True
        if self._placement is not None and not self._linked_here(agent_id):
            return await self._placement.send_event_elsewhere(agent_id, frame)
        return False

    async def _send_event_here(self, agent_id: str, frame: dict[str, Any]) -> bool:
        agent = self._agents.get(agent_id)
        link = agent.newest_link() if agent is not None else None
        if link is None:
            return False
        try:
            await link.send(frame)
        except LinkClosed:
            return False
        return True

    # -- connections ---------------------------------------------------------------------------

    async def handle_dial_in(
        self,
        websocket: WebSocket,
        failures: dial_in.AuthBudget | None = None,
        *,
        pending: dial_in.PendingGate | None = None,
    ) -> None:
        """Run one dial-in connection (the body of ``GET /api/ws/agent``) until it ends.

        The agent's first frame must be ``hello``; the token comes from it or from the
        ``Authorization: Bearer`` header of the upgrade. A refused agent gets ``hello_error``
        and close code 1008; wrong tokens spend the caller's ``failures`` budget.
        """
        hello = await dial_in.handshake(
            websocket,
            max_bytes=self.settings.ws_max_frame_bytes,
            verify_token=self._verify_token,
            failures=failures,
            pending=pending,
        )
        if hello is None:
            return
        agent_id = hello.agent_id
        known = self._agents.get(agent_id)
        if known is not None and known.transport == "ws-dial-out":
            await dial_in.refuse(
                websocket, "unauthorized", f"agent {agent_id!r} is configured for ws-dial-out"
            )
            return
        if self._closing:
            await websocket.close(1012, "bridge restarting")
            return
        link = Link(
            agent_id,
            websocket.send_text,
            lambda code, reason: websocket.close(code, reason),
            close_timeout=close_timeout(self.settings),
            link_id=dial_in.link_id(hello),
        )
        try:
            await link.send(
                {
                    "type": "hello_ok",
                    "agent_id": agent_id,
                    "protocol": PROTOCOL,
                    "heartbeat_interval": self.settings.heartbeat_interval,
                }
            )
        except LinkClosed:
            return
        if agent_id not in self._agents:
            self._agents[agent_id] = _Agent(agent_id, "ws-dial-in")
        log_event(logging.INFO, "agent dialed in", agent_id, resume_from=hello.resume_from)
        await self._serve_link(agent_id, link, dial_in.frames(websocket), hello.resume_from)

    async def _serve_dial_out(self, agent_id: str, ws: ClientConnection) -> None:
        link = Link(agent_id, ws.send, ws.close, close_timeout=close_timeout(self.settings))
        await self._serve_link(agent_id, link, ws, None)

    async def _serve_link(
        self,
        agent_id: str,
        link: Link,
        frames: AsyncIterable[str | bytes],
        resume_from: int | None,
    ) -> None:
        """Run the protocol on one open link until it closes, then forget it."""
        agent = self._agents.get(agent_id)
        if agent is None or self._closing:
            await link.close(1001, "agent not configured")
            return
        self._attach(agent, link, resume_from)
        heartbeat = asyncio.create_task(
            links.heartbeat(link, agent.agent_id, self.settings.heartbeat_interval)
        )
        reader = asyncio.create_task(self._read(agent, link, frames))
        closed = asyncio.create_task(link.closed.wait())
        try:
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (heartbeat, reader, closed):
                task.cancel()
            await asyncio.gather(heartbeat, reader, closed, return_exceptions=True)
            self._detach(agent, link)
            await link.close(1000, "")

    def _attach(self, agent: _Agent, link: Link, resume_from: int | None) -> None:
        for old in agent.links:
            # The same connection opened again (same link id; or, unnamed, the agent's one
            # connection here): the old one is dead or about to be.
            if old is not link and old.link_id == link.link_id:
                log_event(logging.INFO, "new connection replaces the old one", agent.agent_id)
                self._spawn(old.close(1000, "replaced by a newer connection"))
        if resume_from is not None:
            trust_mark = agent.last_ack is None
            resume_on(link, self._turns.values(), agent.agent_id, resume_from, trust_mark)
        agent.links.append(link)
        agent.last_seen = time.time()
        self._attached.set()  # wakes wait_connected(); a fresh event for the next attach
        self._attached = asyncio.Event()
        self.metrics.agent_connected.labels(agent.agent_id).set(1)
        self._wake_turns(agent.agent_id)
        self._links_changed(agent.agent_id)
        if self._placement is not None and link.link_id is not None:
            self._placement.link_taken(agent.agent_id, link.link_id)

    def _detach(self, agent: _Agent, link: Link) -> None:
        if link not in agent.links:
            return
        agent.links.remove(link)
        if agent.newest_link() is None:
            self.metrics.agent_connected.labels(agent.agent_id).set(0)
            log_event(logging.INFO, "agent disconnected", agent.agent_id)
        self._wake_turns(agent.agent_id)
        self._links_changed(agent.agent_id)

    async def _read(self, agent: _Agent, link: Link, frames: AsyncIterable[str | bytes]) -> None:
        limit = self.settings.ws_max_frame_bytes
        try:
            async for data in frames:
                link.last_rx = time.monotonic()
                agent.last_seen = time.time()
                if frame_too_large(data, limit):
                    log_event(
                        logging.WARNING, "frame too large, closing", agent.agent_id, limit=limit
                    )
                    await link.close(1009, "frame too large")
                    return
                try:
                    await self._on_frame(agent, link, data)
                except LinkClosed:
                    return
                except Exception:
                    log_event(
                        logging.ERROR, "failed to handle agent frame", agent.agent_id, exc_info=True
                    )
        except Exception as exc:  # the connection broke (ConnectionClosedError and friends)
            log_event(
                logging.INFO, "agent connection lost", agent.agent_id, error=type(exc).__name__
            )

    # -- frames from agents --------------------------------------------------------------------

    async def _on_frame(self, agent: _Agent, link: Link, data: str | bytes) -> None:
        aid = agent.agent_id
        try:
            frame = parse_agent_frame(data)
        except ProtocolError as exc:
            log_event(logging.INFO, "bad frame from agent", aid, code=exc.code)
            details: dict[str, Any] = {"message": exc.message}
            if exc.details is not None:
                details["errors"] = exc.details
            await link.send(error_frame(exc.code, details=details))
            return
        match frame:
            case (
                AgentMessage(message_id=str())
                | Handoff(message_id=str())
                | ErrorMessage(message_id=str())
                | AgentComplete()
                | NoReply()
            ):
                self._answer(agent, frame)
            case AgentMessage() | Handoff():
                if frame.conversation_id is None:
                    problem = f"{frame.type} needs message_id or conversation_id"
                    await link.send(error_frame("invalid_message", details={"message": problem}))
                    return
                proactive = frame.model_dump(mode="json", exclude_none=True)
                await self._callback(aid, self._on_proactive(aid, proactive))
            case AgentStreaming():
                await self._on_stream_chunk(agent, frame)
            case ErrorMessage():
                log_event(logging.WARNING, "agent reported an error", aid, code=frame.error_code)
            case Typing():
                await self._callback(aid, self._on_typing(aid, frame.conversation_id, frame.on))
            case Ping():
                await link.send({"type": "pong", "timestamp": utc_now_iso()})
            case Ack():
                if agent.last_ack is None or frame.seq > agent.last_ack:
                    agent.last_ack = frame.seq
                for turn in self._turns.values():
                    if turn.req.agent_id == aid and turn.req.seq == frame.seq:
                        turn.acked = True
            case Pong() | Hello():
                pass

    def _answer(
        self, agent: _Agent, frame: AgentMessage | AgentComplete | Handoff | NoReply | ErrorMessage
    ) -> None:
        key = frame.message_id
        turn = open_turn(self._turns, agent.agent_id, key) if key is not None else None
        if turn is None or key is None:
            self.metrics.agent_replies_dropped.labels(agent.agent_id).inc()
            log_event(
                logging.INFO, "reply for an unknown or answered turn dropped", agent.agent_id, key
            )
            return
        outcome = outcome_of(frame, turn.chunks)
        if outcome.error_code == "stream_gap":
            log_event(logging.WARNING, "streamed reply has gaps", agent.agent_id, key)
        self._finish(agent, turn, outcome)

    async def _on_stream_chunk(self, agent: _Agent, frame: AgentStreaming) -> None:
        turn = open_turn(self._turns, agent.agent_id, frame.message_id)
        if turn is None:
            log_event(
                logging.DEBUG, "chunk for no open turn ignored", agent.agent_id, frame.message_id
            )
            return
        if frame.stream_index in turn.chunks:
            return  # a repeat after a resend: same chunk, already seen
        turn.chunks[frame.stream_index] = frame.content
        if self._on_chunk is not None:
            req = turn.req
            chunk = self._on_chunk(
                req.turn_key, req.conversation_id, frame.stream_index, frame.content
            )
            await self._callback(agent.agent_id, chunk)

    @staticmethod
    async def _callback(agent_id: str, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:
            log_event(logging.ERROR, "agent callback failed", agent_id, exc_info=True)

    # -- helpers -------------------------------------------------------------------------------

    def _ensure_dialing(self, agent: _Agent) -> None:
        if not self._started or agent.transport != "ws-dial-out" or agent.url is None:
            return
        # Every replica dials: the agent takes several connections, and the replicas share
        # its turns through the database.
        if agent.dial_task is not None and not agent.dial_task.done():
            return
        agent_id = agent.agent_id

        async def serve(ws: ClientConnection) -> None:
            await self._serve_dial_out(agent_id, ws)

        agent.dial_task = self._spawn(dial_out_forever(agent_id, agent.url, self.settings, serve))

    def _stop_dialing(self, agent: _Agent) -> None:
        if agent.dial_task is not None:
            agent.dial_task.cancel()
            agent.dial_task = None

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
