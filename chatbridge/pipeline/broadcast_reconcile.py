"""Reconciling a broadcast send whose outcome is unknown: ask the provider what is in the chat.

A send is unknown when the bridge stopped between marking a recipient ``sending`` and
recording the gateway's answer (a crash, SIGKILL), or when the request was written and no
answer came (a read timeout: ``RetryableDelivery.outcome_unknown``). Sending again could
give the customer the template twice, so the worker asks here first:

* **WAHA** keeps the chat's messages: ``GET /api/{session}/chats/{chatId}/messages?limit=100
  &downloadMedia=false`` (``X-Api-Key``) lists them (``id``, ``timestamp`` in seconds,
  ``fromMe``, ``body``). One of ours (``fromMe``) whose body is the template's rendered text,
  sent no earlier than ``SKEW`` before the send began, is the cut-off send: it is recorded
  ``sent`` with that id. None there: it did not go out, and is queued again. The question is
  asked only ``SETTLE_SECONDS`` after the send began, so a request WAHA was still working on
  when the bridge died has had time to land.
* **Evolution** keeps the messages in its database (when its message saving is on):
  ``POST /chat/findMessages/{instance}`` (``apikey``) with ``{"where": {"key": {"remoteJid":
  <chat>, "fromMe": true}}, "offset": 100, "page": 1}`` answers ``{"messages": {"total",
  "pages", "currentPage", "records": [{key: {id, fromMe, remoteJid}, message:
  {conversation | extendedTextMessage.text}, messageTimestamp}]}}``, newest first. A match is
  ``sent``; no match is taken as "not sent" only when the chat shows other messages of ours
  (so the database is saving them): an empty answer — a new chat, or saving off — cannot
  tell, and the recipient becomes ``uncertain``.
* **Meta**: no message lookup at all: ``None``, the recipient becomes ``uncertain`` for the
  operator.

Errs towards "sent": a message with the same text sent to that chat just before (another
broadcast's) is taken for this one — the customer then gets it once, not twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from chatbridge.channels.base import ChannelAdapter
from chatbridge.channels.whatsapp.base import WhatsAppChannel
from chatbridge.channels.whatsapp.ids import ChatAddress
from chatbridge.channels.whatsapp.templates import prepare, render
from chatbridge.crm.settings import CommsSettings
from chatbridge.store.broadcasts import Recipient

SETTLE_SECONDS = 20.0
SKEW = 300.0
LOOK_BACK = 100


async def _settled_send(
    channel: WhatsAppChannel,
    recipient: Recipient,
    template: dict[str, Any],
    provider: str,
    settle_seconds: float,
) -> tuple[ChatAddress, CommsSettings, str] | None:
    """The recipient's chat, the settings and the text the cut-off send carried, once
    ``settle_seconds`` have passed since it began; None if the chat is not on ``provider``."""
    if not recipient.address:
        return None
    chat = ChatAddress.parse(recipient.address)
    if chat.provider != provider:
        return None
    settings = channel.settings_source()
    record, parameters = await prepare(channel.store, template, provider)
    text = render(record, parameters).text
    wait = recipient.updated_at + settle_seconds - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    return chat, settings, text


async def waha_sent(
    channel: WhatsAppChannel,
    recipient: Recipient,
    template: dict[str, Any],
    *,
    settle_seconds: float = SETTLE_SECONDS,
) -> str | bool | None:
    """The WAHA id of the cut-off send if it is in the chat, False if it is not, None if
    WAHA is not the recipient's provider."""
    looked = await _settled_send(channel, recipient, template, "waha", settle_seconds)
    if looked is None:
        return None
    chat, settings, text = looked
    base = settings.waha_base_url.rstrip("/")
    url = (
        f"{base}/api/{quote(chat.instance, safe='')}/chats/{quote(chat.chat_id, safe='')}"
        f"/messages?limit={LOOK_BACK}&downloadMedia=false"
    )
    key = settings.waha_api_key
    found = await channel.http.request(
        "GET",
        url,
        what="WAHA chat messages",
        headers={"X-Api-Key": key} if key else {},
        secrets=(key,),
    )
    if not isinstance(found, list):
        return None
    since = recipient.updated_at - SKEW
    for message in found:
        if not isinstance(message, dict) or message.get("fromMe") is not True:
            continue
        stamp = message.get("timestamp")
        if not isinstance(stamp, int | float) or stamp < since:
            continue
        if message.get("body") == text and isinstance(message.get("id"), str):
            return str(message["id"])
    return False


def _evolution_text(record: dict[str, Any]) -> str | None:
    message = record.get("message")
    if not isinstance(message, dict):
        return None
    if isinstance(message.get("conversation"), str):
        return str(message["conversation"])
    extended = message.get("extendedTextMessage")
    if isinstance(extended, dict) and isinstance(extended.get("text"), str):
        return str(extended["text"])
    return None


async def evolution_sent(
    channel: WhatsAppChannel,
    recipient: Recipient,
    template: dict[str, Any],
    *,
    settle_seconds: float = SETTLE_SECONDS,
) -> str | bool | None:
    """The Evolution id of the cut-off send if it is in the chat, False if the chat's saved
    history shows it is not, None if that cannot be told (see the module docstring)."""
    looked = await _settled_send(channel, recipient, template, "evolution", settle_seconds)
    if looked is None:
        return None
    chat, settings, text = looked
    key = settings.evolution_api_key
    found = await channel.http.request(
        "POST",
        f"{settings.evolution_base_url.rstrip('/')}/chat/findMessages/"
        f"{quote(chat.instance, safe='')}",
        what="Evolution findMessages",
        headers={"apikey": key} if key else {},
        body={
            "where": {"key": {"remoteJid": chat.chat_id, "fromMe": True}},
            "offset": LOOK_BACK,
            "page": 1,
        },
        secrets=(key,),
    )
    messages = found.get("messages") if isinstance(found, dict) else None
    records = messages.get("records") if isinstance(messages, dict) else None
    if not isinstance(records, list) or not records:
        return None  # nothing saved for this chat: cannot tell
    since = recipient.updated_at - SKEW
    for item in records:
        if not isinstance(item, dict):
            continue
        item_key = item.get("key")
        stamp = item.get("messageTimestamp")
        if not isinstance(item_key, dict) or item_key.get("fromMe") is not True:
            continue
        if not isinstance(stamp, int | float) or stamp < since:
            continue
        if _evolution_text(item) == text and isinstance(item_key.get("id"), str):
            return str(item_key["id"])
    return False


def channel_reconcile(channels: Mapping[str, ChannelAdapter], **options: Any) -> Any:
    """A ``Reconcile`` over the bridge's WhatsApp channel (None when it is not the real one)."""

    async def reconcile(recipient: Recipient, template: dict[str, Any]) -> str | bool | None:
        channel = channels.get("whatsapp")
        if not isinstance(channel, WhatsAppChannel) or not recipient.address:
            return None
        provider = ChatAddress.parse(recipient.address).provider
        if provider == "evolution":
            return await evolution_sent(channel, recipient, template, **options)
        return await waha_sent(channel, recipient, template, **options)

    return reconcile
