"""The mock WhatsApp provider: no gateway, no credentials; what it "sends" stays in memory.

Inbound (``POST /api/comms/webhooks/mock`` or the admin's ``POST /api/comms/mock/inbound``)::

    {"from": "+15550001111", "name": "Asha", "text": "Hi", "id": "m1", "fromMe": false,
     "instance": "mock", "media": {"url": "…", "mimetype": "image/jpeg", "filename": "…"}}

``fromMe: true`` is the business replying from its phone (a human takeover); ``from`` may also
be a group JID (``…@g.us``, with ``participant``). Outbound is recorded in the channel's
``Outbox`` and listed by ``GET /api/comms/mock/outbox``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from chatbridge.channels.base import load_object
from chatbridge.channels.whatsapp.base import ProviderCheck, ProviderContext
from chatbridge.channels.whatsapp.ids import ChatAddress, jid_kind, phone_digits, to_c_us
from chatbridge.channels.whatsapp.inbound import (
    chat_address,
    chat_filter,
    contact_info,
    get_obj,
    get_str,
    human_takeover,
    inbound_message,
    invalid,
    require_str,
)
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import Attachment, ParsedWebhook

NAME = "mock"


def _chat_id(raw: str) -> str:
    """``"+15550001111"`` / ``"15550001111@s.whatsapp.net"`` → ``"15550001111@c.us"``."""
    if "@" not in raw:
        digits = raw.strip().lstrip("+").replace(" ", "").replace("-", "")
        if not digits.isdigit():
            invalid("from must be a phone number or a WhatsApp JID")
        return f"{digits}@c.us"
    return to_c_us(raw)


def parse_webhook(
    headers: Mapping[str, str], body: bytes, settings: CommsSettings
) -> list[ParsedWebhook]:
    """Parse a simulated message (see the module docstring). No authenticity check."""
    payload = load_object(body)
    chat_id = _chat_id(require_str(payload, "from", "from"))
    ignored = chat_filter(settings, chat_id)
    if ignored is not None:
        return [ignored]
    instance = get_str(payload, "instance") or NAME
    address = chat_address(NAME, instance, chat_id)
    message_id = get_str(payload, "id") or f"mock-in-{uuid.uuid4().hex}"
    text = get_str(payload, "text") or ""
    if payload.get("fromMe") is True:
        return [human_takeover(settings, address, message_id=message_id, text=text)]
    participant = get_str(payload, "participant")
    sender_jid = to_c_us(participant) if participant else chat_id
    contact = contact_info(
        settings,
        provider=NAME,
        name=get_str(payload, "name"),
        jid=sender_jid if jid_kind(sender_jid) == "user" else None,
        lid=sender_jid if jid_kind(sender_jid) == "lid" else None,
        phone=phone_digits(sender_jid),
    )
    media = get_obj(payload, "media")
    attachments = []
    if get_str(media, "url"):
        attachments.append(
            Attachment(
                url=require_str(media, "url", "media.url", max_length=2000),
                mime=get_str(media, "mimetype"),
                name=get_str(media, "filename"),
            )
        )
    return [
        inbound_message(
            settings,
            address,
            message_id=message_id,
            text=text,
            contact=contact,
            content_type="media" if attachments else "text",
            attachments=attachments,
            timestamp=payload.get("timestamp"),
            participant=participant,
        )
    ]


class Provider:
    """Records every send in the channel's outbox; never fails."""

    name = NAME

    def __init__(self, ctx: ProviderContext) -> None:
        self._outbox = ctx.outbox

    async def send_text(self, chat: ChatAddress, text: str) -> str | None:
        return self._outbox.record("text", chat, text=text)

    async def send_media(
        self, chat: ChatAddress, attachment: Attachment, caption: str | None
    ) -> str | None:
        return self._outbox.record(
            "media",
            chat,
            url=attachment.url,
            mimetype=attachment.mime,
            filename=attachment.name,
            caption=caption,
        )

    async def set_typing(self, chat: ChatAddress, on: bool, *, last_inbound_id: str | None) -> None:
        self._outbox.record("typing_on" if on else "typing_off", chat)

    async def mark_read(self, chat: ChatAddress, message_ids: list[str]) -> None:
        self._outbox.record("read", chat, message_ids=message_ids)

    async def check(self) -> ProviderCheck:
        return ProviderCheck(
            NAME,
            ok=True,
            details={"note": "the mock provider needs no gateway; sends go to the mock outbox"},
        )
