"""What every WhatsApp parser shares: reading JSON, filtering chats, building neutral models.

Each provider module reads its own payload shape and calls ``inbound_message`` /
``human_takeover`` / ``sent_message`` here, so that every provider produces the same
conversation keys, contact identities and context, whatever its JSON looked like.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from chatbridge.channels.whatsapp.ids import (
    ChatAddress,
    e164,
    is_bsuid,
    jid_kind,
    phone_digits,
)
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import BadInput
from chatbridge.models import (
    Attachment,
    ContactInfo,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OwnerSignal,
)

CHANNEL = "whatsapp"
MAX_ID = 200  # longest provider message id the store keeps (WAHA ids embed the chat id)


def invalid(message: str) -> NoReturn:
    raise BadInput("invalid_payload", message)


def get_obj(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` if it is an object, else ``{}`` (gateways omit or null what is empty)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def get_str(obj: Mapping[str, Any], key: str) -> str | None:
    """``obj[key]`` if it is a non-empty string (numbers are read as their text)."""
    value = obj.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value else None


def require_str(obj: Mapping[str, Any], key: str, path: str, *, max_length: int = MAX_ID) -> str:
    value = get_str(obj, key)
    if value is None:
        invalid(f"{path} must be a string")
    if len(value) > max_length:
        invalid(f"{path} is longer than {max_length} characters")
    return value


def chat_address(provider: str, instance: str, chat_id: str) -> ChatAddress:
    """The conversation's address; refuses what would not fit the conversation key.

    Raises:
        BadInput: an instance with ``:`` or a key longer than the store's 200 characters.
    """
    if ":" in instance or not instance:
        invalid(f"instance/session name {instance[:100]!r} must be non-empty and without ':'")
    address = ChatAddress(provider, instance, chat_id)
    if len(address.channel_key) > 200:
        invalid("instance and chat id are too long for a conversation key")
    return address


def inbox_for(settings: CommsSettings, instance: str) -> int:
    """The bridge inbox of a provider instance: ``instance_inboxes`` or the default."""
    return settings.instance_inboxes.get(instance, settings.default_inbox_id)


def chat_filter(settings: CommsSettings, chat_id: str) -> Ignored | None:
    """``Ignored`` for groups, broadcasts and channels unless the settings let them in."""
    kind = jid_kind(chat_id)
    if kind == "group" and not settings.groups_enabled:
        return Ignored("group_chat")
    if kind in ("broadcast", "newsletter") and not settings.status_broadcasts_enabled:
        return Ignored("status_broadcast" if kind == "broadcast" else "newsletter")
    return None


def contact_info(
    settings: CommsSettings,
    *,
    provider: str,
    name: str | None,
    jid: str | None = None,
    lid: str | None = None,
    bsuid: str | None = None,
    phone: str | None = None,
) -> ContactInfo:
    """A contact with every address it is known by (``metadata["identities"]``).

    ``external_id`` is the E.164 phone when one is known (the same person on every
    provider), else the LID or the BSUID.
    """
    number = e164(phone or (phone_digits(jid) if jid else None), settings.default_country)
    identities: list[dict[str, str]] = []
    if number:
        identities.append({"kind": "phone", "value": number})
    if jid and jid_kind(jid) == "user":
        identities.append({"kind": "jid", "value": jid})
    if lid:
        identities.append({"kind": "lid", "value": lid})
    if bsuid and is_bsuid(bsuid):
        identities.append({"kind": "bsuid", "value": bsuid})
    external_id = number or lid or bsuid or jid
    return ContactInfo(
        external_id=external_id,
        name=name[:300] if name else None,
        phone=number,
        metadata={"provider": provider, "identities": identities},
    )


def inbound_message(
    settings: CommsSettings,
    address: ChatAddress,
    *,
    message_id: str,
    text: str,
    contact: ContactInfo,
    content_type: str = "text",
    attachments: list[Attachment] | None = None,
    timestamp: Any = None,
    participant: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> InboundMessage:
    """A customer's message on ``address``; the provider's id is the dedupe key."""
    context: dict[str, Any] = {
        "provider": address.provider,
        "instance": address.instance,
        "chat_id": address.chat_id,
        "phone": contact.phone,
        "is_group": jid_kind(address.chat_id) == "group",
        "timestamp": timestamp,
    }
    if participant:
        context["participant"] = participant
    identities = contact.metadata.get("identities", [])
    for identity in identities:
        context.setdefault(identity["kind"], identity["value"])
    if extra:
        context.update(extra)
    metadata = {
        "provider": address.provider,
        "instance": address.instance,
        "chat_id": address.chat_id,
        "phone": contact.phone,
    }
    if extra and isinstance(extra.get("interactive"), dict):
        metadata["interactive"] = extra["interactive"]  # the option the customer tapped
    return InboundMessage(
        channel=CHANNEL,
        inbox_id=inbox_for(settings, address.instance),
        channel_key=address.channel_key,
        text=text,
        external_message_id=message_id,
        content_type=content_type,
        attachments=attachments or [],
        contact=contact,
        context=context,
        metadata=metadata,
    )


def human_takeover(
    settings: CommsSettings,
    address: ChatAddress,
    *,
    message_id: str,
    text: str | None,
    author_name: str | None = None,
) -> OwnerSignal:
    """A message typed on the business phone: a human took the conversation over."""
    return OwnerSignal(
        channel=CHANNEL,
        inbox_id=inbox_for(settings, address.instance),
        channel_key=address.channel_key,
        reason="human_reply",
        owner="human",
        text=text if text is not None else "",
        external_message_id=message_id,
        author_name=author_name,
    )


def sent_message(
    address: ChatAddress,
    *,
    message_id: str,
    text: str | None,
    otherwise: OwnerSignal | None,
) -> DeliveryReceipt:
    """A message the business number sent (``fromMe``), which may be our own send coming back.

    WhatsApp cannot carry our idempotency key, so the bridge matches it by conversation (and
    by ``text`` where there is one) to a send of ours that was cut off by a crash: then it is
    that delivery's receipt and nothing is sent twice. ``otherwise`` is what it means if no
    send of ours takes it: ``None`` when the gateway says it came through its API (surely
    ours: ignored), the human takeover when it may have been typed on the phone.
    """
    return DeliveryReceipt(
        channel=CHANNEL,
        idempotency_key=None,
        external_message_id=message_id,
        channel_key=address.channel_key,
        text=text or None,
        otherwise=otherwise,
    )
