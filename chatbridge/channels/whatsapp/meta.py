"""Meta WhatsApp Cloud API: ``messages`` webhooks in, ``/{phone number id}/messages`` out.

One webhook may carry several ``entry[].changes[].value`` objects, each with ``messages[]``
(customers' messages; never our own: the Cloud API has no ``fromMe``) and ``statuses[]``
(sent / delivered / read / failed for messages we sent; with the recipient, so a status for
a send cut off by a crash is matched to its conversation as that send's receipt).
``value.metadata.phone_number_id`` is the instance; ``contacts[].profile.name`` the push
name; ``wamid`` the dedupe key. Users known only by a username arrive with a business-scoped
user id (BSUID, ``user_id``) and no phone number.

``X-Hub-Signature-256`` is checked when ``meta_app_secret`` is set; the ``GET`` verification
handshake is answered by ``verify_subscription``. Sends use ``Authorization: Bearer``. The
24-hour customer service window is enforced by the channel before a free-form send.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import aiohttp

from chatbridge.channels.base import load_object
from chatbridge.channels.whatsapp.base import ProviderCheck, ProviderContext
from chatbridge.channels.whatsapp.gateway import GatewayError
from chatbridge.channels.whatsapp.ids import ChatAddress, is_bsuid, jid_kind, phone_digits
from chatbridge.channels.whatsapp.inbound import (
    CHANNEL,
    chat_address,
    chat_filter,
    contact_info,
    get_obj,
    get_str,
    inbound_message,
    require_str,
)
from chatbridge.channels.whatsapp.interactive import meta_choice
from chatbridge.channels.whatsapp.media_out import StoredAttachment
from chatbridge.channels.whatsapp.signatures import verify_meta
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import PermanentDelivery
from chatbridge.models import Attachment, Ignored, ParsedWebhook, StatusUpdate

NAME = "meta_cloud"
MAX_TEXT = 4096
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
STATUSES = ("sent", "delivered", "read", "failed")


def verify_subscription(
    settings: CommsSettings, mode: str | None, token: str | None, challenge: str | None
) -> str | None:
    """The challenge to echo for Meta's ``GET ?hub.mode=subscribe&…`` handshake, or ``None``
    when the request must be refused (no verify token configured, or a different one)."""
    expected = settings.meta_verify_token
    if not expected or mode != "subscribe" or token is None or challenge is None:
        return None
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return challenge


def _list(obj: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = obj.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def parse_webhook(
    headers: Mapping[str, str], body: bytes, settings: CommsSettings
) -> list[ParsedWebhook]:
    """Verify (when an app secret is set) and parse one Cloud API webhook into one model per
    message and per status it holds.

    Raises:
        BadSignature: an app secret is set and the signature is missing or wrong.
        BadInput: not a JSON object, or a message without its id.
    """
    if settings.meta_app_secret:
        verify_meta(settings.meta_app_secret, body, headers)
    payload = load_object(body)
    if payload.get("object") != "whatsapp_business_account":
        return [Ignored(f"object_not_handled:{str(payload.get('object'))[:50]}")]
    out: list[ParsedWebhook] = []
    for entry in _list(payload, "entry"):
        for change in _list(entry, "changes"):
            if change.get("field") != "messages":
                continue
            value = get_obj(change, "value")
            instance = (
                get_str(get_obj(value, "metadata"), "phone_number_id")
                or settings.meta_phone_number_id
                or "meta"
            )
            contacts = _list(value, "contacts")
            for message in _list(value, "messages"):
                out.append(_message(settings, instance, message, contacts))
            out.extend(_status(instance, status) for status in _list(value, "statuses"))
    return out or [Ignored("no_messages")]


def _contact_for(
    contacts: list[dict[str, Any]], wa_id: str | None, user_id: str | None
) -> dict[str, Any]:
    for contact in contacts:
        if (wa_id and contact.get("wa_id") == wa_id) or (
            user_id and contact.get("user_id") == user_id
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _content(
    settings: CommsSettings, message: dict[str, Any]
) -> tuple[str, str, list[Attachment], dict[str, Any]]:
    """(text, content type, attachments, extra context) of one message."""
    kind = get_str(message, "type") or "text"
    body = get_obj(message, kind)
    if kind == "text":
        return get_str(body, "body") or "", "text", [], {}
    if kind in MEDIA_TYPES:
        media_id = get_str(body, "id")
        attachments = []
        if media_id:
            # GET this with the Bearer token → {url, mime_type, …}; the id expires in 7 days.
            base = settings.meta_graph_url.rstrip("/")
            attachments.append(
                Attachment(
                    url=f"{base}/{settings.meta_api_version}/{media_id}",
                    mime=get_str(body, "mime_type"),
                    name=get_str(body, "filename"),
                )
            )
        extra = {"media_id": media_id, "media_auth": "Bearer"}
        return get_str(body, "caption") or "", "media", attachments, extra
    if kind == "button":
        choice = meta_choice(kind, body)  # a template's quick-reply button
        tapped: dict[str, Any] = {"interactive": choice} if choice else {}
        return get_str(body, "text") or get_str(body, "payload") or "", "text", [], tapped
    if kind == "interactive":
        reply = get_obj(body, "button_reply") or get_obj(body, "list_reply")
        reply_extra: dict[str, Any] = {"reply_id": get_str(reply, "id")}
        choice = meta_choice(kind, body)  # the option tapped: metadata.interactive
        if choice:
            reply_extra["interactive"] = choice
        return get_str(reply, "title") or "", "text", [], reply_extra
    if kind == "location":
        return (
            get_str(body, "name") or get_str(body, "address") or "",
            "location",
            [],
            {"location": body},
        )
    return "", kind[:40], [], {}


def _message(
    settings: CommsSettings, instance: str, message: dict[str, Any], contacts: list[dict[str, Any]]
) -> ParsedWebhook:
    message_id = require_str(message, "id", "messages[].id")
    kind = get_str(message, "type") or "text"
    if kind in ("reaction", "unsupported", "system", "ephemeral"):
        return Ignored(f"message_type:{kind}")
    wa_id = get_str(message, "from")
    user_id = get_str(message, "from_user_id") or get_str(message, "user_id")
    contact = _contact_for(contacts, wa_id, user_id)
    user_id = user_id or get_str(contact, "user_id")
    digits = phone_digits(wa_id) if wa_id else None
    chat_id = digits or user_id or wa_id
    if chat_id is None:
        return Ignored("no_sender")
    group_id = get_str(message, "group_id")
    if group_id:
        chat_id = f"{group_id}@g.us"
    ignored = chat_filter(settings, chat_id)
    if ignored is not None:
        return ignored
    text, content_type, attachments, extra = _content(settings, message)
    address = chat_address(NAME, instance, chat_id)
    info = contact_info(
        settings,
        provider=NAME,
        name=get_str(get_obj(contact, "profile"), "name"),
        bsuid=user_id,
        phone=digits,
    )
    context = get_obj(message, "context")
    if get_str(context, "id"):
        extra["reply_to"] = get_str(context, "id")
    return inbound_message(
        settings,
        address,
        message_id=message_id,
        text=text,
        contact=info,
        content_type=content_type,
        attachments=attachments,
        timestamp=message.get("timestamp"),
        participant=digits if group_id else None,
        extra=extra,
    )


def status_chat(status: Mapping[str, Any]) -> str | None:
    """The chat a ``statuses[]`` item is about, keyed as ``_message`` keys the customer's
    messages: the group, else the phone digits of ``recipient_id``, else the BSUID
    (``recipient_user_id``)."""
    recipient = get_str(status, "recipient_id")
    if recipient and get_str(status, "recipient_type") == "group":
        return f"{recipient}@g.us"
    digits = phone_digits(recipient) if recipient else None
    return digits or get_str(status, "recipient_user_id") or recipient


def _status(instance: str, status: dict[str, Any]) -> ParsedWebhook:
    """One ``statuses[]`` item. It names the recipient (never the text), so a status for a
    wamid we never recorded — a send cut off by a crash before its id was written — can be
    that send's receipt: ``channel_key`` lets the bridge find the conversation."""
    message_id = require_str(status, "id", "statuses[].id")
    value = get_str(status, "status")
    if value not in STATUSES:
        return Ignored(f"status:{str(value)[:20]}")
    error = None
    if value == "failed":
        errors = _list(status, "errors")
        first = errors[0] if errors else {}
        details = get_str(get_obj(first, "error_data"), "details")
        error = (
            " — ".join(
                part
                for part in (
                    get_str(first, "code"),
                    get_str(first, "title") or get_str(first, "message"),
                    details,
                )
                if part
            )
            or "Meta reported the message as failed"
        )
    chat = status_chat(status)
    channel_key = None
    if chat is not None and ":" not in instance:
        channel_key = ChatAddress(NAME, instance, chat).channel_key
    return StatusUpdate(
        channel=CHANNEL,
        external_message_id=message_id,
        status=value,
        error=error,
        channel_key=channel_key,
        callback_data=get_str(status, "biz_opaque_callback_data"),
    )


def _sent_id(result: Any) -> str | None:
    messages = result.get("messages") if isinstance(result, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        ident = messages[0].get("id")
        return ident if isinstance(ident, str) else None
    return None


def _chunks(text: str) -> list[str]:
    return [text[i : i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)] or [""]


class Provider:
    """Sends through the Graph API's ``/{phone number id}/messages`` (Bearer token)."""

    name = NAME

    def __init__(self, ctx: ProviderContext) -> None:
        s = ctx.settings
        self._settings = s
        self._http = ctx.http
        self._base = f"{s.meta_graph_url.rstrip('/')}/{s.meta_api_version}"
        self._token = s.meta_access_token
        self._headers = {"Authorization": f"Bearer {s.meta_access_token or ''}"}

    def _recipient(self, chat: ChatAddress) -> dict[str, Any]:
        if jid_kind(chat.chat_id) == "group":
            return {"recipient_type": "group", "to": chat.chat_id.partition("@")[0]}
        digits = phone_digits(chat.chat_id)
        if digits is None:
            reason = "a business-scoped user id (BSUID)" if is_bsuid(chat.chat_id) else "no number"
            raise PermanentDelivery(
                f"meta_cloud: the contact is known by {reason} and no phone number; sending "
                "without a phone number is not supported"
            )
        return {"recipient_type": "individual", "to": f"+{digits}"}

    async def _post(self, chat: ChatAddress, body: dict[str, Any], what: str) -> Any:
        if not self._token:
            raise PermanentDelivery("meta_cloud: no access token is set (meta_access_token)")
        return await self._http.send(
            "POST",
            f"{self._base}/{chat.instance}/messages",
            what=f"Meta {what}",
            headers=self._headers,
            body={"messaging_product": "whatsapp", **body},
            secrets=(self._token,),
        )

    async def send_text(self, chat: ChatAddress, text: str) -> str | None:
        first: str | None = None
        for chunk in _chunks(text):
            body = {**self._recipient(chat), "type": "text"}
            body["text"] = {"preview_url": False, "body": chunk}
            sent = _sent_id(await self._post(chat, body, "send text"))
            first = first or sent
        return first

    async def send_media(
        self, chat: ChatAddress, attachment: Attachment, caption: str | None
    ) -> str | None:
        kind = (attachment.mime or "").partition("/")[0]
        kind = kind if kind in ("image", "video", "audio") else "document"
        media: dict[str, Any] = {"link": attachment.url}
        if isinstance(attachment, StoredAttachment):  # the bridge's file: uploaded, sent by id
            media = {"id": await self.upload_media(chat, attachment)}
        if caption and kind != "audio":
            media["caption"] = caption
        if kind == "document" and attachment.name:
            media["filename"] = attachment.name
        body = {**self._recipient(chat), "type": kind, kind: media}
        return _sent_id(await self._post(chat, body, f"send {kind}"))

    async def upload_media(self, chat: ChatAddress, attachment: StoredAttachment) -> str:
        """Upload a file the bridge holds: ``POST /{phone number id}/media`` (multipart:
        ``messaging_product``, ``type``, ``file``) → its media id (valid 30 days)."""
        if not self._token:
            raise PermanentDelivery("meta_cloud: no access token is set (meta_access_token)")
        mime = attachment.mime or "application/octet-stream"
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mime)
        form.add_field(
            "file", attachment.data, filename=attachment.name or "file", content_type=mime
        )
        result = await self._http.send(
            "POST",
            f"{self._base}/{chat.instance}/media",
            what="Meta upload media",
            headers=self._headers,
            form=form,
            secrets=(self._token,),
        )
        media_id = result.get("id") if isinstance(result, dict) else None
        if not isinstance(media_id, str) or not media_id:
            raise PermanentDelivery("meta_cloud: the media upload answered no id")
        return media_id

    async def send_template(
        self, chat: ChatAddress, template: dict[str, Any], *, callback_data: str | None = None
    ) -> str | None:
        """Send a ``type: "template"`` message (``templates.meta_template`` builds it): the
        only kind Meta accepts outside the 24-hour customer service window.
        ``callback_data`` goes as ``biz_opaque_callback_data``: Meta echoes it in the
        message's status webhooks (a broadcast settles a cut-off send by it)."""
        body = {**self._recipient(chat), "type": "template", "template": template}
        if callback_data:
            body["biz_opaque_callback_data"] = callback_data[:512]
        return _sent_id(await self._post(chat, body, "send template"))

    async def send_interactive(self, chat: ChatAddress, interactive: dict[str, Any]) -> str | None:
        """Send a ``type: "interactive"`` message (reply buttons or a list, built by
        ``interactive.meta_interactive``)."""
        body = {**self._recipient(chat), "type": "interactive", "interactive": interactive}
        return _sent_id(await self._post(chat, body, "send interactive"))

    async def set_typing(self, chat: ChatAddress, on: bool, *, last_inbound_id: str | None) -> None:
        # Meta's indicator hangs on the customer's last message (and marks it read); it ends
        # by itself with the reply or after 25 s, so there is nothing to switch off.
        if not on or not last_inbound_id:
            return
        body = {
            "status": "read",
            "message_id": last_inbound_id,
            "typing_indicator": {"type": "text"},
        }
        await self._post(chat, body, "typing indicator")

    async def mark_read(self, chat: ChatAddress, message_ids: list[str]) -> None:
        for message_id in message_ids:
            await self._post(chat, {"status": "read", "message_id": message_id}, "mark read")

    async def check(self) -> ProviderCheck:
        s = self._settings
        check = ProviderCheck(NAME, ok=False, details={"graph_url": self._base})
        if not s.meta_app_secret:
            check.warnings.append(
                "no Meta app secret is set: webhooks are accepted without a signature"
            )
        if not s.meta_verify_token:
            check.warnings.append(
                "no Meta verify token is set: the webhook verification handshake will fail"
            )
        if not s.meta_phone_number_id:
            check.problems.append("no phone number id is set (meta_phone_number_id)")
        if not self._token:
            check.problems.append("no access token is set (meta_access_token)")
        if check.problems:
            return check
        try:
            info = await self._http.request(
                "GET",
                f"{self._base}/{s.meta_phone_number_id}",
                what="Meta Graph API",
                headers=self._headers,
                secrets=(self._token,),
            )
        except GatewayError as exc:
            return check.gateway_problem(
                exc,
                unreachable=f"cannot reach the Graph API at {self._base}",
                refused="Meta refused the access token: it is wrong, expired or lacks the "
                "whatsapp_business_messaging permission",
                unknown=f"Meta does not know phone number id {s.meta_phone_number_id!r} for "
                f"this token: {exc}",
                other="the Graph API answered an error",
                unknown_statuses=(400, 404),
            )
        if isinstance(info, dict):
            check.details["display_phone_number"] = info.get("display_phone_number")
            check.details["verified_name"] = info.get("verified_name")
        check.ok = True
        return check
