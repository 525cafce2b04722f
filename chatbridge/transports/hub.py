"""``AgentHub``: every agent's transport, and the turns the pipeline runs on them.

The pipeline calls ``run_turn()`` with a ready ``user_message`` frame and gets one
``AgentOutcome`` back (or ``AgentUnavailable`` / ``AgentTimeout``); ``cancel_turn()`` withdraws
a turn (superseded by a newer customer message) and its waiting ``run_turn`` raises
``TurnCancelled``. The hub keeps one
``AgentTransport`` per agent id (``configure()`` builds it from the agent's transport kind,
URL and options through the lazy ``registry``; ``install()`` puts in a ready one such as a
``MockAgentTransport``) and hands each turn, event and status question to it without knowing
which kind it is. What the transports share (settings, metrics, callbacks, the HTTP client,
the ``PullBroker``) is their ``TransportContext``.

ws-dial-in agents connect to ``GET /api/ws/agent`` and land in ``handle_dial_in()``: after the
handshake (``dial_in``) the connection goes to the agent's ``DialInTransport``.

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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
from starlette.websockets import WebSocket

from chatbridge.cluster import LocalCluster
from chatbridge.config import Settings, Transport
from chatbridge.errors import AgentUnavailable
from chatbridge.metrics import Metrics
from chatbridge.models import JsonObject
from chatbridge.protocol import FEATURE_OF, agent_may_receive
from chatbridge.transports import dial_in, registry
from chatbridge.transports.base import (
    AgentOutcome,
    AgentStatus,
    AgentTransport,
    ChunkCallback,
    LiveCallback,
    NoticeCallback,
    ProactiveCallback,
    TurnRequest,
    TypingCallback,
    percentile,
)
from chatbridge.transports.context import History, TransportContext, ignore_frame, no_history
from chatbridge.transports.dial_in import DialInTransport
from chatbridge.transports.links import Link, LinkClosed, frame_too_large
from chatbridge.transports.log import log_event
from chatbridge.transports.pull import PullBroker
from chatbridge.transports.turns import StreamGap, assemble_stream, outcome_of

if TYPE_CHECKING:
    from chatbridge.cluster import Cluster
    from chatbridge.transports.placement import Placement

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
STOP_TIMEOUT = 5.0


class AgentHub:
    """Keeps every agent's ``AgentTransport`` and runs turns on them.

    Args:
        settings: heartbeat, frame limit, reconnect backoff, pull leases.
        metrics: ``agent_connected``, ``agent_replies_dropped`` and ``turn_seconds`` are updated.
        verify_token: ``(agent_id, token) -> bool`` for dial-in agents.
        on_proactive: ``agent_message`` / ``handoff`` naming a conversation but no turn.
        on_typing: typing indicator requests.
        on_chunk: streamed text as it arrives, for live widgets.
        on_live: protocol 1.3 live frames (status, progress, file events) with their
            ``conversation_id``; by default dropped.
        on_notice: protocol 1.3 ``system_message`` / ``warning_message`` from an agent; by
            default dropped.
        history: earlier messages of a conversation (openai agents).
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
        on_live: LiveCallback | None = None,
        on_notice: NoticeCallback | None = None,
        history: History | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._verify_token = verify_token
        self.context = TransportContext(
            settings,
            metrics,
            on_proactive=on_proactive,
            on_typing=on_typing,
            on_chunk=on_chunk,
            on_live=on_live or ignore_frame,
            on_notice=on_notice or ignore_frame,
            history=history or no_history,
            link_changed=self._link_changed,
        )
        self._transports: dict[str, AgentTransport] = {}
        self._started = False
        self._closing = False
        self._attached = asyncio.Event()
        # the replicas this one shares agents with: only itself until ``join``
        self.cluster: Cluster = LocalCluster(settings.instance_id)
        self._placement: Placement | None = None

    @property
    def pull(self) -> PullBroker:
        """The broker http-pull and http-webhook turns wait in (``api.agent_pull`` uses it)."""
        return self.context.pull

    def transport(self, agent_id: str) -> AgentTransport | None:
        """The agent's transport here, if it has one."""
        return self._transports.get(agent_id)

    # -- replicas ------------------------------------------------------------------------------

    def join(self, cluster: Cluster) -> None:
        """Share agents with the other replicas (see the module docstring)."""
        from chatbridge.transports.placement import Placement

        self.cluster = cluster
        if not cluster.distributed:
            return
        self._placement = placement = Placement(
            cluster, placement_of=self._placement_of, linked_here=self._linked_here
        )
        placement.on_link_taken(self._close_link_taken_elsewhere)
        placement.serve_events(self._send_event_here)
        for agent_id, transport in self._transports.items():
            if transport.spec.placement == "leased":
                cluster.want_lease(agent_id)
        placement.announce(self._linked_agents())

    def _placement_of(self, agent_id: str) -> registry.Placement | None:
        transport = self._transports.get(agent_id)
        return transport.spec.placement if transport is not None else None

    def _linked_here(self, agent_id: str) -> bool:
        transport = self._transports.get(agent_id)
        return (
            transport is not None and transport.spec.placement == "linked" and transport.connected
        )

    def _linked_agents(self) -> list[str]:
        return [agent_id for agent_id in self._transports if self._linked_here(agent_id)]

    def _link_changed(self, agent_id: str, opened: bool, link_id: str | None) -> None:
        """A link of ``agent_id`` here opened or closed: wake ``wait_connected``, tell the
        others, move waiting turns."""
        if opened:
            self._attached.set()  # a fresh event for the next attach
            self._attached = asyncio.Event()
        if self._placement is not None:
            self._placement.announce(self._linked_agents())
            self._placement.check(agent_id)
            if opened and link_id is not None:
                self._placement.link_taken(agent_id, link_id)

    def _close_link_taken_elsewhere(self, agent_id: str, link_id: str) -> None:
        transport = self._transports.get(agent_id)
        if transport is not None:
            transport.close_link(link_id)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the transports configured so far (dial the ws-dial-out agents)."""
        self._started = True
        self._closing = False
        if self.context.http.is_closed:  # started again after a stop
            self.context.http = httpx.AsyncClient(follow_redirects=False)
        for agent_id, transport in list(self._transports.items()):
            if transport.closed:  # stopped with the hub: a fresh one
                transport = self._build(agent_id, transport.kind, transport.url, transport.options)
                self._transports[agent_id] = transport
            transport.start()

    async def stop(self) -> None:
        """Close every transport (connections, waiting turns, tasks); bounded in time."""
        self._closing = True
        self._started = False
        self.context.pull.stop()
        closing = [t.aclose() for t in self._transports.values()]
        if closing:
            _, still = await asyncio.wait(
                [asyncio.ensure_future(c) for c in closing], timeout=STOP_TIMEOUT + 1.0
            )
            for task in still:
                task.cancel()
        await self.context.http.aclose()

    # -- configuration -------------------------------------------------------------------------

    def configure(
        self,
        agent_id: str,
        transport: TransportName,
        url: str | None = None,
        options: JsonObject | None = None,
    ) -> None:
        """Register or update an agent.

        A new transport kind or URL replaces the agent's transport (the old one is closed);
        new options alone are handed to the one it has.

        Raises:
            ConfigError: unknown transport, or a URL that does not fit the transport.
        """
        current = self._transports.get(agent_id)
        if current is not None and current.kind == transport and current.url == url:
            current.options = dict(options or {})
        else:
            fresh = self._build(agent_id, transport, url, options)
            if current is not None:
                log_event(logging.INFO, "agent reconfigured", agent_id, transport=transport)
                self._retire(current, "agent reconfigured")
            else:
                self.metrics.agent_connected.labels(agent_id).set(0)
            self._transports[agent_id] = current = fresh
        self.cluster.want_lease(agent_id, current.spec.placement == "leased")
        if self._started:
            current.start()

    def install(self, agent_id: str, transport: AgentTransport) -> None:
        """Run ``agent_id``'s turns on a ready transport (e.g. ``MockAgentTransport``)."""
        transport.agent_id = agent_id
        current = self._transports.get(agent_id)
        if current is not None and current is not transport:
            self._retire(current, "agent reconfigured")
        self._transports[agent_id] = transport
        if self._started:
            transport.start()

    def _build(
        self, agent_id: str, kind: str, url: str | None, options: JsonObject | None
    ) -> AgentTransport:
        cls = registry.load(kind)
        return cls(agent_id, url, dict(options or {}), self.context)  # type: ignore[call-arg]

    def _retire(self, transport: AgentTransport, reason: str) -> None:
        task = asyncio.ensure_future(transport.aclose(reason))
        task.add_done_callback(_log_close_failure)

    def remove(self, agent_id: str) -> None:
        """Forget an agent: close its transport (connections, waiting turns)."""
        transport = self._transports.pop(agent_id, None)
        if transport is None:
            return
        self._retire(transport, "agent was removed")
        self.metrics.agent_connected.labels(agent_id).set(0)
        self.cluster.want_lease(agent_id, False)
        if self.cluster.distributed:
            release = asyncio.ensure_future(self.cluster.release(agent_id))
            release.add_done_callback(_log_close_failure)
            self._link_changed(agent_id, False, None)

    # -- questions -----------------------------------------------------------------------------

    def is_connected(self, agent_id: str) -> bool:
        """Whether the agent is reachable right now (a puller: polled lately)."""
        transport = self._transports.get(agent_id)
        return transport is not None and transport.connected

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
        rows = []
        for agent_id, transport in self._transports.items():
            row = transport.status()
            self.metrics.agent_connected.labels(agent_id).set(1 if row.connected else 0)
            rows.append(row)
        return rows

    # -- turns and events ----------------------------------------------------------------------

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        """Run one turn on its agent's transport and return how the agent ended it.

        An agent not configured here is taken for a dial-in agent that may still connect.

        Raises:
            AgentUnavailable: the agent could not be reached before ``req.deadline``.
            AgentTimeout: it got the turn but did not answer in time.
            AgentElsewhere: another replica should run it (``placement``).
            TurnCancelled: ``cancel_turn`` withdrew it meanwhile.
        """
        if self._closing:
            raise AgentUnavailable("agent hub is stopping")
        transport = self._transports.get(req.agent_id) or self._dial_in(req.agent_id)
        if self._placement is None:
            return await transport.run_turn(req)
        return await self._placement.run(req.agent_id, transport.run_turn(req))

    def cancel_turn(
        self, agent_id: str, turn_key: str, conversation_id: str, reason: str = "superseded"
    ) -> None:
        """Withdraw a turn the pipeline no longer wants answered (protocol 1.1 ``cancel``).

        A ``run_turn`` for ``turn_key`` waiting in this process raises ``TurnCancelled`` at
        once (the conversation's slot is free for the next turn). The agent is told where its
        transport can tell it: a ``cancel`` frame over WebSocket (ws-dial-out, ws-dial-in) or
        POSTed (http-webhook, whose request in flight is cancelled); an openai or mock turn's
        task is cancelled; an http-pull turn is taken back, and a reply to it is refused.
        Answers the agent still sends for it are dropped. Best effort: does not wait for the
        frame to go out, never raises; an unknown agent or turn (done, never here, or running
        on another replica) is a no-op.
        """
        transport = self._transports.get(agent_id)
        if transport is None:
            return
        try:
            found = transport.cancel_turn(turn_key, conversation_id, reason)
        except Exception:
            log_event(logging.ERROR, "cancelling a turn failed", agent_id, turn_key, exc_info=True)
            return
        if not found:
            log_event(logging.DEBUG, "no turn to cancel here", agent_id, turn_key)

    async def send_event(self, agent_id: str, frame: JsonObject) -> bool:
        """Send a frame that expects no answer (``conversation_event``; since protocol 1.3
        ``session_*``, ``system_message``, ``warning_message``).

        A frame of a feature the agent did not announce (``FEATURE_OF``: its ``hello``, or
        its config's ``options.features``) is not sent: it is counted
        (``agent_frames_withheld``) and False returned. With several replicas, an agent with
        no link here gets it over another replica's, which decides by the agent's ``hello``
        there.

        Returns:
            False if the agent is not reachable, cannot take events, did not announce the
            frame's feature, or the send failed.
        """
        transport = self._transports.get(agent_id)
        if transport is not None and (transport.connected or transport.spec.placement != "linked"):
            if not self._may_receive(transport, frame):
                return False
        if await self._send_event_here(agent_id, frame):
            return True
        if self._placement is not None and not self._linked_here(agent_id):
            return await self._placement.send_event_elsewhere(agent_id, frame)
        return False

    async def _send_event_here(self, agent_id: str, frame: JsonObject) -> bool:
        transport = self._transports.get(agent_id)
        if transport is None or not self._may_receive(transport, frame):
            return False
        return await transport.send_event(frame)

    def _may_receive(self, transport: AgentTransport, frame: JsonObject) -> bool:
        """Whether the agent announced the feature of ``frame``'s type (counted if not)."""
        kind = str(frame.get("type"))
        if agent_may_receive(kind, transport.features):
            return True
        self.metrics.agent_frames_withheld.labels(transport.agent_id, kind).inc()
        log_event(
            logging.DEBUG,
            "frame withheld: feature not announced",
            transport.agent_id,
            type=kind,
            feature=FEATURE_OF.get(kind),
        )
        return False

    # -- dial-in -------------------------------------------------------------------------------

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
        known = self._transports.get(agent_id)
        if known is not None and not isinstance(known, DialInTransport):
            await dial_in.refuse(
                websocket, "unauthorized", f"agent {agent_id!r} is configured for {known.kind}"
            )
            return
        if self._closing:
            await websocket.close(1012, "bridge restarting")
            return
        await (known or self._dial_in(agent_id)).serve(websocket, hello)

    def _dial_in(self, agent_id: str) -> DialInTransport:
        """A transport for an agent not configured here that connects (or may) by itself."""
        transport = DialInTransport(agent_id, None, {}, self.context)
        self._transports[agent_id] = transport
        return transport


def _log_close_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log_event(logging.ERROR, "closing an agent transport failed", "?", error=task.exception())
