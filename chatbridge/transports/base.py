"""What the pipeline asks of agent transports, in neutral terms.

The pipeline hands a ``TurnRequest`` (a ready ``user_message`` frame) to the ``AgentHub``
(``chatbridge.transports.hub``), which keeps one ``AgentTransport`` per agent and returns one
``AgentOutcome`` per turn, or raises ``AgentUnavailable`` / ``AgentTimeout`` — or
``TurnCancelled`` when the pipeline withdrew the turn meanwhile (``cancel_turn``).

``AgentTransport`` is the whole extension point, as httpx's ``AsyncBaseTransport`` is: run a
turn, cancel one, send an event, say whether the agent is connected and how it has been
doing, close.
One module per kind implements it (``dial_out``, ``dial_in``, ``pull``, ``webhook``,
``openai``; ``registry`` names them), and ``mock.MockAgentTransport`` wraps a plain function.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from chatbridge.errors import AgentUnavailable, TurnCancelled
from chatbridge.models import JsonObject
from chatbridge.protocol import negotiate
from chatbridge.transports.registry import TransportSpec

OutcomeKind = Literal["reply", "no_reply", "handoff", "agent_handoff", "error"]


@dataclass(slots=True)
class TurnRequest:
    """One turn to run on one agent.

    ``frame`` is the complete ``user_message`` dict (``message_id`` = ``turn_key``);
    ``deadline`` is a ``time.time()`` instant after which the hub stops waiting.
    """

    turn_key: str
    seq: int
    agent_id: str
    conversation_id: str
    frame: JsonObject
    deadline: float


@dataclass(slots=True)
class AgentOutcome:
    """How the agent ended a turn: the first of agent_message / agent_complete / no_reply /
    handoff / agent_handoff / error_message. ``summary`` is a handoff's note for the human
    (protocol 1.1), None when the agent sent none; ``template`` and ``interactive`` (1.2) and
    ``data`` (1.3, rich data) come with a reply. An ``agent_handoff`` (1.3) names its target
    in ``to_agent`` or ``to_role``, with ``reason`` and the ``content`` to send first."""

    kind: OutcomeKind
    content: str | None = None
    attachments: list[JsonObject] = field(default_factory=list)
    metadata: JsonObject = field(default_factory=dict)
    reason: str | None = None
    error_code: str | None = None
    error_details: Any = None
    streamed_chunks: int = 0
    summary: str | None = None
    # protocol 1.2: a template to send, choices to offer (their JSON as the frame had them)
    template: JsonObject | None = None
    interactive: JsonObject | None = None
    # protocol 1.3: rich data on a reply; the target of an agent_handoff
    data: JsonObject | None = None
    to_agent: str | None = None
    to_role: str | None = None

    def extras(self) -> JsonObject:
        """What a reply carries beyond text and attachments (``template``, ``interactive``,
        ``data``), as a message delivery's payload and the reply message's meta hold it."""
        out: JsonObject = {}
        if self.template:
            out["template"] = self.template
        if self.interactive:
            out["interactive"] = self.interactive
        if self.data:
            out["data"] = self.data
        return out


@dataclass(slots=True)
class AgentStatus:
    agent_id: str
    transport: str
    connected: bool
    last_seen: float | None
    in_flight: int
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    turns_answered: int


# Callbacks the hub calls for frames that are not the answer to a turn:
#   on_proactive(agent_id, frame)  -- agent_message / handoff / agent_handoff with
#                                     conversation_id, no message_id
#   on_typing(agent_id, conversation_id, on)
#   on_chunk(turn_key, conversation_id, stream_index, content)  -- streamed text as it arrives
#   on_live(agent_id, frame)    -- protocol 1.3 status_update, progress_update, file_processing,
#                                  file_complete, file_error; ``conversation_id`` always set
#                                  (from the open turn when the agent named only message_id)
#   on_notice(agent_id, frame)  -- protocol 1.3 system_message, warning_message
ProactiveCallback = Callable[[str, JsonObject], Awaitable[None]]
TypingCallback = Callable[[str, str, bool], Awaitable[None]]
ChunkCallback = Callable[[str, str, int, str], Awaitable[None]]
LiveCallback = Callable[[str, JsonObject], Awaitable[None]]
NoticeCallback = Callable[[str, JsonObject], Awaitable[None]]


def announced_features(options: JsonObject) -> frozenset[str]:
    """The protocol 1.3 features an agent's config announces (``options.features``), of
    those the bridge knows; nothing when the option is missing or not a list."""
    listed = options.get("features")
    if not isinstance(listed, list):
        return frozenset()
    return negotiate(None, [name for name in listed if isinstance(name, str)])[1]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a transport can carry at all; the contract suite checks the rest of it.

    An openai model cannot decline to answer or hand a conversation over (to a human or, since
    protocol 1.3, to another agent), and neither an openai nor an http-pull agent can be sent
    an event (nothing reaches it but its turns).
    ``cancel``: the agent learns that a turn was withdrawn (a ``cancel`` frame, or its request
    cut); an http-pull agent does not, and only finds its late answer refused.
    ``live``: the agent can report while it works (protocol 1.3 status, progress and file
    frames, notices), which reach ``TransportContext.on_live`` / ``on_notice``; an openai
    model cannot, nor can a mock's plain function.
    """

    no_reply: bool = True
    handoff: bool = True
    events: bool = True
    cancel: bool = True
    live: bool = True


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


LATENCY_WINDOW = 100
"""Answer latencies kept per agent for ``AgentStatus``' percentiles."""


@dataclass(slots=True)
class TurnStats:
    """How an agent has been answering: count, recent latencies, last sign of life."""

    answered: int = 0
    last_seen: float | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record(self, seconds: float) -> None:
        """One turn answered after ``seconds``."""
        self.answered += 1
        self.latencies_ms.append(seconds * 1000)


class AgentTransport:
    """One agent's way to and from the bridge (see the module docstring).

    Subclasses set ``spec`` and ``capabilities`` and implement ``run_turn`` and ``connected``;
    the rest has defaults for a transport with nothing open between turns.
    """

    spec: ClassVar[TransportSpec]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(
        self, agent_id: str, url: str | None = None, options: JsonObject | None = None
    ) -> None:
        self.spec.check_url(agent_id, url)  # ConfigError: a URL this transport cannot use
        self.agent_id = agent_id
        self.url = url
        self.options: JsonObject = dict(options or {})
        """Settings beyond the URL (a webhook's secret, a model's name); the hub replaces them
        when the agent's config changes, and a turn reads them when it starts."""
        self.stats = TurnStats()
        self.closed = False

    @property
    def kind(self) -> str:
        """The transport's name (``AgentStatus.transport``)."""
        return self.spec.kind

    @property
    def features(self) -> frozenset[str]:
        """The protocol 1.3 features the agent takes (``FEATURES``): what its config's
        ``options.features`` announce; a dial-in agent's come from its ``hello`` instead.
        ``AgentHub.send_event`` sends a gated frame (``FEATURE_OF``) only with its feature."""
        return announced_features(self.options)

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        """Run one turn on the agent and return how the agent ended it.

        Raises:
            AgentUnavailable: the agent could not be reached before ``req.deadline``.
            AgentTimeout: it got the turn but did not answer before ``req.deadline``.
        """
        raise NotImplementedError

    def cancel_turn(self, turn_key: str, conversation_id: str, reason: str = "superseded") -> bool:
        """Withdraw a turn: a ``run_turn`` waiting for it here raises ``TurnCancelled`` at once,
        and the agent is told where the transport can tell it (protocol ``cancel``). Best
        effort and without waiting: sending the ``cancel`` frame happens in the background.

        Returns:
            True when a turn with this key was waiting here; False for an unknown key.
        """
        return False

    async def send_event(self, frame: JsonObject) -> bool:
        """Send a frame that expects no answer (``conversation_event``).

        Returns:
            False when it was not delivered, or this transport cannot carry events.
        """
        return False

    @property
    def connected(self) -> bool:
        """Whether the agent is reachable right now, as far as this transport can tell."""
        raise NotImplementedError

    def in_flight(self) -> int:
        """Turns sent (or being offered) and not answered yet."""
        return 0

    def status(self) -> AgentStatus:
        """The agent's row for ``/agents/status``."""
        latencies = list(self.stats.latencies_ms)
        return AgentStatus(
            agent_id=self.agent_id,
            transport=self.kind,
            connected=self.connected,
            last_seen=self.stats.last_seen,
            in_flight=self.in_flight(),
            latency_ms_p50=percentile(latencies, 50),
            latency_ms_p95=percentile(latencies, 95),
            turns_answered=self.stats.answered,
        )

    def start(self) -> None:
        """Open what the transport keeps open (a dial-out connection); called again after a
        restart of the hub. Must not block."""

    def close_link(self, link_id: str) -> None:
        """The agent re-opened its connection ``link_id`` on another replica: drop it here."""

    async def aclose(self, reason: str = "bridge shutting down") -> None:
        """Release everything: connections, background tasks; waiting turns fail with
        ``AgentUnavailable`` naming ``reason``. Later turns fail the same way."""
        self.closed = True


class LocalTurns(AgentTransport):
    """A transport whose turns run as this process's own tasks (openai, mock): it counts
    them, and closing it cancels them; a turn cut off that way ends as ``AgentUnavailable``.
    ``cancel_turn`` cancels the one turn's task (its HTTP request with it), which then ends
    as ``TurnCancelled``."""

    def __init__(
        self, agent_id: str, url: str | None = None, options: JsonObject | None = None
    ) -> None:
        super().__init__(agent_id, url, options)
        self._running: set[asyncio.Task[object]] = set()
        self._by_key: dict[str, asyncio.Task[object]] = {}
        self._withdrawn: dict[asyncio.Task[object], TurnCancelled] = {}

    @asynccontextmanager
    async def running_turn(self, turn_key: str | None = None) -> AsyncIterator[None]:
        """Around one turn's work in ``run_turn``; ``turn_key`` lets ``cancel_turn`` find it.

        Raises:
            AgentUnavailable: the transport is closed, or was closed during the turn.
            TurnCancelled: ``cancel_turn`` withdrew the turn during its work.
        """
        if self.closed:
            raise AgentUnavailable(f"agent {self.agent_id!r} transport is closed")
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            if turn_key is not None:
                self._by_key[turn_key] = task
        try:
            yield
        except asyncio.CancelledError:
            withdrawn = self._withdrawn.get(task) if task is not None else None
            if task is None or not (self.closed or withdrawn) or task.uncancel() > 0:
                raise  # cancelled by its caller (too): stay cancelled
            if withdrawn is not None:
                raise withdrawn from None
            raise AgentUnavailable(f"agent {self.agent_id!r} transport closed") from None
        finally:
            self._running.discard(task)
            if task is not None:
                self._withdrawn.pop(task, None)
                if turn_key is not None and self._by_key.get(turn_key) is task:
                    del self._by_key[turn_key]

    def cancel_turn(self, turn_key: str, conversation_id: str, reason: str = "superseded") -> bool:
        task = self._by_key.get(turn_key)
        if task is None or task.done():
            return False
        if task not in self._withdrawn:
            self._withdrawn[task] = TurnCancelled(turn_key, reason)
            task.cancel()
        return True

    def in_flight(self) -> int:
        return len(self._running)

    async def aclose(self, reason: str = "bridge shutting down") -> None:
        """Stop the turns still running; they end as ``AgentUnavailable``."""
        self.closed = True
        for task in list(self._running):
            if task not in self._withdrawn:  # already being cancelled: it ends TurnCancelled
                task.cancel()
