"""Agent → bridge messages: answers (whole, streamed, handoffs), ``typing``, ``ack``, the
dial-in ``hello`` and, since 1.3, status, progress and file frames and ``agent_handoff``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from chatbridge.models import JsonObject
from chatbridge.protocol.base import (
    HANDOFF_SUMMARY_MAX,
    LEGACY_REVISION,
    NOTICE_MAX,
    PROTOCOL,
    STATUS_MAX,
    Frame,
    _Model,
)
from chatbridge.protocol.negotiation import FEATURES
from chatbridge.richdata import RichData

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
