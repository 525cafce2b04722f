"""What an agent's handler receives (``Turn``) and what it may return.

A handler returns text (the reply), ``Handoff(...)``, ``NoReply()`` or ``None`` (no reply), or
is an async generator yielding text chunks (a streamed reply). Raising ``TurnError`` answers
the turn with an ``error_message`` carrying its code; any other exception does the same with
code ``handler_error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chatbridge.errors import ChatbridgeError
from chatbridge.models import JsonObject
from chatbridge.protocol import ConversationEvent, UserMessage


@dataclass(frozen=True, slots=True)
class Turn:
    """One ``user_message`` from the bridge, in the shape an agent author wants.

    ``id`` is the turn id (``message_id``); ``content`` is every customer message of the turn,
    newline-joined; ``messages`` has them one by one. ``raw`` is the frame as received,
    including fields this SDK does not know yet.
    """

    id: str
    seq: int | None
    conversation_id: str
    content: str
    messages: list[JsonObject] = field(default_factory=list)
    sender: JsonObject | None = None
    context: JsonObject | None = None
    channel: str | None = None
    inbox_id: int | None = None
    raw: JsonObject = field(default_factory=dict)

    @classmethod
    def from_message(cls, message: UserMessage, raw: JsonObject) -> Turn:
        """Build a turn from a parsed ``user_message`` and the object it came from."""
        return cls(
            id=message.message_id,
            seq=message.seq,
            conversation_id=message.conversation_id,
            content=message.content,
            messages=[m.model_dump(mode="json") for m in message.messages],
            sender=message.sender.model_dump(mode="json") if message.sender else None,
            context=message.context.model_dump(mode="json") if message.context else None,
            channel=message.channel,
            inbox_id=message.inbox_id,
            raw=raw,
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
class Handoff:
    """Return this to hand the conversation to a human; ``content`` is sent first, if any."""

    reason: str | None = None
    content: str | None = None


@dataclass(frozen=True, slots=True)
class NoReply:
    """Return this (or ``None``) to leave the turn unanswered on purpose."""


class TurnError(ChatbridgeError):
    """Raise this from a handler to answer the turn with ``error_message`` and this code."""

    def __init__(self, code: str, message: str = "", *, details: Any = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.details = details


Reply = str | Handoff | NoReply | None
"""What a handler returns: the reply text, a handoff, or no reply (``NoReply()`` / ``None``)."""
MessageHandler = Callable[
    [Turn], Awaitable[Reply | AsyncIterator[str]] | AsyncIterator[str] | Reply
]
"""An ``on_message`` handler: sync or async, or an async generator of text chunks."""
EventHandler = Callable[[Event], Awaitable[str | None] | str | None]


@dataclass(slots=True)
class Handlers:
    """The handlers an agent registered (``on_message``, ``on_event``), shared by every way it
    meets a bridge: the WebSocket links, http-webhook answers and the pull client."""

    message: MessageHandler | None = None
    event: EventHandler | None = None
