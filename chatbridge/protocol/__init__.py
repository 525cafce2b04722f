"""Agent protocol v1 (``chatbridge/1``): the messages the bridge and an agent exchange.

The models here are the single source of truth for the wire format described in
``docs/agent-protocol.md``; the JSON Schema published at ``GET /api/protocol/schema.json``
is generated from them (``protocol_json_schema()``). Both sides use them: the bridge's
``AgentHub`` reads agent frames with ``parse_agent_frame()``, the agent SDK reads bridge frames
with ``parse_bridge_frame()``. Import everything from here; the modules hold:

- ``base``: names, limits, the ``Frame`` base, ``ProtocolError``, the frames both sides send;
- ``bridge_frames`` / ``agent_frames``: the messages of each direction;
- ``negotiation``: the revision and features an agent and the bridge agree on (1.3);
- ``schema``: the JSON Schema.

Every message is a JSON object with a ``type``; unknown fields are ignored so either side may
add optional fields without breaking the other. Such additions are counted in
``PROTOCOL_REVISION`` (the wire name stays ``chatbridge/1``) and each names the revision it
came with in its schema description ("Since 1.1"): an agent written for 1.0 keeps working.
The few timing rules every transport shares (heartbeat, dead-connection detection, reconnect
backoff) live here too, as plain values and functions.
"""

from __future__ import annotations

import json
import random
from typing import Annotated, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from chatbridge.models import JsonObject
from chatbridge.protocol.agent_frames import (
    Ack,
    AgentComplete,
    AgentHandoff,
    AgentMessage,
    AgentStreaming,
    FileComplete,
    FileError,
    FileProcessing,
    Handoff,
    Hello,
    Interactive,
    InteractiveOption,
    NoReply,
    ProgressUpdate,
    StatusUpdate,
    TemplateReply,
    Typing,
)
from chatbridge.protocol.base import (
    DEAD_AFTER_INTERVALS,
    HANDOFF_SUMMARY_MAX,
    LEGACY_REVISION,
    NOTICE_MAX,
    PROTOCOL,
    PROTOCOL_REVISION,
    STATUS_MAX,
    ErrorMessage,
    Frame,
    Ping,
    Pong,
    ProtocolError,
    SystemMessage,
    Timestamp,
    WarningMessage,
    utc_now_iso,
)
from chatbridge.protocol.bridge_frames import (
    Cancel,
    ConversationEvent,
    FileRef,
    HelloError,
    HelloOk,
    HistoryMessage,
    Sender,
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    TurnContext,
    UserMessage,
)
from chatbridge.protocol.negotiation import (
    FEATURE_OF,
    FEATURES,
    agent_may_receive,
    negotiate,
)
from chatbridge.protocol.schema import (
    protocol_json_schema,
)

__all__ = [
    "AGENT_TYPES",
    "BRIDGE_TYPES",
    "DEAD_AFTER_INTERVALS",
    "FEATURES",
    "FEATURE_OF",
    "HANDOFF_SUMMARY_MAX",
    "LEGACY_REVISION",
    "LIVE_TYPES",
    "NOTICE_MAX",
    "NOTICE_TYPES",
    "PROTOCOL",
    "PROTOCOL_REVISION",
    "STATUS_MAX",
    "TURN_ENDING_TYPES",
    "Ack",
    "AgentComplete",
    "AgentFrame",
    "AgentHandoff",
    "AgentMessage",
    "AgentStreaming",
    "BridgeFrame",
    "Cancel",
    "ConversationEvent",
    "ErrorMessage",
    "FileComplete",
    "FileError",
    "FileProcessing",
    "FileRef",
    "Frame",
    "Handoff",
    "Hello",
    "HelloError",
    "HelloOk",
    "HistoryMessage",
    "Interactive",
    "InteractiveOption",
    "NoReply",
    "Ping",
    "Pong",
    "ProgressUpdate",
    "ProtocolError",
    "Sender",
    "SessionCreated",
    "SessionExpired",
    "SessionUpdated",
    "StatusUpdate",
    "SystemMessage",
    "TemplateReply",
    "Timestamp",
    "TurnContext",
    "Typing",
    "UserMessage",
    "WarningMessage",
    "agent_may_receive",
    "decode_frame",
    "dumps",
    "error_frame",
    "negotiate",
    "parse_agent_frame",
    "parse_bridge_frame",
    "protocol_json_schema",
    "reconnect_delay",
    "utc_now_iso",
]

# Jitter from a generator of our own: the global ``random`` state belongs to the application
# (and to test tools such as Hypothesis, which treat a change to it as a bug).
_JITTER = random.Random()

_F = TypeVar("_F")


BridgeFrame = Annotated[
    UserMessage
    | Cancel
    | Ping
    | Pong
    | HelloOk
    | HelloError
    | ErrorMessage
    | ConversationEvent
    | SessionCreated
    | SessionUpdated
    | SessionExpired
    | SystemMessage
    | WarningMessage,
    Field(discriminator="type"),
]
"""Any message the bridge sends to an agent."""

AgentFrame = Annotated[
    AgentMessage
    | AgentStreaming
    | AgentComplete
    | Typing
    | Handoff
    | NoReply
    | ErrorMessage
    | Ack
    | Ping
    | Pong
    | Hello
    | AgentHandoff
    | StatusUpdate
    | ProgressUpdate
    | SystemMessage
    | WarningMessage
    | FileProcessing
    | FileComplete
    | FileError,
    Field(discriminator="type"),
]
"""Any message an agent sends to the bridge."""

_BRIDGE_ADAPTER: TypeAdapter[BridgeFrame] = TypeAdapter(BridgeFrame)
_AGENT_ADAPTER: TypeAdapter[AgentFrame] = TypeAdapter(AgentFrame)

BRIDGE_TYPES = frozenset(
    ("user_message", "cancel", "ping", "pong", "hello_ok", "hello_error", "error_message",
     "conversation_event", "session_created", "session_updated", "session_expired",
     "system_message", "warning_message")
)  # fmt: skip
AGENT_TYPES = frozenset(
    ("agent_message", "agent_streaming", "agent_complete", "typing", "handoff", "no_reply",
     "error_message", "ack", "ping", "pong", "hello", "agent_handoff", "status_update",
     "progress_update", "system_message", "warning_message", "file_processing",
     "file_complete", "file_error")
)  # fmt: skip

LIVE_TYPES = frozenset(
    ("status_update", "progress_update", "file_processing", "file_complete", "file_error")
)
"""Agent frames shown live and never stored (``TransportContext.on_live``)."""

NOTICE_TYPES = frozenset(("system_message", "warning_message"))
"""Notices into a conversation (``TransportContext.on_notice``)."""

TURN_ENDING_TYPES = frozenset(
    ("agent_message", "agent_complete", "no_reply", "handoff", "error_message", "agent_handoff")
)
"""The first of these naming a turn ends it."""


def decode_frame(data: str | bytes | bytearray | JsonObject) -> JsonObject:
    """Decode a frame into a JSON object without checking its type or fields.

    Raises:
        ProtocolError: ``invalid_json`` when it is not JSON or not an object.
    """
    if isinstance(data, dict):
        return data
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError("invalid_json", "frame is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("invalid_json", "frame is not a JSON object")
    return obj


def _validation_details(exc: ValidationError) -> list[JsonObject]:
    return [
        {"loc": [str(part) for part in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _parse(obj: JsonObject, adapter: TypeAdapter[_F], known: frozenset[str]) -> _F:
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in known:
        raise ProtocolError(
            "unknown_type", f"unknown message type {kind!r}"[:200], details={"type": kind}
        )
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        raise ProtocolError(
            "invalid_message", f"invalid {kind} message", details=_validation_details(exc)
        ) from exc
    except (RecursionError, ValueError, TypeError) as exc:  # pathological nesting or numbers
        raise ProtocolError("invalid_message", f"invalid {kind} message") from exc


def parse_agent_frame(data: str | bytes | bytearray | JsonObject) -> AgentFrame:
    """Read one agent → bridge message.

    Args:
        data: a WebSocket text/binary frame, an HTTP body, or an already decoded object.

    Returns:
        The typed message. An object without ``type`` but with ``message_id`` and ``content``
        (the seed bridge's reply format) is read as ``agent_message``.

    Raises:
        ProtocolError: ``invalid_json``, ``unknown_type`` or ``invalid_message``.
    """
    obj = decode_frame(data)
    if "type" not in obj:
        if "message_id" in obj and "content" in obj:
            obj = {**obj, "type": "agent_message"}
        else:
            raise ProtocolError("invalid_message", "message has no type")
    return _parse(obj, _AGENT_ADAPTER, AGENT_TYPES)


def parse_bridge_frame(data: str | bytes | bytearray | JsonObject) -> BridgeFrame:
    """Read one bridge → agent message (the agent SDK's side of ``parse_agent_frame``).

    Raises:
        ProtocolError: ``invalid_json``, ``unknown_type`` or ``invalid_message``.
    """
    obj = decode_frame(data)
    if "type" not in obj:
        raise ProtocolError("invalid_message", "message has no type")
    return _parse(obj, _BRIDGE_ADAPTER, BRIDGE_TYPES)


def error_frame(
    error_code: str, *, message_id: str | None = None, details: object = None
) -> JsonObject:
    """An ``error_message`` ready to send (``message_id`` only when it names a turn)."""
    frame: JsonObject = {"type": "error_message", "error_code": error_code}
    if message_id is not None:
        frame["message_id"] = message_id
    if details is not None:
        frame["error_details"] = details
    return frame


def dumps(frame: JsonObject) -> str:
    """Serialise a frame compactly, keeping non-ASCII text readable (and smaller)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def reconnect_delay(
    attempt: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """How long to wait before reconnect attempt ``attempt`` (0-based).

    Exponential backoff with full jitter: a uniform draw in ``[0, min(maximum, initial *
    2**attempt)]``, so many clients that lost the same server do not come back in lockstep.
    """
    if attempt < 0:
        attempt = 0
    ceiling = min(maximum, initial * (2 ** min(attempt, 62)))
    ceiling = max(ceiling, 0.0)
    return (rng or _JITTER).uniform(0.0, ceiling)
