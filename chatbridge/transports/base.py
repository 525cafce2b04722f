"""What the pipeline asks of agent transports, in neutral terms.

The pipeline hands a ``TurnRequest`` (a ready ``user_message`` frame) to the ``AgentHub``
(``chatbridge.transports.hub``), which owns every agent connection (dial-out and dial-in) and
returns one ``AgentOutcome`` per turn, or raises ``AgentUnavailable`` / ``AgentTimeout``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

OutcomeKind = Literal["reply", "no_reply", "handoff", "error"]


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
    frame: dict[str, Any]
    deadline: float


@dataclass(slots=True)
class AgentOutcome:
    """How the agent ended a turn: the first of agent_message / agent_complete / no_reply /
    handoff / error_message."""

    kind: OutcomeKind
    content: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    error_code: str | None = None
    error_details: Any = None
    streamed_chunks: int = 0


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
#   on_proactive(agent_id, frame)  -- agent_message / handoff with conversation_id, no message_id
#   on_typing(agent_id, conversation_id, on)
#   on_chunk(turn_key, conversation_id, stream_index, content)  -- streamed text as it arrives
ProactiveCallback = Callable[[str, dict[str, Any]], Awaitable[None]]
TypingCallback = Callable[[str, str, bool], Awaitable[None]]
ChunkCallback = Callable[[str, str, int, str], Awaitable[None]]
