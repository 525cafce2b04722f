"""Evolution API v2: webhooks in, ``/message/*`` and ``/chat/*`` out.

Webhook envelope ``{event, instance, data, destination, date_time, sender, server_url,
apikey}``:

* ``messages.upsert``: a customer's message, or one typed on the business phone
  (``data.key.fromMe: true`` → human takeover, never agent input, unless a send of ours that
  a crash cut off has the same text). ``data.key.id`` is the dedupe key; a ``@lid``
  ``remoteJid`` is replaced by the phone JID in ``remoteJidAlt``.
* ``messages.update``: status of a message (``keyId``, ``status`` SERVER_ACK … PLAYED).
* ``send.message``: what was sent through the API, i.e. by us: the receipt of a cut-off
  send in that conversation (matched by text), else ignored.

Authenticity: a static header configured on the instance webhook, or the ``jwt_key`` bearer
JWT (HS256, ``exp`` checked). Calls to Evolution carry the ``apikey`` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatbridge.channels.base import load_object
from chatbridge.channels.whatsapp.base import ProviderCheck, ProviderContext
from chatbridge.channels.whatsapp.gateway import GatewayError
from chatbridge.channels.whatsapp.ids import (
    ChatAddress,
    jid_kind,
    phone_digits,
    to_s_whatsapp,
)
from chatbridge.channels.whatsapp.inbound import (
    CHANNEL,
    chat_address,
    chat_filter,
    contact_info,
    get_obj,
    get_str,
    human_takeover,
    inbound_message,
    invalid,
    require_str,
    sent_message,
)
from chatbridge.channels.whatsapp.interactive import evolution_choice
from chatbridge.channels.whatsapp.media_out import StoredAttachment
from chatbridge.channels.whatsapp.signatures import verify_evolution
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import Attachment, Ignored, ParsedWebhook, StatusUpdate

NAME = "evolution"

STATUS = {
    "ERROR": "failed",
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "played",
}
# Baileys' numeric WAMessageStatus, which some versions pass through.
STATUS_NUMBERS = {
    0: "ERROR",
    1: "PENDING",
    2: "SERVER_ACK",
    3: "DELIVERY_ACK",
    4: "READ",
    5: "PLAYED",
}
MEDIA_TYPES = ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage")
# How long Evolution shows "composing" for a typing_on (its sendPresence waits this long).
PRESENCE_MS = 1000


def parse_webhook(
    headers: Mapping[str, str], body: bytes, settings: CommsSettings
) -> list[ParsedWebhook]:
    """Verify (static header or JWT, when configured) and parse one Evolution webhook.

    Raises:
        BadSignature: the configured header or JWT is missing or wrong.
        BadInput: not a JSON object, or a handled event without the fields it needs.
    """
    verify_evolution(
        headers,
        header_name=settings.evolution_webhook_header_name,
        header_value=settings.evolution_webhook_header_value,
        jwt_key=settings.evolution_jwt_key,
    )
    envelope = load_object(body)
    event = (get_str(envelope, "event") or "").lower().replace("_", ".").replace("-", ".")
    instance = get_str(envelope, "instance") or settings.evolution_instance
    raw = envelope.get("data")
    items = raw if isinstance(raw, list) else [raw]
    if event not in ("messages.upsert", "messages.update", "send.message"):
        return [Ignored(f"event_not_handled:{event[:50]}")]
    out: list[ParsedWebhook] = []
    for item in items:
        if not isinstance(item, dict):
            invalid("data must be an object")
        if event == "messages.upsert":
            out.append(_upsert(settings, instance, item))
        elif event == "send.message":
            out.append(_sent(settings, instance, item))
        else:
            out.append(_update(item))
    return out


def _text_and_media(message: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
    text = get_str(message, "conversation") or get_str(
        get_obj(message, "extendedTextMessage"), "text"
    )
    attachments: list[Attachment] = []
    extra: dict[str, Any] = {}
    choice = evolution_choice(message)  # a tap on buttons or a list: metadata.interactive
    if choice is not None:
        return text or choice["title"], attachments, {"interactive": choice}
    wrapped = get_obj(get_obj(message, "documentWithCaptionMessage"), "message")
    for kind in MEDIA_TYPES:
        media = get_obj(message, kind) or get_obj(wrapped, kind)
        if not media:
            continue
        text = text or get_str(media, "caption")
        url = get_str(message, "mediaUrl") or get_str(media, "url")
        if url:
            attachments.append(
                Attachment(
                    url=url, mime=get_str(media, "mimetype"), name=get_str(media, "fileName")
                )
            )
        if not get_str(message, "mediaUrl"):
            # WhatsApp's CDN URL is encrypted: POST /chat/getBase64FromMediaMessage/{instance}
            extra["media_fetch"] = "getBase64FromMediaMessage"
        break
    return text or "", attachments, extra


def _chat(key: dict[str, Any]) -> tuple[str, str | None]:
    """(the chat's JID in Baileys' form, its ``@lid`` if WhatsApp named it so) of ``data.key``:
    a ``@lid`` chat is keyed by its phone JID (``remoteJidAlt``) when Evolution gives one."""
    chat = require_str(key, "remoteJid", "data.key.remoteJid")
    lid = None
    if jid_kind(chat) == "lid":
        lid = chat
        alt = get_str(key, "remoteJidAlt")
        if alt and jid_kind(alt) == "user":
            chat = alt
    return to_s_whatsapp(chat), lid


def _sent(settings: CommsSettings, instance: str, data: dict[str, Any]) -> ParsedWebhook:
    """``send.message``: a message sent through Evolution's API, i.e. ours; the receipt of a
    send that a crash cut off, matched by conversation and text (ignored if none waits)."""
    key = get_obj(data, "key")
    message_id = require_str(key, "id", "data.key.id")
    chat, _ = _chat(key)
    ignored = chat_filter(settings, chat)
    if ignored is not None:
        return ignored
    text, _, _ = _text_and_media(get_obj(data, "message"))
    address = chat_address(NAME, instance, chat)
    return sent_message(address, message_id=message_id, text=text, otherwise=None)


def _upsert(settings: CommsSettings, instance: str, data: dict[str, Any]) -> ParsedWebhook:
    key = get_obj(data, "key")
    message_id = require_str(key, "id", "data.key.id")
    chat, lid = _chat(key)
    ignored = chat_filter(settings, chat)
    if ignored is not None:
        return ignored
    address = chat_address(NAME, instance, chat)
    text, attachments, extra = _text_and_media(get_obj(data, "message"))
    if key.get("fromMe") is True:
        # typed on the phone, unless it is a cut-off send of ours with this text coming back
        human = human_takeover(settings, address, message_id=message_id, text=text)
        return sent_message(address, message_id=message_id, text=text, otherwise=human)
    raw_participant = get_str(key, "participant")
    participant = get_str(key, "participantAlt") or raw_participant
    sender = to_s_whatsapp(participant) if participant else chat
    sender_lid = lid
    if participant:
        sender_lid = (
            raw_participant if raw_participant and jid_kind(raw_participant) == "lid" else None
        )
    contact = contact_info(
        settings,
        provider=NAME,
        name=get_str(data, "pushName"),
        jid=sender if jid_kind(sender) == "user" else None,
        lid=sender_lid,
        phone=phone_digits(sender),
    )
    message_type = get_str(data, "messageType") or "conversation"
    return inbound_message(
        settings,
        address,
        message_id=message_id,
        text=text,
        contact=contact,
        content_type=(
            "text"
            if message_type in ("conversation", "extendedTextMessage") or "interactive" in extra
            else "media"
        ),
        attachments=attachments,
        timestamp=data.get("messageTimestamp"),
        participant=participant,
        extra=extra,
    )


def _update(data: dict[str, Any]) -> ParsedWebhook:
    key = get_obj(data, "key")
    message_id = get_str(data, "keyId") or get_str(key, "id")
    if message_id is None:
        invalid("data.keyId must be a string")
    from_me = data.get("fromMe", key.get("fromMe"))
    if from_me is not True:
        return Ignored("status_of_incoming_message")
    raw_status = data.get("status", get_obj(data, "update").get("status"))
    if isinstance(raw_status, int) and not isinstance(raw_status, bool):
        raw_status = STATUS_NUMBERS.get(raw_status)
    status = STATUS.get(raw_status) if isinstance(raw_status, str) else None
    if status is None:
        return Ignored(f"status:{str(raw_status)[:20]}")
    return StatusUpdate(
        channel=CHANNEL,
        external_message_id=message_id,
        status=status,
        error="Evolution reported status ERROR" if status == "failed" else None,
    )


def number_of(chat_id: str) -> str:
    """What Evolution's ``number`` wants: the digits for a user, the JID otherwise."""
    return phone_digits(chat_id) or chat_id


def _sent_id(result: Any) -> str | None:
    key = result.get("key") if isinstance(result, dict) else None
    return str(key["id"]) if isinstance(key, dict) and isinstance(key.get("id"), str) else None


class Provider:
    """Sends through Evolution API v2 (``apikey`` header; the instance in the path)."""

    name = NAME

    def __init__(self, ctx: ProviderContext) -> None:
        s = ctx.settings
        self._http = ctx.http
        self._base = s.evolution_base_url.rstrip("/")
        self._key = s.evolution_api_key
        self._instance = s.evolution_instance
        self._settings = s
        self._headers = {"apikey": s.evolution_api_key} if s.evolution_api_key else {}

    async def _post(self, path: str, body: dict[str, Any], what: str) -> Any:
        return await self._http.send(
            "POST",
            f"{self._base}{path}",
            what=f"Evolution {what}",
            headers=self._headers,
            body=body,
            secrets=(self._key,),
        )

    async def send_text(self, chat: ChatAddress, text: str) -> str | None:
        body = {"number": number_of(chat.chat_id), "text": text}
        return _sent_id(await self._post(f"/message/sendText/{chat.instance}", body, "sendText"))

    async def send_media(
        self, chat: ChatAddress, attachment: Attachment, caption: str | None
    ) -> str | None:
        number = number_of(chat.chat_id)
        kind = (attachment.mime or "").partition("/")[0]
        # the bridge's own file goes as base64 (Evolution takes a URL or base64)
        media = attachment.base64() if isinstance(attachment, StoredAttachment) else attachment.url
        if kind == "audio":
            body: dict[str, Any] = {"number": number, "audio": media}
            path = f"/message/sendWhatsAppAudio/{chat.instance}"
            return _sent_id(await self._post(path, body, "sendWhatsAppAudio"))
        body = {
            "number": number,
            "mediatype": kind if kind in ("image", "video") else "document",
            "media": media,
        }
        if attachment.mime:
            body["mimetype"] = attachment.mime
        if caption:
            body["caption"] = caption
        if attachment.name:
            body["fileName"] = attachment.name
        return _sent_id(await self._post(f"/message/sendMedia/{chat.instance}", body, "sendMedia"))

    async def set_typing(self, chat: ChatAddress, on: bool, *, last_inbound_id: str | None) -> None:
        body = {
            "number": number_of(chat.chat_id),
            "presence": "composing" if on else "paused",
            "delay": PRESENCE_MS if on else 0,
        }
        await self._post(f"/chat/sendPresence/{chat.instance}", body, "sendPresence")

    async def mark_read(self, chat: ChatAddress, message_ids: list[str]) -> None:
        body = {
            "readMessages": [
                {"remoteJid": to_s_whatsapp(chat.chat_id), "fromMe": False, "id": message_id}
                for message_id in message_ids
            ]
        }
        await self._post(f"/chat/markMessageAsRead/{chat.instance}", body, "markMessageAsRead")

    async def check(self) -> ProviderCheck:
        s = self._settings
        check = ProviderCheck(NAME, ok=False, details={"base_url": self._base})
        if not (s.evolution_jwt_key or s.evolution_webhook_header_value):
            check.warnings.append(
                "no Evolution webhook secret (static header or jwt_key) is set: webhooks are "
                "accepted without authentication"
            )
        if not self._key:
            check.problems.append("no Evolution API key is set (evolution_api_key)")
            return check
        try:
            info = await self._http.request(
                "GET",
                f"{self._base}/instance/connectionState/{self._instance}",
                what="Evolution",
                headers=self._headers,
                secrets=(self._key,),
            )
        except GatewayError as exc:
            return check.gateway_problem(
                exc,
                unreachable=f"cannot reach Evolution API at {self._base}",
                refused="Evolution refused the API key (apikey header)",
                unknown=f"Evolution has no instance named {self._instance!r}: create it or fix "
                "evolution_instance",
                other="Evolution answered an error",
            )
        state = get_str(get_obj(info, "instance"), "state") if isinstance(info, dict) else None
        check.details["instance"] = self._instance
        check.details["state"] = state
        if state != "open":
            check.problems.append(
                f"Evolution instance {self._instance!r} is {state or 'in an unknown state'}, "
                "not open: connect it (scan the QR code)"
            )
        check.ok = not check.problems
        return check
