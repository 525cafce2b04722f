"""``MemoryChannel``: the reference ``Channel``, in memory, for unit tests and the demo.

Inbound it reads a small neutral JSON body, the shape every channel's parser ends up with::

    {"conversation": "c1", "id": "m1", "text": "hi", "inbox_id": 1}
    {"conversation": "c1", "id": "memory-out-3", "from_me": true}   (an echo of our send)

Outbound it records every action; a test can make the next sends fail with ``fail_next``.
It checks no signature (``signed`` is false): it is never exposed to the network unless a
test serves it.
"""

from __future__ import annotations

from typing import Any

from chatbridge.channels.base import Capabilities, ChannelContext, InboundRequest, load_object
from chatbridge.errors import BadInput, PermanentDelivery
from chatbridge.models import (
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OutboundAction,
    ParsedWebhook,
    SendResult,
)

MAX_FIELD = 200


def _text_field(payload: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise BadInput("invalid_payload", f"{key} must be a string of 1-{MAX_FIELD} characters")
    return value


class MemoryChannel:
    """Fake channel: parses the neutral body above, records every action it is asked to do.

    ``capabilities`` is what it was built with (typing, read receipts and media by default;
    ``notes`` only when asked for, as most channels have none); an action its capabilities
    rule out is refused with ``PermanentDelivery``, as an honest channel would.
    """

    signed = False

    def __init__(self, name: str = "memory", capabilities: Capabilities | None = None) -> None:
        self.name = name
        self.capabilities = capabilities or Capabilities(
            typing=True, read_receipts=True, media=True
        )
        self.actions: list[OutboundAction] = []
        self.fail_next: list[Exception] = []
        self.read: list[str] = []  # external ids ``stored`` was told about

    async def parse(self, request: InboundRequest) -> list[ParsedWebhook]:
        payload = load_object(request.body)
        conversation = _text_field(payload, "conversation", required=True)
        message_id = _text_field(payload, "id", required=True)
        assert conversation is not None and message_id is not None
        if payload.get("from_me") is True:
            if message_id in self._sent_ids():
                return [
                    DeliveryReceipt(
                        self.name, None, external_message_id=message_id, channel_key=conversation
                    )
                ]
            return [Ignored("own_message")]
        text = payload.get("text")
        if not isinstance(text, str):
            raise BadInput("invalid_payload", "text must be a string")
        inbox = payload.get("inbox_id", 1)
        if not isinstance(inbox, int) or isinstance(inbox, bool) or not 0 <= inbox < 2**31:
            raise BadInput("invalid_payload", "inbox_id must be an integer")
        return [
            InboundMessage(
                channel=self.name,
                inbox_id=inbox,
                channel_key=conversation,
                text=text,
                external_message_id=message_id,
            )
        ]

    def _sent_ids(self) -> set[str]:
        return {f"memory-out-{i + 1}" for i in range(len(self.actions))}

    def stored(self, message: InboundMessage) -> None:
        if self.capabilities.read_receipts and message.external_message_id:
            self.read.append(message.external_message_id)

    async def send(self, action: OutboundAction) -> SendResult:
        if self.fail_next:
            raise self.fail_next.pop(0)
        if action.kind in ("typing_on", "typing_off") and not self.capabilities.typing:
            raise PermanentDelivery(f"{self.name} shows no typing indicator")
        if action.attachments and not self.capabilities.media:
            raise PermanentDelivery(f"{self.name} cannot send media")
        if action.kind == "note" and not self.capabilities.notes:
            raise PermanentDelivery(f"{self.name} shows no private notes")
        self.actions.append(action)
        return SendResult(external_id=f"memory-out-{len(self.actions)}")

    async def already_sent(self, action: OutboundAction) -> bool | None:
        return any(a.idempotency_key == action.idempotency_key for a in self.actions)

    async def aclose(self) -> None:
        return None


def build(context: ChannelContext) -> MemoryChannel:
    """The registry's entry point (``"memory"``)."""
    return MemoryChannel()
