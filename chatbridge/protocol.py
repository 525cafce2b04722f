"""Agent protocol v1 (``chatbridge/1``): the messages the bridge and an agent exchange.

The models here are the single source of truth for the wire format described in
``contracts/agent-protocol.md``; the JSON Schema published at ``GET /api/protocol/schema.json``
is generated from them (``protocol_json_schema()``). Both sides use them: the bridge's
``AgentHub`` reads agent frames with ``parse_agent_frame()``, the agent SDK reads bridge frames
with ``parse_bridge_frame()``.

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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaMode

from chatbridge.errors import ChatbridgeError
from chatbridge.models import JsonObject
from chatbridge.richdata import RichData

# Jitter from a generator of our own: the global ``random`` state belongs to the application
# (and to test tools such as Hypothesis, which treat a change to it as a bug).
_JITTER = random.Random()

_F = TypeVar("_F")

PROTOCOL = "chatbridge/1"

PROTOCOL_REVISION = "1.3"
"""The minor revision of ``chatbridge/1`` this module speaks. 1.1 (conversation policies):
``user_message.fresh``, the ``cancel`` frame, ``handoff.summary``. 1.2 (WhatsApp complete):
``template`` and ``interactive`` on an agent's reply. 1.3 (the whole envelope): status,
progress, notice, file and session frames, files and the addressed agent on a turn, rich
``data`` on a reply, ``agent_handoff``, and ``hello`` negotiating version and features. Only
optional fields and frames an older agent may ignore are added (the bridge sends the new
bridge → agent frames only to an agent that announced their feature), so the wire name does
not change."""

LEGACY_REVISION = "1.2"
"""The revision assumed for an agent whose ``hello`` names none (it predates negotiation)."""

FEATURES = frozenset(
    ("status", "progress", "notices", "sessions", "files", "file_events", "rich_data",
     "agent_handoff")
)  # fmt: skip
"""Optional features of revision 1.3 an agent may announce (``hello.features``, or its config
options' ``features`` on the transports without a ``hello``)."""

FEATURE_OF: dict[str, str] = {
    "session_created": "sessions",
    "session_updated": "sessions",
    "session_expired": "sessions",
    "system_message": "notices",
    "warning_message": "notices",
}
"""The bridge → agent frame types only an agent that announced their feature receives."""

STATUS_MAX = 200
"""Longest ``status_update`` / ``progress_update`` line."""

NOTICE_MAX = 2000
"""Longest ``system_message`` / ``warning_message`` text."""

HANDOFF_SUMMARY_MAX = 4000
"""Longest ``handoff.summary`` kept; a longer one is cut here rather than the handoff refused."""

DEAD_AFTER_INTERVALS = 3
"""No traffic at all for this many heartbeat intervals means the connection is dead."""


class ProtocolError(ChatbridgeError):
    """A frame that is not a valid protocol v1 message.

    ``code`` is what goes into the ``error_message`` answered to the peer: ``invalid_json``
    (not JSON, or not a JSON object), ``unknown_type`` (a ``type`` this side does not read) or
    ``invalid_message`` (a known type whose fields are wrong).
    """

    def __init__(self, code: str, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def utc_now_iso() -> str:
    """The current instant as an ISO 8601 UTC string, the protocol's timestamp format."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _timestamp(value: object) -> object:
    """Accept ``datetime`` (naive = UTC) or epoch seconds where the wire wants an ISO string."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            return value  # left for the str validator to refuse
    return value


Timestamp = Annotated[str, BeforeValidator(_timestamp)]
"""ISO 8601 UTC instant; ``datetime`` values and epoch seconds are converted on the way in."""


class _Model(BaseModel):
    # Numbers are accepted where ids are strings: the seed format sends Chatwoot ids as ints.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class Frame(_Model):
    """Fields every message may carry."""

    message_id: str | None = None
    timestamp: Timestamp | None = None
    metadata: JsonObject | None = None


# --------------------------------------------------------------------------------------------
# parts of user_message


class HistoryMessage(_Model):
    """One customer message folded into a turn (debounce may merge several into one turn)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    id: str | None = None
    content: str | None = None
    created_at: Timestamp | None = None
    attachments: list[JsonObject] = Field(default_factory=list)


class Sender(_Model):
    """Who wrote, as the channel knows them."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None


class TurnContext(_Model):
    """Where the conversation lives on the channel side."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    channel: str | None = None
    created_at: Timestamp | None = None
    external_conversation_id: str | None = None
    additional_attributes: JsonObject = Field(default_factory=dict)


class FileRef(_Model):
    """Since 1.3. A file the customer attached, as the agent may fetch it."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    file_id: str
    file_name: str
    file_url: str = Field(
        description="A short-lived signed URL on the bridge serving the file's bytes."
    )
    mime: str
    size: int = Field(ge=0, description="In bytes.")


# --------------------------------------------------------------------------------------------
# bridge -> agent


class UserMessage(Frame):
    """One agent turn: the customer's message(s) and what the agent needs to answer them.

    ``message_id`` is the turn id the agent echoes in its answer; ``seq`` counts per agent and
    serves ``ack`` and dial-in resume. A turn may carry several customer messages
    (``messages``, in order; ``content`` is their text newline-joined); ``fresh`` (since 1.1)
    says the bot's session for the conversation expired and a new context starts.
    """

    type: Literal["user_message"] = "user_message"
    protocol: str = PROTOCOL
    message_id: str
    seq: int | None = None
    conversation_id: str
    inbox_id: int | None = None
    channel: str | None = None
    content: str = Field(
        default="",
        description=(
            "Every customer message of the turn, in the order they were written, joined by "
            "newlines (the text of `messages`)."
        ),
    )
    messages: list[HistoryMessage] = Field(
        default_factory=list,
        description=(
            "The customer messages this turn carries, oldest first: one, or several when "
            "messages written in a quick burst were merged into one turn (debounce), or held "
            "while the agent was answering. Each keeps its own id, time and attachments."
        ),
    )
    sender: Sender | None = None
    context: TurnContext | None = None
    response_mode: Literal["sync", "async"] = "async"
    deadline: Timestamp | None = None
    fresh: bool = Field(
        default=False,
        description=(
            "Since 1.1. True when the bot's session for this conversation had expired (no "
            "activity for the route's `expire_after`): start a new context and forget what "
            "you kept about this conversation. Absent or false: carry on as before."
        ),
    )
    files: list[FileRef] = Field(
        default_factory=list,
        description=(
            "Since 1.3. The files the customer attached to this turn's messages; each "
            "`file_url` is a short-lived signed URL serving its bytes."
        ),
    )
    agent: str | None = Field(
        default=None,
        description=(
            "Since 1.3. The agent id this turn is addressed to, when the route has several agents."
        ),
    )
    role: str | None = Field(
        default=None,
        description="Since 1.3. That agent's role on the route (`guide`, `billing`, …).",
    )


class Cancel(Frame):
    """Since 1.1. The bridge no longer wants an answer to the turn ``message_id``.

    Sent when a newer customer message superseded the turn (``reason`` ``superseded``): the
    bridge starts a new turn with every message instead. Stop working on it; an answer the
    agent still sends for it is discarded by the bridge. An agent that does not know this
    frame may ignore it (answering ``error_message`` ``unknown_type`` is harmless too).
    """

    type: Literal["cancel"] = "cancel"
    message_id: str = Field(description="The turn (`user_message.message_id`) to stop.")
    conversation_id: str | None = None
    reason: str = Field(
        default="superseded",
        description="Why: `superseded` (a newer customer message replaced the turn).",
    )


class Ping(Frame):
    """Heartbeat; either side sends it and the other answers ``pong``."""

    type: Literal["ping"] = "ping"


class Pong(Frame):
    """Answer to ``ping``."""

    type: Literal["pong"] = "pong"


class HelloOk(Frame):
    """Dial-in handshake accepted; tells the agent the heartbeat the bridge expects and (since
    1.3) the revision and features the two sides agreed on."""

    type: Literal["hello_ok"] = "hello_ok"
    agent_id: str
    protocol: str = PROTOCOL
    heartbeat_interval: float
    version: str | None = Field(
        default=None,
        description=(
            "Since 1.3. The negotiated revision: the lower of the agent's `hello.version` and "
            f"the bridge's; `{LEGACY_REVISION}` when the agent announced none."
        ),
    )
    features: list[str] = Field(
        default_factory=list,
        description=(
            "Since 1.3. The features both sides know, of those the agent announced: the "
            "bridge sends a feature's frames only when it is listed here."
        ),
    )


class HelloError(Frame):
    """Dial-in handshake refused; the bridge closes the connection (1008) right after."""

    type: Literal["hello_error"] = "hello_error"
    error_code: str
    message: str = ""


class ErrorMessage(Frame):
    """Something failed: a turn on the agent's side, or a frame the receiver could not read.

    Never answered with another ``error_message`` (that could loop).
    """

    type: Literal["error_message"] = "error_message"
    error_code: str
    error_details: Any = None


class ConversationEvent(Frame):
    """Something happened to a conversation the agent may care about (handoff, closed,
    reopened, owner changed, widget opened). ``event`` names it; ``data`` carries the details.

    ``conversation_id`` is absent when the event comes before the bridge has a conversation
    (e.g. a web chat widget opened before the first message).
    """

    type: Literal["conversation_event"] = "conversation_event"
    event: str
    conversation_id: str | None = None
    inbox_id: int | None = None
    channel: str | None = None
    owner: str | None = None
    reason: str | None = None
    sender: Sender | None = None
    data: JsonObject = Field(default_factory=dict)


class _Session(Frame):
    session_id: str = Field(min_length=1)
    conversation_id: str | None = None
    channel: str = Field(default="webchat", description="Where the session lives (`webchat`).")
    reason: str | None = None
    data: JsonObject = Field(default_factory=dict)


class SessionCreated(_Session):
    """Since 1.3. A visitor's web chat session started (feature `sessions`)."""

    type: Literal["session_created"] = "session_created"


class SessionUpdated(_Session):
    """Since 1.3. A web chat session changed: its visitor, page or conversation (feature
    `sessions`); `data` says what is new."""

    type: Literal["session_updated"] = "session_updated"


class SessionExpired(_Session):
    """Since 1.3. A web chat session ended (feature `sessions`); `reason` says why: `idle`
    (no activity for the session's lifetime), `ended` (the visitor or an operator ended it)."""

    type: Literal["session_expired"] = "session_expired"


class _Notice(Frame):
    conversation_id: str = Field(min_length=1)
    content: str = Field(min_length=1, max_length=NOTICE_MAX)


class SystemMessage(_Notice):
    """Since 1.3. A notice in a conversation, shown apart from the dialogue (both directions;
    to an agent only with feature `notices`). From an agent it is kept as a message by
    `system` and reaches the customer's channel only where the route's policy says so."""

    type: Literal["system_message"] = "system_message"


class WarningMessage(_Notice):
    """Since 1.3. Like `system_message`, shown as a warning."""

    type: Literal["warning_message"] = "warning_message"


# --------------------------------------------------------------------------------------------
# agent -> bridge


class TemplateReply(_Model):
    """Since 1.2. Send a stored message template (WhatsApp) instead of free text: the only
    kind of message Meta lets a business send once the 24-hour service window is closed."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field(min_length=1, max_length=512, description="The template's name.")
    language: str | None = Field(
        default=None,
        max_length=20,
        description="Its language code (`en_US`); omitted: the only language it is stored in.",
    )
    parameters: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "A value for every parameter slot, keyed by the slot's name as it appears in the "
            'template\'s text: `{{1}}` is `"1"`, `{{order_id}}` is `"order_id"`. A missing '
            "slot is refused before anything is sent."
        ),
    )


class InteractiveOption(_Model):
    """One choice of an interactive message."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    id: str = Field(
        min_length=1,
        max_length=200,
        description="Comes back in the customer's answer (`metadata.interactive.id`).",
    )
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=300)


class Interactive(_Model):
    """Since 1.2. Quick-reply buttons or a list the customer picks from. The reply's
    `content` is the question. Sent as a WhatsApp interactive message where the provider
    has one, as buttons in the web chat widget, and as numbered text elsewhere; the
    customer's choice comes back as a normal `user_message` whose message `metadata`
    carries `interactive: {id, title}`."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    kind: Literal["buttons", "list"] = "buttons"
    title: str | None = Field(default=None, max_length=60, description="A header line.")
    button: str | None = Field(
        default=None, max_length=20, description="A list's button label (WhatsApp: ≤ 20 chars)."
    )
    options: list[InteractiveOption] = Field(min_length=1, max_length=10)


class AgentMessage(Frame):
    """A complete reply. With ``message_id`` it answers that turn; without it, but with
    ``conversation_id``, it is a proactive message into that conversation."""

    type: Literal["agent_message"] = "agent_message"
    conversation_id: str | None = None
    content: str | None = None
    attachments: list[JsonObject] = Field(default_factory=list)
    template: TemplateReply | None = Field(
        default=None, description="Since 1.2. Send this stored template (WhatsApp)."
    )
    interactive: Interactive | None = Field(
        default=None, description="Since 1.2. Offer these choices with the reply."
    )
    data: RichData | None = Field(
        default=None,
        description=(
            "Since 1.3. Rich data (`cards`, `quick_replies`, `table`, `chart`, or any other "
            "kind) the web chat renders natively; every other channel receives a readable "
            "text fallback after `content`."
        ),
    )


class AgentStreaming(Frame):
    """One chunk of a streamed reply; ``stream_index`` counts from 0 with no gaps."""

    type: Literal["agent_streaming"] = "agent_streaming"
    message_id: str
    conversation_id: str | None = None
    stream_index: int = Field(ge=0)
    content: str


class AgentComplete(Frame):
    """End of a streamed reply; without ``content`` the reply is the chunks joined in order."""

    type: Literal["agent_complete"] = "agent_complete"
    message_id: str
    conversation_id: str | None = None
    content: str | None = None
    attachments: list[JsonObject] = Field(default_factory=list)
    template: TemplateReply | None = Field(
        default=None, description="Since 1.2. Send this stored template (WhatsApp)."
    )
    interactive: Interactive | None = Field(
        default=None, description="Since 1.2. Offer these choices with the reply."
    )
    data: RichData | None = Field(
        default=None,
        description=(
            "Since 1.3. Rich data (`cards`, `quick_replies`, `table`, `chart`, or any other "
            "kind) the web chat renders natively; every other channel receives a readable "
            "text fallback after `content`."
        ),
    )


class Typing(Frame):
    """Show or hide the typing indicator in a conversation."""

    type: Literal["typing"] = "typing"
    conversation_id: str
    on: bool = True


def _cut_summary(value: object) -> object:
    """An over-long summary is cut, not refused: refusing would lose the handoff itself."""
    if isinstance(value, str) and len(value) > HANDOFF_SUMMARY_MAX:
        return value[:HANDOFF_SUMMARY_MAX]
    return value


class Handoff(Frame):
    """Hand the conversation to a human; ``content``, if any, is sent to the customer first;
    ``summary`` (since 1.1) is a private note for the human who takes over."""

    type: Literal["handoff"] = "handoff"
    conversation_id: str | None = None
    reason: str | None = None
    content: str | None = None
    summary: Annotated[str | None, BeforeValidator(_cut_summary)] = Field(
        default=None,
        max_length=HANDOFF_SUMMARY_MAX,
        description=(
            "Since 1.1. A note for the human who takes over (what the customer wants, what "
            "was tried), shown to the operator as a private note and never sent to the "
            f"customer. At most {HANDOFF_SUMMARY_MAX} characters; the bridge cuts a longer "
            "one. Without it the bridge may note the last messages instead (route policy)."
        ),
    )


class AgentHandoff(Frame):
    """Since 1.3. Hand the conversation to another agent of the route (`to_agent` by id or
    `to_role` by role, exactly one); the next turn goes to that agent. Ends the turn;
    `content`, if any, is sent to the customer first, as the handing agent's message. Not
    `handoff`, which hands the conversation to a human."""

    type: Literal["agent_handoff"] = "agent_handoff"
    conversation_id: str | None = None
    to_agent: str | None = Field(default=None, min_length=1, max_length=200)
    to_role: str | None = Field(default=None, min_length=1, max_length=200)
    reason: str | None = None
    content: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> AgentHandoff:
        if (self.to_agent is None) == (self.to_role is None):
            raise ValueError("name exactly one of to_agent and to_role")
        return self


class StatusUpdate(Frame):
    """Since 1.3. A short line on what the agent is doing ("Searching your orders…"), shown
    live where the channel can (the web chat) and cleared by the reply; never stored.
    `message_id` names the turn; `conversation_id` is enough outside one."""

    type: Literal["status_update"] = "status_update"
    conversation_id: str | None = None
    content: str = Field(min_length=1, max_length=STATUS_MAX)


class ProgressUpdate(Frame):
    """Since 1.3. How far a long task is (0.0 to 1.0), with an optional line; live only, like
    `status_update`."""

    type: Literal["progress_update"] = "progress_update"
    conversation_id: str | None = None
    progress: float = Field(ge=0.0, le=1.0)
    content: str | None = Field(default=None, max_length=STATUS_MAX)


class _FileEvent(Frame):
    conversation_id: str | None = None
    file_id: str = Field(min_length=1)
    content: str | None = Field(default=None, max_length=NOTICE_MAX)


class FileProcessing(_FileEvent):
    """Since 1.3. The agent is working on a file the customer sent (`content`: what it does);
    live only."""

    type: Literal["file_processing"] = "file_processing"


class FileComplete(_FileEvent):
    """Since 1.3. The agent finished with a file (`content`: a summary); live only."""

    type: Literal["file_complete"] = "file_complete"


class FileError(_FileEvent):
    """Since 1.3. The agent could not use a file; `error` says why; live only."""

    type: Literal["file_error"] = "file_error"
    error: str | None = Field(default=None, max_length=NOTICE_MAX)


class NoReply(Frame):
    """The agent chose not to answer this turn."""

    type: Literal["no_reply"] = "no_reply"
    message_id: str


class Ack(Frame):
    """The agent has received the turn with this ``seq``."""

    type: Literal["ack"] = "ack"
    seq: int


class Hello(Frame):
    """First frame of a dial-in connection: who the agent is and where to resume."""

    type: Literal["hello"] = "hello"
    agent_id: str = Field(min_length=1, max_length=200)
    token: str | None = None
    protocol: str = PROTOCOL
    capabilities: list[str] = Field(default_factory=list)
    resume_from: int | None = None
    version: str | None = Field(
        default=None,
        max_length=20,
        description=(
            'Since 1.3. The revision the agent speaks ("1.3"); absent: an agent from before '
            f"negotiation, treated as {LEGACY_REVISION}."
        ),
    )
    features: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list,
        max_length=100,
        description=(
            "Since 1.3. The optional features the agent handles: `"
            + "`, `".join(sorted(FEATURES))
            + "`. `capabilities` count as well. Unknown names are ignored."
        ),
    )


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


def _revision(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    major, _, minor = value.strip().partition(".")
    if not (major.isdigit() and (minor.isdigit() or not minor)):
        return None
    return int(major), int(minor or 0)


def negotiate(agent_version: str | None, announced: Iterable[str]) -> tuple[str, frozenset[str]]:
    """The revision and features a connection uses, from what the agent announced.

    Args:
        agent_version: ``hello.version``; None (or unreadable) for an agent from before
            negotiation, which is taken to speak ``LEGACY_REVISION``.
        announced: ``hello.features`` and ``hello.capabilities`` (or the agent config's
            ``options.features``); names the bridge does not know are ignored.

    Returns:
        The lower of the agent's revision and ``PROTOCOL_REVISION``, and the announced
        features the bridge knows.
    """
    ours = _revision(PROTOCOL_REVISION)
    theirs = _revision(agent_version)
    assert ours is not None
    if theirs is None:
        version = LEGACY_REVISION
    elif theirs < ours:
        version = f"{theirs[0]}.{theirs[1]}"
    else:
        version = PROTOCOL_REVISION
    features = frozenset(name for name in announced if isinstance(name, str)) & FEATURES
    return version, features


def agent_may_receive(frame_type: str, features: Iterable[str]) -> bool:
    """Whether a bridge → agent frame of ``frame_type`` may go to an agent with ``features``:
    always, unless the type belongs to a feature (``FEATURE_OF``) the agent did not announce."""
    feature = FEATURE_OF.get(frame_type)
    return feature is None or feature in features


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


_DIRECTIONS: dict[str, tuple[type[BaseModel], ...]] = {
    "BridgeToAgent": (UserMessage, Cancel, Ping, Pong, HelloOk, HelloError, ErrorMessage,
                      ConversationEvent, SessionCreated, SessionUpdated, SessionExpired,
                      SystemMessage, WarningMessage),
    "AgentToBridge": (AgentMessage, AgentStreaming, AgentComplete, Typing, Handoff, NoReply,
                      ErrorMessage, Ack, Ping, Pong, Hello, AgentHandoff, StatusUpdate,
                      ProgressUpdate, SystemMessage, WarningMessage, FileProcessing,
                      FileComplete, FileError),
}  # fmt: skip


def protocol_json_schema() -> JsonObject:
    """One JSON Schema (draft 2020-12) document for every message in both directions.

    ``$defs`` holds one schema per message model; ``BridgeToAgent`` and ``AgentToBridge`` are
    ``oneOf`` unions discriminated by ``type``; the document itself accepts either direction.
    """
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (name, "validation", TypeAdapter[Any](_discriminated(models)))
        for name, models in _DIRECTIONS.items()
    ]
    keys, schema = TypeAdapter.json_schemas(inputs, ref_template="#/$defs/{model}")
    defs: JsonObject = dict(schema.get("$defs", {}))
    for (name, _mode), direction_schema in keys.items():
        defs[name] = {"description": _DIRECTION_DOCS[name], **direction_schema}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://chatbridge.dev/schema/protocol/v1.json",
        "title": f"Chatbridge agent protocol {PROTOCOL}",
        "description": (
            f"Every message of the agent protocol, revision {PROTOCOL_REVISION}. Unknown "
            "fields are ignored by both sides; an unknown type is answered with error_message "
            "(unknown_type). Additions since 1.0 say 'Since 1.x' in their description."
        ),
        "version": PROTOCOL_REVISION,
        "anyOf": [{"$ref": "#/$defs/BridgeToAgent"}, {"$ref": "#/$defs/AgentToBridge"}],
        "$defs": defs,
    }


_DIRECTION_DOCS = {
    "BridgeToAgent": "Messages the bridge sends to an agent.",
    "AgentToBridge": "Messages an agent sends to the bridge.",
}


def _discriminated(models: tuple[type[BaseModel], ...]) -> Any:
    """``Annotated[A | B | …, Field(discriminator="type")]`` built at run time."""
    union: Any = models[0]
    for model in models[1:]:
        union = union | model
    return Annotated[union, Field(discriminator="type")]
