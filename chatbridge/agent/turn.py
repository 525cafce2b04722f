"""What an agent's handler receives (``Turn``) and what it may return.

A handler returns text (the reply), ``Answer(...)`` (text with choices, a template or
attachments: protocol 1.2; rich ``data``: 1.3), ``Handoff(...)`` (to a human), ``HandTo(...)``
(to another agent of the route, 1.3), ``NoReply()`` or ``None`` (no reply), or is an async
generator yielding text chunks (a streamed reply). Raising ``TurnError`` answers the turn
with an ``error_message`` carrying its code; any other exception does the same with code
``handler_error``. While it works, a handler may tell the bridge how it is doing
(``await turn.status(…)``, ``turn.progress(…)``, ``turn.file_*(…)``, ``turn.notice(…)``: 1.3).

Besides turns, an agent may register handlers for ``conversation_event`` (``Event``) and,
since 1.3, for web chat sessions (``Session``) and notices (``Notice``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from chatbridge.agent import live
from chatbridge.agent.live import LiveSend, NoticeLevel, nowhere
from chatbridge.errors import ChatbridgeError
from chatbridge.models import JsonObject
from chatbridge.protocol import (
    ConversationEvent,
    FileRef,
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    SystemMessage,
    UserMessage,
    WarningMessage,
)


class SenderInfo(TypedDict, total=False):
    """``Turn.sender``: who wrote, as the channel knows them (each key may be missing or
    None; a channel may add keys of its own)."""

    id: str | None
    name: str | None
    email: str | None
    phone: str | None


class ChannelContext(TypedDict, total=False):
    """``Turn.context``: where the conversation lives on the channel side (Chatwoot: its
    ``channel`` such as ``web_widget``, its conversation id, its ``additional_attributes``);
    each key may be missing, and a channel may add its own."""

    channel: str | None
    created_at: str | None
    """ISO 8601, UTC."""
    external_conversation_id: str | None
    additional_attributes: JsonObject
    session_id: str | None
    """The web chat session, on turns pulled from the web chat plugin's action API."""


class TurnMessage(TypedDict, total=False):
    """One customer message of ``Turn.messages``."""

    id: str | None
    content: str | None
    created_at: str | None
    """ISO 8601, UTC."""
    attachments: list[JsonObject]
    metadata: JsonObject
    """``{"interactive": {"id", "title"}}`` when it answers the agent's choices
    (``Turn.choice``)."""


class Cancellation:
    """Whether the bridge withdrew a turn (protocol 1.1 ``cancel``), and a way to wait for it.

    Set once, by the SDK, when the bridge's ``cancel`` frame for the turn arrives; a handler
    reads it through ``Turn.cancelled`` / ``Turn.wait_cancelled()``.
    """

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        """Mark the turn cancelled (the first reason stays)."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> str:
        """Return once the turn is cancelled, with the reason."""
        await self._event.wait()
        return self.reason or "superseded"


@dataclass(frozen=True, slots=True)
class Turn:
    """One ``user_message`` from the bridge, in the shape an agent author wants.

    ``id`` is the turn id (``message_id``). A turn may carry several customer messages — a
    burst the bridge merged into one turn (debounce), or messages held while the agent was
    answering: ``messages`` has them one by one, oldest first (``id``, ``content``,
    ``created_at``, ``attachments``), and ``content`` is their text newline-joined. ``raw`` is
    the frame as received, including fields this SDK does not know yet.

    ``sender`` (``SenderInfo``: ``id``, ``name``, ``email``, ``phone``) and ``context``
    (``ChannelContext``) are typed dicts: plain dicts at run time, checked keys for a type
    checker. ``traceparent`` is the W3C trace context of the bridge's call, when the bridge
    traces (OpenTelemetry): make the handler's spans its children to see them in the
    message's trace.

    Since protocol 1.1:

    - ``fresh`` is True when the bot's session for this conversation had expired: start a new
      context (forget the memory you keep per conversation).
    - ``cancelled`` becomes True when the bridge withdraws the turn (a newer customer message
      superseded it; ``cancel_reason`` says why). Over a WebSocket or http-webhook the SDK
      then cancels the handler's task — it sees ``asyncio.CancelledError`` at its next
      ``await`` — and sends nothing for the turn; whatever it returns anyway is dropped (the
      bridge would discard it too). A handler that must not be interrupted creates its agent
      with ``Agent(..., cancel_handlers=False)`` and checks ``turn.cancelled`` itself, or
      ``await turn.wait_cancelled()`` beside its work. http-pull agents are not told (the
      bridge refuses their answer for a withdrawn turn).

    Since protocol 1.3:

    - ``files``: what the customer attached (``FileRef``: ``file_id``, ``file_name``,
      ``file_url`` — a short-lived signed URL to fetch the bytes from —, ``mime``, ``size``);
    - ``agent`` / ``role``: which of the route's agents the turn is addressed to, when the
      route has several;
    - ``await turn.status("Searching your orders…")``, ``await turn.progress(0.4, "…")``,
      ``await turn.file_processing(file_id, "…")`` / ``file_complete`` / ``file_error``: shown
      live in the web chat while the handler works, cleared by the reply, never stored;
    - ``await turn.notice("…", level="system" | "warning")``: a notice into the conversation,
      kept and shown apart from the dialogue.

    Each returns whether the frame went out (see ``chatbridge.agent.live`` for where it goes
    on each transport); a handler need not check.
    """

    id: str
    seq: int | None
    conversation_id: str
    content: str
    messages: list[TurnMessage] = field(default_factory=list)
    sender: SenderInfo | None = None
    context: ChannelContext | None = None
    channel: str | None = None
    inbox_id: int | None = None
    raw: JsonObject = field(default_factory=dict)
    fresh: bool = False
    files: list[FileRef] = field(default_factory=list)
    agent: str | None = None
    role: str | None = None
    traceparent: str | None = None
    cancellation: Cancellation = field(default_factory=Cancellation, repr=False, compare=False)
    live: LiveSend = field(default=nowhere, repr=False, compare=False)
    """Where this turn's live frames go; the SDK sets it for the transport the turn came on."""

    @property
    def cancelled(self) -> bool:
        """Whether the bridge withdrew this turn (see the class docstring)."""
        return self.cancellation.is_set()

    @property
    def cancel_reason(self) -> str | None:
        """Why the bridge withdrew the turn (``superseded``); None while it has not."""
        return self.cancellation.reason

    @property
    def choice(self) -> JsonObject | None:
        """The option the customer picked from the agent's last choices (``{"id", "title"}``,
        protocol 1.2): a tap on a button, or a typed number or title the bridge matched.
        ``None`` when the turn's last message is no such answer."""
        for message in reversed(self.messages):
            picked = (message.get("metadata") or {}).get("interactive")
            return picked if isinstance(picked, dict) else None
        return None

    async def wait_cancelled(self) -> str:
        """Return, with the reason, once the bridge withdraws this turn (maybe never)."""
        return await self.cancellation.wait()

    async def _send(self, frame: JsonObject) -> bool:
        if self.cancelled:
            return False  # the bridge no longer shows anything for this turn
        return await self.live(frame)

    async def status(self, text: str) -> bool:
        """Show a short line on what the agent is doing ("Checking stock…"; at most 200
        characters, a longer one is cut). Cleared by the reply."""
        return await self._send(live.status_frame(self.id, self.conversation_id, text))

    async def progress(self, value: float, text: str | None = None) -> bool:
        """Show how far a long task is: ``value`` from 0.0 to 1.0, with an optional line."""
        return await self._send(live.progress_frame(self.id, self.conversation_id, value, text))

    async def file_processing(self, file_id: str, text: str | None = None) -> bool:
        """Say the agent is working on the file ``file_id`` (one of ``files``)."""
        frame = live.file_frame("processing", self.id, self.conversation_id, file_id, text)
        return await self._send(frame)

    async def file_complete(self, file_id: str, text: str | None = None) -> bool:
        """Say the agent is done with the file ``file_id``; ``text`` may sum it up."""
        frame = live.file_frame("complete", self.id, self.conversation_id, file_id, text)
        return await self._send(frame)

    async def file_error(self, file_id: str, error: str, text: str | None = None) -> bool:
        """Say the agent could not use the file ``file_id``, and why (``error``)."""
        frame = live.file_frame("error", self.id, self.conversation_id, file_id, text, error)
        return await self._send(frame)

    async def notice(self, text: str, *, level: NoticeLevel = "system") -> bool:
        """Put a notice into the conversation: kept as a message by ``system`` and shown apart
        from the dialogue (``level`` ``warning`` shows it as a warning). The customer's
        channel gets it only where the route says so."""
        return await self._send(live.notice_frame(self.id, self.conversation_id, text, level))

    @classmethod
    def from_message(
        cls, message: UserMessage, raw: JsonObject, *, live: LiveSend = nowhere
    ) -> Turn:
        """Build a turn from a parsed ``user_message`` and the object it came from;
        ``live`` is where its live frames go."""
        return cls(
            id=message.message_id,
            seq=message.seq,
            conversation_id=message.conversation_id,
            content=message.content,
            messages=[cast(TurnMessage, m.model_dump(mode="json")) for m in message.messages],
            sender=cast(SenderInfo, message.sender.model_dump(mode="json"))
            if message.sender
            else None,
            context=cast(ChannelContext, message.context.model_dump(mode="json"))
            if message.context
            else None,
            channel=message.channel,
            inbox_id=message.inbox_id,
            raw=raw,
            fresh=message.fresh,
            files=list(message.files),
            agent=message.agent,
            role=message.role,
            traceparent=message.traceparent,
            live=live,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """A ``conversation_event`` (handoff happened, conversation closed/reopened, owner
    changed, …). ``conversation_id`` is None for events before a conversation exists."""

    event: str
    conversation_id: str | None
    data: JsonObject
    raw: JsonObject

    @classmethod
    def from_message(cls, message: ConversationEvent, raw: JsonObject) -> Event:
        """Build an event from a parsed ``conversation_event`` and the object it came from."""
        return cls(message.event, message.conversation_id, dict(message.data), raw)


@dataclass(frozen=True, slots=True)
class Session:
    """A web chat session started, changed or ended (protocol 1.3; ``on_session``).

    ``kind`` is ``created``, ``updated`` or ``expired``; ``reason`` says why one expired
    (``idle``, ``ended``); ``data`` carries the details the bridge gives (page, visitor).
    """

    kind: str
    session_id: str
    conversation_id: str | None
    channel: str
    reason: str | None
    data: JsonObject
    raw: JsonObject

    @classmethod
    def from_message(
        cls, message: SessionCreated | SessionUpdated | SessionExpired, raw: JsonObject
    ) -> Session:
        """Build it from a parsed ``session_*`` frame and the object it came from."""
        return cls(
            message.type.removeprefix("session_"),
            message.session_id,
            message.conversation_id,
            message.channel,
            message.reason,
            dict(message.data),
            raw,
        )


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice the bridge put into a conversation (protocol 1.3; ``on_notice``): ``level``
    is ``system`` or ``warning``."""

    level: NoticeLevel
    conversation_id: str
    content: str
    raw: JsonObject

    @classmethod
    def from_message(cls, message: SystemMessage | WarningMessage, raw: JsonObject) -> Notice:
        """Build it from a parsed ``system_message`` / ``warning_message``."""
        level: NoticeLevel = "warning" if message.type == "warning_message" else "system"
        return cls(level, message.conversation_id, message.content, raw)


@dataclass(frozen=True, slots=True)
class Handoff:
    """Return this to hand the conversation to a human; ``content`` is sent first, if any.

    ``summary`` (protocol 1.1) is a private note for the human who takes over — what the
    customer wants, what was tried — at most 4000 characters (the bridge cuts a longer one).
    """

    reason: str | None = None
    content: str | None = None
    summary: str | None = None


@dataclass(frozen=True, slots=True)
class HandTo:
    """Return this to hand the conversation to another agent of the route (protocol 1.3):
    ``agent`` names it by id, or ``role`` by its role on the route — exactly one. The next
    turn goes to that agent; ``content``, if any, is sent to the customer first (as this
    agent's message); ``reason`` is for the people reading the conversation and the target
    agent. Not ``Handoff``, which hands the conversation to a human.

    Raises:
        ValueError: neither or both of ``agent`` and ``role``.
    """

    agent: str | None = None
    role: str | None = None
    reason: str | None = None
    content: str | None = None

    def __post_init__(self) -> None:
        if (self.agent is None) == (self.role is None):
            raise ValueError("HandTo needs exactly one of agent= and role=")


@dataclass(frozen=True, slots=True)
class Answer:
    """Return this for a reply with more than text (protocol 1.2):

    - ``interactive``: choices for the customer — ``{"kind": "buttons" | "list", "title"?,
      "button"?, "options": [{"id", "title", "description"?}]}`` (or a
      ``chatbridge.protocol.Interactive``). WhatsApp (Meta) shows buttons or a list, the web
      chat widget buttons, other channels numbered text; the customer's pick comes back in
      the next turn as ``turn.choice`` (``{"id", "title"}``).
    - ``template``: a stored WhatsApp template — ``{"name", "language"?, "parameters": {slot:
      value}}`` (or a ``chatbridge.protocol.TemplateReply``); the only message Meta accepts
      once its 24-hour window is closed.
    - ``attachments``: ``[{"url", "mime"?, "name"?}]`` sent with the reply.
    - ``data`` (protocol 1.3): rich data the web chat renders natively and every other
      channel receives as readable text after ``content`` — ``{"kind": "cards", "cards":
      [{"title", "subtitle"?, "text"?, "image_url"?, "url"?, "buttons"?: [{"title", "url"?,
      "value"?}]}]}``, ``{"kind": "quick_replies", "options": [{"title", "value"?}]}``,
      ``{"kind": "table", "columns": [...], "rows": [[...]], "caption"?}``, ``{"kind":
      "chart", "chart": "bar" | "line" | "pie", "title"?, "labels": [...], "series":
      [{"name", "values": [...]}]}``, or any other kind (shown as its ``text``). See
      ``chatbridge.richdata``.

    ``content`` is the text (a template needs none). Checked against the protocol when the
    handler returns: a malformed one answers the turn with ``handler_error``.
    """

    content: str | None = None
    interactive: JsonObject | Any = None
    template: JsonObject | Any = None
    attachments: list[JsonObject] = field(default_factory=list)
    data: JsonObject | Any = None


@dataclass(frozen=True, slots=True)
class NoReply:
    """Return this (or ``None``) to leave the turn unanswered on purpose."""


class TurnError(ChatbridgeError):
    """Raise this from a handler to answer the turn with ``error_message`` and this code."""

    def __init__(self, code: str, message: str = "", *, details: Any = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.details = details


Reply = str | Answer | Handoff | HandTo | NoReply | None
"""What a handler returns: the reply text, an ``Answer`` (text with choices, a template,
attachments or rich data), a handoff to a human or to another agent, or no reply
(``NoReply()`` / ``None``)."""
MessageHandler = Callable[
    [Turn], Awaitable[Reply | AsyncIterator[str]] | AsyncIterator[str] | Reply
]
"""An ``on_message`` handler: sync or async, or an async generator of text chunks."""
EventHandler = Callable[[Event], Awaitable[str | None] | str | None]
SessionHandler = Callable[[Session], Awaitable[None] | None]
NoticeHandler = Callable[[Notice], Awaitable[None] | None]


@dataclass(slots=True)
class Handlers:
    """The handlers an agent registered (``on_message``, ``on_event``), shared by every way it
    meets a bridge: the WebSocket links, http-webhook answers and the pull client."""

    message: MessageHandler | None = None
    event: EventHandler | None = None
    session: SessionHandler | None = None
    notice: NoticeHandler | None = None
