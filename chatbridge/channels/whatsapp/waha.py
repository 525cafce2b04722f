"""WAHA (WhatsApp HTTP API): webhooks in, ``/api/send*`` out.

Webhook envelope ``{id, timestamp, event, session, me, engine, payload}``:

* ``message``: incoming messages only; ``message.any``: every message, our own too
  (``fromMe``, ``source`` ``"app"`` = typed on the phone → human takeover, ``"api"`` = sent
  through the API → ours). A ``fromMe`` message is a ``DeliveryReceipt`` matched to a send
  of ours that a crash cut off (by conversation and text); if none takes it, ``"api"`` is
  ignored and anything else is the human takeover. Subscribe to one of them; if both come,
  the message id dedupes.
* ``message.ack`` / ``message.ack.group``: delivery status of a message we sent
  (-1 ERROR, 0 PENDING, 1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED).

``payload.id`` (``"{fromMe}_{chatId}_{msgId}[_{participant}]"``) is the dedupe key;
``X-Webhook-Hmac`` (hex HMAC-SHA512 of the raw body) is checked when ``waha_hmac_key`` is set.
Calls to WAHA carry ``X-Api-Key``; the session is the instance of the conversation.

WAHA's engines (``envelope.engine``) fill a message differently, and versions of one engine
differ too, so nothing here depends on the engine's name:

========  ==========================  =======================  ==============================
engine    ``from`` / ``to`` (fromMe)   push name                ``_data`` (chat, sender)
========  ==========================  =======================  ==============================
WEBJS     me / the chat               ``_data.notifyName``     ``id.remote``, ``author``
NOWEB     the chat / absent (newer);  ``_data.pushName``       ``key.remoteJid``,
          me / the chat (older)                                ``key.participant``
GOWS      the chat / ``null``         ``_data.Info.PushName``  ``Info.Chat``, ``Info.Sender``
========  ==========================  =======================  ==============================

``to`` is therefore never read: the chat is the one in ``payload.id``, else in ``_data``, else
(a payload with neither) ``from``/``to``. ``source`` (``"app"`` / ``"api"``) comes with
NOWEB and GOWS; WEBJS sends none, so its echo of our own send is told from the operator's
message by its id (the one the send returned) or, after a crash, by a cut-off send of ours
with the same text in that conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatbridge.channels.base import load_object
from chatbridge.channels.whatsapp.base import ProviderCheck, ProviderContext
from chatbridge.channels.whatsapp.gateway import GatewayError
from chatbridge.channels.whatsapp.ids import ChatAddress, jid_kind, phone_digits, to_c_us
from chatbridge.channels.whatsapp.inbound import (
    CHANNEL,
    MAX_ID,
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
from chatbridge.channels.whatsapp.media_out import StoredAttachment
from chatbridge.channels.whatsapp.signatures import verify_waha
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import Attachment, Ignored, ParsedWebhook, StatusUpdate

NAME = "waha"

ACK_STATUS = {-1: "failed", 1: "sent", 2: "delivered", 3: "read", 4: "played"}
ACK_NAMES = {"ERROR": -1, "PENDING": 0, "SERVER": 1, "DEVICE": 2, "READ": 3, "PLAYED": 4}


def parse_webhook(
    headers: Mapping[str, str], body: bytes, settings: CommsSettings
) -> list[ParsedWebhook]:
    """Verify (when a HMAC key is set) and parse one WAHA webhook.

    Raises:
        BadSignature: a key is set and ``X-Webhook-Hmac`` is missing or wrong.
        BadInput: not a JSON object, or a handled event without the fields it needs.
    """
    if settings.waha_hmac_key:
        verify_waha(settings.waha_hmac_key, body, headers)
    envelope = load_object(body)
    event = get_str(envelope, "event") or ""
    session = get_str(envelope, "session") or settings.waha_session
    payload = get_obj(envelope, "payload")
    if event in ("message", "message.any"):
        me = get_str(get_obj(envelope, "me"), "id")
        return [_message(settings, session, payload, me)]
    if event in ("message.ack", "message.ack.group"):
        return [_ack(payload)]
    return [Ignored(f"event_not_handled:{event[:50]}")]


# ------------------------------------------------------------------------------ engines
# Pure readers of one ``payload``, whichever engine filled it (see the module docstring).


def serialized_parts(message_id: str) -> tuple[bool, str, str | None] | None:
    """``"true_<chat>_<id>[_<participant>]"`` → (fromMe, chat, participant), else ``None``."""
    parts = message_id.split("_")
    if len(parts) not in (3, 4) or parts[0] not in ("true", "false") or "@" not in parts[1]:
        return None
    participant = parts[3] if len(parts) == 4 and "@" in parts[3] else None
    return parts[0] == "true", parts[1], participant


def _jid(value: Any) -> str | None:
    """A JID given as a string or as WEBJS's ``{"_serialized": …}`` object."""
    if isinstance(value, dict):
        value = value.get("_serialized")
    return value if isinstance(value, str) and "@" in value else None


def message_from_me(data: Mapping[str, Any], message_id: str) -> bool:
    """``payload.fromMe``; else the engine's own flag; else the id's ``true_`` prefix."""
    raw = get_obj(data, "_data")
    for flag in (
        data.get("fromMe"),
        get_obj(raw, "key").get("fromMe"),  # NOWEB
        get_obj(raw, "Info").get("IsFromMe"),  # GOWS
        get_obj(raw, "id").get("fromMe"),  # WEBJS
    ):
        if isinstance(flag, bool):
            return flag
    parts = serialized_parts(message_id)
    return parts is not None and parts[0]


def message_chat(
    data: Mapping[str, Any], message_id: str, from_me: bool, me: str | None
) -> str | None:
    """The chat a message belongs to, as the engine named it (not yet normalised).

    ``payload.id`` first (every engine builds it from the chat), then ``_data`` (NOWEB
    ``key.remoteJid``, GOWS ``Info.Chat``, WEBJS ``id.remote``), and only then ``from`` /
    ``to``: for a ``fromMe`` message some engines put the chat in ``from``, others in ``to``.
    """
    parts = serialized_parts(message_id)
    if parts is not None:
        return parts[1]
    raw = get_obj(data, "_data")
    for candidate in (
        get_obj(raw, "key").get("remoteJid"),
        get_obj(raw, "Info").get("Chat"),
        get_obj(raw, "id").get("remote"),
    ):
        if (jid := _jid(candidate)) is not None:
            return jid
    sender, receiver = _jid(data.get("from")), _jid(data.get("to"))
    if not from_me:
        return sender
    if receiver is not None and receiver != me:
        return receiver
    return sender if sender is not None and sender != me else None


def message_participant(data: Mapping[str, Any], message_id: str) -> str | None:
    """Who wrote a group message: ``payload.participant``, else the engine's own field."""
    raw = get_obj(data, "_data")
    info = get_obj(raw, "Info")
    parts = serialized_parts(message_id)
    for candidate in (
        data.get("participant"),
        data.get("author"),  # WEBJS
        raw.get("author"),  # WEBJS
        get_obj(raw, "key").get("participant"),  # NOWEB
        info.get("Sender") if info.get("IsGroup") is True else None,  # GOWS
        parts[2] if parts is not None else None,
    ):
        if (jid := _jid(candidate)) is not None:
            return jid
    return None


def message_push_name(data: Mapping[str, Any]) -> str | None:
    """The sender's WhatsApp name: NOWEB ``pushName``, WEBJS ``notifyName``, GOWS
    ``Info.PushName`` (all inside ``_data``)."""
    raw = get_obj(data, "_data")
    return (
        get_str(raw, "pushName")
        or get_str(raw, "notifyName")
        or get_str(get_obj(raw, "Info"), "PushName")
    )


def phone_alternative(data: Mapping[str, Any], from_me: bool) -> str | None:
    """The phone JID of a chat WhatsApp addressed by LID: NOWEB ``key.remoteJidAlt``; GOWS
    (whatsmeow's message source) ``Info.SenderAlt``, or ``Info.RecipientAlt`` for our own."""
    raw = get_obj(data, "_data")
    info = get_obj(raw, "Info")
    for candidate in (
        get_obj(raw, "key").get("remoteJidAlt"),
        info.get("RecipientAlt") if from_me else info.get("SenderAlt"),
    ):
        jid = _jid(candidate)
        if jid is not None and jid_kind(jid) == "user":
            return jid
    return None


# ------------------------------------------------------------------------------ parsing


def _message(
    settings: CommsSettings, session: str, data: dict[str, Any], me: str | None
) -> ParsedWebhook:
    if isinstance(data.get("id"), dict):  # a WEBJS id object: its serialized form
        data = {**data, "id": data["id"].get("_serialized")}
    message_id = require_str(data, "id", "payload.id")
    from_me = message_from_me(data, message_id)
    chat = message_chat(data, message_id, from_me, me)
    if chat is None or len(chat) > MAX_ID:
        invalid(
            "payload names no chat: payload.id must be '{fromMe}_{chatId}_{messageId}', or "
            "_data must carry key.remoteJid / Info.Chat / id.remote"
        )
    lid = None
    if jid_kind(chat) == "lid":
        lid = chat
        alt = phone_alternative(data, from_me)
        if alt is not None:
            chat = alt  # the phone JID: the same thread whichever address WhatsApp used
    chat = to_c_us(chat)
    ignored = chat_filter(settings, chat)
    if ignored is not None:
        return ignored
    address = chat_address(NAME, session, chat)
    text = get_str(data, "body") or ""
    if from_me:
        # Our own send's echo (the receipt of a send cut off by a crash) or the operator
        # typing on the phone. ``source: "api"`` (NOWEB, GOWS) is surely a send through the
        # API; without it (WEBJS, or "app") it is a human's unless one of our sends takes it.
        human = None
        if get_str(data, "source") != "api":
            human = human_takeover(settings, address, message_id=message_id, text=text)
        return sent_message(address, message_id=message_id, text=text, otherwise=human)
    participant = message_participant(data, message_id) if jid_kind(chat) == "group" else None
    sender = to_c_us(participant) if participant else chat
    sender_lid = lid if not participant else (sender if jid_kind(sender) == "lid" else None)
    contact = contact_info(
        settings,
        provider=NAME,
        name=message_push_name(data),
        jid=sender if jid_kind(sender) == "user" else None,
        lid=sender_lid,
        phone=phone_digits(sender),
    )
    attachments: list[Attachment] = []
    extra: dict[str, Any] = {}
    if data.get("hasMedia") is True:
        media = get_obj(data, "media")
        url = get_str(media, "url")
        if url:
            attachments.append(
                Attachment(
                    url=url, mime=get_str(media, "mimetype"), name=get_str(media, "filename")
                )
            )
            extra["media_auth"] = "X-Api-Key"  # WAHA's media URLs need the API key
        else:
            extra["media_missing"] = get_str(media, "error") or "not downloaded by WAHA"
    return inbound_message(
        settings,
        address,
        message_id=message_id,
        text=text,
        contact=contact,
        content_type="media" if data.get("hasMedia") is True else "text",
        attachments=attachments,
        timestamp=data.get("timestamp"),
        participant=participant,
        extra=extra,
    )


def _ack(data: dict[str, Any]) -> ParsedWebhook:
    message_id = require_str(data, "id", "payload.id")
    if data.get("fromMe") is not True:
        return Ignored("ack_of_incoming_message")
    ack = data.get("ack")
    if not isinstance(ack, int) or isinstance(ack, bool):
        name = get_str(data, "ackName")
        if name is None or name not in ACK_NAMES:
            invalid("payload.ack must be an integer (or ackName one of ERROR…PLAYED)")
        ack = ACK_NAMES[name]
    status = ACK_STATUS.get(ack)
    if status is None:
        return Ignored(f"ack:{ack}")
    return StatusUpdate(
        channel=CHANNEL,
        external_message_id=message_id,
        status=status,
        error="WAHA reported ack ERROR" if status == "failed" else None,
    )


def sent_id(result: Any, chat_id: str) -> str | None:
    """The serialized id (``"true_<chat>_<id>"``) of a message WAHA says it sent.

    Engines answer differently: ``{"id": "true_…"}``, ``{"id": {"_serialized": …}}``
    (WEBJS) or a Baileys message ``{"key": {"remoteJid", "fromMe", "id"}}`` (NOWEB).
    """
    if not isinstance(result, dict):
        return None
    ident = result.get("id")
    if isinstance(ident, str) and ident:
        return ident
    if isinstance(ident, dict) and isinstance(ident.get("_serialized"), str):
        return str(ident["_serialized"])
    key = result.get("key")
    if isinstance(key, dict) and isinstance(key.get("id"), str):
        remote = key.get("remoteJid") if isinstance(key.get("remoteJid"), str) else chat_id
        return f"true_{to_c_us(str(remote))}_{key['id']}"
    return None


def _media_endpoint(mime: str | None) -> str:
    kind = (mime or "").partition("/")[0]
    return {"image": "sendImage", "video": "sendVideo", "audio": "sendVoice"}.get(kind, "sendFile")


class Provider:
    """Sends through WAHA's HTTP API (``X-Api-Key``)."""

    name = NAME

    def __init__(self, ctx: ProviderContext) -> None:
        s = ctx.settings
        self._http = ctx.http
        self._base = s.waha_base_url.rstrip("/")
        self._key = s.waha_api_key
        self._session = s.waha_session
        self._hmac = s.waha_hmac_key
        self._headers = {"X-Api-Key": s.waha_api_key} if s.waha_api_key else {}

    async def _post(self, path: str, body: dict[str, Any], what: str) -> Any:
        return await self._http.send(
            "POST",
            f"{self._base}{path}",
            what=f"WAHA {what}",
            headers=self._headers,
            body=body,
            secrets=(self._key,),
        )

    async def send_text(self, chat: ChatAddress, text: str) -> str | None:
        body = {"session": chat.instance, "chatId": chat.chat_id, "text": text}
        return sent_id(await self._post("/api/sendText", body, "sendText"), chat.chat_id)

    async def send_media(
        self, chat: ChatAddress, attachment: Attachment, caption: str | None
    ) -> str | None:
        endpoint = _media_endpoint(attachment.mime)
        file: dict[str, Any] = {"url": attachment.url}
        if isinstance(attachment, StoredAttachment):
            file = {"data": attachment.base64()}  # the bridge's file: its bytes, not a link
        if attachment.mime:
            file["mimetype"] = attachment.mime
        if attachment.name:
            file["filename"] = attachment.name
        body: dict[str, Any] = {"session": chat.instance, "chatId": chat.chat_id, "file": file}
        if caption and endpoint != "sendVoice":
            body["caption"] = caption
        return sent_id(await self._post(f"/api/{endpoint}", body, endpoint), chat.chat_id)

    async def set_typing(self, chat: ChatAddress, on: bool, *, last_inbound_id: str | None) -> None:
        endpoint = "startTyping" if on else "stopTyping"
        await self._post(
            f"/api/{endpoint}", {"session": chat.instance, "chatId": chat.chat_id}, endpoint
        )

    async def mark_read(self, chat: ChatAddress, message_ids: list[str]) -> None:
        body = {"session": chat.instance, "chatId": chat.chat_id, "messageIds": message_ids}
        await self._post("/api/sendSeen", body, "sendSeen")

    async def check(self) -> ProviderCheck:
        check = ProviderCheck(NAME, ok=False, details={"base_url": self._base})
        if not self._hmac:
            check.warnings.append(
                "no WAHA HMAC key is set: webhooks are accepted without a signature"
            )
        if not self._key:
            check.warnings.append("no WAHA API key is set (fine only if WAHA runs without one)")
        try:
            info = await self._http.request(
                "GET",
                f"{self._base}/api/sessions/{self._session}",
                what="WAHA",
                headers=self._headers,
                secrets=(self._key,),
            )
        except GatewayError as exc:
            return check.gateway_problem(
                exc,
                unreachable=f"cannot reach WAHA at {self._base}",
                refused="WAHA refused the API key (X-Api-Key): check waha_api_key",
                unknown=f"WAHA has no session named {self._session!r}: create it or fix "
                "waha_session",
                other="WAHA answered an error",
            )
        status = get_str(info, "status") if isinstance(info, dict) else None
        check.details["session"] = self._session
        check.details["session_status"] = status
        if status != "WORKING":
            check.problems.append(
                f"WAHA session {self._session!r} is {status or 'in an unknown state'}, not "
                "WORKING: start it and scan the QR code"
            )
        check.ok = not check.problems
        return check
