"""Bridge → agent messages: a turn (``user_message``) and its parts, ``cancel``, the dial-in
handshake's answers, ``conversation_event`` and, since 1.3, the web chat session frames."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from chatbridge.models import JsonObject
from chatbridge.protocol.base import LEGACY_REVISION, PROTOCOL, Frame, Timestamp, _Model

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
    traceparent: str | None = Field(
        default=None,
        max_length=512,
        description=(
            "Optional. The W3C trace context (`00-<trace id>-<span id>-<flags>`) of the "
            "bridge's span calling the agent, sent when the bridge traces (OpenTelemetry): "
            "an agent that traces makes its spans children of it. Absent otherwise."
        ),
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
