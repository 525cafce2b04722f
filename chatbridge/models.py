"""Neutral models: what channel adapters produce and consume. Nothing here knows a channel's JSON.

A channel adapter turns a webhook into one of ``InboundMessage`` (a customer wrote: maybe a
turn), ``OwnerSignal`` (a human took over, or the conversation changed status),
``ConversationEvent`` (something the agent may want to know, e.g. a widget opened) or
``Ignored``. The core turns replies into ``OutboundAction`` values the adapter sends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object whose shape a reader checks field by field: a channel's webhook body, an
agent's frame, free-form ``metadata``/``context`` a peer may fill. Where the shape is fixed,
name it (a TypedDict or a class) instead."""

Owner = Literal["bot", "human"]
ActionKind = Literal["message", "typing_on", "typing_off", "handoff", "note"]


@dataclass(slots=True)
class Attachment:
    url: str
    mime: str | None = None
    size: int | None = None
    name: str | None = None


@dataclass(slots=True)
class ContactInfo:
    """Who wrote, as the channel knows them."""

    external_id: str | None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    metadata: JsonObject = field(default_factory=dict)


@dataclass(slots=True)
class InboundMessage:
    """A customer message that may become an agent turn.

    ``channel_key`` names the conversation inside the channel (Chatwoot: ``"<account>:<display
    id>"``); ``external_message_id`` is unique per channel and is the dedupe key; ``delivery_id``
    is the channel's per-delivery id where it sends one (``X-Chatwoot-Delivery``).
    """

    channel: str
    inbox_id: int
    channel_key: str
    text: str
    external_message_id: str | None = None
    delivery_id: str | None = None
    content_type: str = "text"
    attachments: list[Attachment] = field(default_factory=list)
    contact: ContactInfo | None = None
    external_status: str | None = None
    context: JsonObject = field(default_factory=dict)
    metadata: JsonObject = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)


@dataclass(slots=True)
class OwnerSignal:
    """The conversation changed hands or status outside the bot.

    ``owner`` is the new owner when the signal decides it (``"human"`` when a human agent wrote;
    ``None`` when only ``external_status`` changed and the route's rules decide). A human's
    message is recorded in the conversation when ``text`` is given.
    """

    channel: str
    inbox_id: int
    channel_key: str
    reason: str
    owner: Owner | None = None
    external_status: str | None = None
    previous_status: str | None = None
    text: str | None = None
    external_message_id: str | None = None
    delivery_id: str | None = None
    author_name: str | None = None


@dataclass(slots=True)
class ConversationEvent:
    """Something the agent may want to know (``webwidget_triggered``, ``conversation_created``).

    Forwarded to the agent as a ``conversation_event`` frame; the agent may answer with a
    proactive ``agent_message`` (e.g. a greeting) when ``channel_key`` names a conversation.
    """

    channel: str
    inbox_id: int
    event: str
    channel_key: str | None = None
    contact: ContactInfo | None = None
    external_status: str | None = None
    data: JsonObject = field(default_factory=dict)
    delivery_id: str | None = None


@dataclass(slots=True)
class Ignored:
    """Acknowledged and dropped on purpose; ``reason`` says why (returned in the response)."""

    reason: str
    delivery_id: str | None = None


@dataclass(slots=True)
class StatusUpdate:
    """The channel reports what became of a message we sent (``external_message_id`` is the
    id the channel gave it): ``sent``, ``delivered``, ``read``, ``played`` or ``failed``.
    Never creates a turn."""

    channel: str
    external_message_id: str
    status: str
    error: str | None = None
    delivery_id: str | None = None
    # the conversation it belongs to, where the channel says (Meta: the recipient): a status
    # for an id we never recorded is then the receipt of a send that was cut off
    channel_key: str | None = None
    # what we sent along to be echoed back (Meta's ``biz_opaque_callback_data``): a broadcast
    # send's ``bc:<broadcast>:<person>``, which settles a send whose id was never recorded
    callback_data: str | None = None


@dataclass(slots=True)
class DeliveryReceipt:
    """The channel echoed one of our own messages back: proof that a delivery reached it.

    ``idempotency_key`` is what we sent with the message (Chatwoot: ``source_id``);
    ``external_message_id`` the id the channel gave it. ``otherwise`` is what the webhook
    means if the key turns out not to be one of ours (e.g. a human's reply).
    """

    channel: str
    idempotency_key: str | None
    external_message_id: str | None = None
    delivery_id: str | None = None
    otherwise: OwnerSignal | None = None
    # Channels that cannot carry our key (WhatsApp): the echo names its conversation, and
    # its text where it has one; it is matched to the conversation's cut-off send.
    channel_key: str | None = None
    text: str | None = None


ParsedWebhook = (
    InboundMessage | OwnerSignal | ConversationEvent | StatusUpdate | DeliveryReceipt | Ignored
)


@dataclass(slots=True)
class ConversationRef:
    """Enough about a conversation for an adapter to address it."""

    id: str
    channel: str
    channel_key: str
    inbox_id: int
    metadata: JsonObject = field(default_factory=dict)


@dataclass(slots=True)
class OutboundAction:
    """One thing to do at the channel: post a message, typing on/off, hand off to a human,
    leave the human team a private note (``note``, its text in ``text``; only channels whose
    ``Capabilities.notes`` is true are sent one).

    ``idempotency_key`` is stable across retries of the same delivery (sent to Chatwoot as
    ``echo_id``).
    """

    kind: ActionKind
    conversation: ConversationRef
    idempotency_key: str
    text: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    metadata: JsonObject = field(default_factory=dict)
    # protocol 1.2: a stored template to send (``{name, language?, parameters}``), or choices
    # to offer with the text (``{kind, title?, button?, options: [{id, title, description?}]}``)
    template: JsonObject | None = None
    interactive: JsonObject | None = None


@dataclass(slots=True)
class SendResult:
    """What the channel said: its id for the posted message, when it gives one."""

    external_id: str | None = None
