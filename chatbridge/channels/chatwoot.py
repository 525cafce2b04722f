"""The Chatwoot channel: parse its webhooks, call its REST API.

Nothing outside this module and ``chatwoot_api`` knows Chatwoot's JSON. Two halves:

* ``parse_webhook`` (pure, no I/O, here) turns one delivery into a neutral ``InboundMessage``,
  ``OwnerSignal``, ``ConversationEvent`` or ``Ignored``, applying the loop-safety rules of
  the contract (own replies, private notes, templates and ``message_updated`` are dropped;
  the echo of our own reply or private note, carrying our ``source_id``, is its receipt).
* ``ChatwootAdapter`` (in ``chatwoot_api``, re-exported here) turns an ``OutboundAction`` into
  a call to ``/api/v1/accounts/{account}/conversations/{display_id}/…`` and maps HTTP failures
  onto ``RetryableDelivery`` / ``PermanentDelivery``.

A conversation's ``channel_key`` is ``"<account id>:<display id>"``; the display id is what
Chatwoot calls ``conversation.id`` in webhooks and what its API paths use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from chatbridge.channels.base import load_object
from chatbridge.channels.chatwoot_api import CHANNEL, ChatwootAdapter, _is_int, conversation_path
from chatbridge.channels.signatures import DELIVERY_HEADER, find_header, verify_chatwoot
from chatbridge.errors import BadInput
from chatbridge.models import (
    Attachment,
    ContactInfo,
    ConversationEvent,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OwnerSignal,
    ParsedWebhook,
)

__all__ = ["CHANNEL", "ChatwootAdapter", "conversation_path", "parse_delivery", "parse_webhook"]

_STATUS_EVENTS = frozenset(
    {
        "conversation_status_changed",
        "conversation_updated",
        "conversation_opened",
        "conversation_resolved",
    }
)
# What the event name itself says about the status, for payloads that omit ``status``.
_IMPLIED_STATUS = {"conversation_opened": "open", "conversation_resolved": "resolved"}


# --------------------------------------------------------------------------------------
# Webhook parsing
# --------------------------------------------------------------------------------------


def _invalid(message: str) -> NoReturn:
    raise BadInput("invalid_payload", message)


# Chatwoot ids are PostgreSQL bigints; inbox ids live in our 32-bit INTEGER columns.
MAX_ID = 2**63 - 1
MAX_INBOX_ID = 2**31 - 1
# Contact fields are kept, cut to what the store holds: a long name is no reason to refuse
# a customer's message.
_CONTACT_LIMITS = {"name": 300, "email": 300, "phone_number": 40}
MAX_DELIVERY_ID = 200


def _get_int(
    obj: Mapping[str, Any], key: str, path: str, *, required: bool, maximum: int = MAX_ID
) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            _invalid(f"{path} must be an integer")
        return None
    if not _is_int(value):
        _invalid(f"{path} must be an integer")
    number = int(value)
    if not 0 <= number <= maximum:
        _invalid(f"{path} must be between 0 and {maximum}")
    return number


def _get_str(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    *,
    required: bool = False,
    max_length: int | None = None,
) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            _invalid(f"{path} must be a string")
        return None
    if not isinstance(value, str):
        _invalid(f"{path} must be a string")
    if max_length is not None and len(value) > max_length:
        _invalid(f"{path} is longer than {max_length} characters")
    return value


def _contact_field(sender: Mapping[str, Any], key: str, path: str) -> str | None:
    value = _get_str(sender, key, f"{path}.{key}")
    return value[: _CONTACT_LIMITS[key]] if value is not None else None


def _get_obj(
    obj: Mapping[str, Any], key: str, path: str, *, required: bool = False
) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        if required:
            _invalid(f"{path} must be an object")
        return None
    if not isinstance(value, dict):
        _invalid(f"{path} must be an object")
    return value


def _get_bool(obj: Mapping[str, Any], key: str, path: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        _invalid(f"{path} must be a boolean")
    return value


def _account_id(
    payload: Mapping[str, Any], conversation: Mapping[str, Any] | None, default: int | None
) -> int:
    """Account id from ``account.id``, else ``conversation.account.id`` (4.14.2+), else default."""
    account = _get_obj(payload, "account", "account")
    if account is not None:
        value = _get_int(account, "id", "account.id", required=False)
        if value is not None:
            return value
    if conversation is not None:
        nested = _get_obj(conversation, "account", "conversation.account")
        if nested is not None:
            value = _get_int(nested, "id", "conversation.account.id", required=False)
            if value is not None:
                return value
    if default is not None:
        return default
    _invalid("account.id must be an integer (no account in the payload and no default)")


def _contact(sender: Mapping[str, Any] | None, path: str) -> ContactInfo | None:
    """A ``ContactInfo`` from a Chatwoot contact object (``sender`` or ``meta.sender``)."""
    if sender is None:
        return None
    sender_id = _get_int(sender, "id", f"{path}.id", required=False)
    metadata: dict[str, Any] = {}
    identifier = _get_str(sender, "identifier", f"{path}.identifier")
    if identifier is not None:
        metadata["identifier"] = identifier
    custom = _get_obj(sender, "custom_attributes", f"{path}.custom_attributes")
    if custom:
        metadata["custom_attributes"] = custom
    return ContactInfo(
        external_id=None if sender_id is None else str(sender_id),
        name=_contact_field(sender, "name", path),
        email=_contact_field(sender, "email", path),
        phone=_contact_field(sender, "phone_number", path),
        metadata=metadata,
    )


def _attachments(payload: Mapping[str, Any]) -> list[Attachment]:
    raw = payload.get("attachments")
    if raw is None:
        return []
    if not isinstance(raw, list):
        _invalid("attachments must be a list")
    result: list[Attachment] = []
    for index, item in enumerate(raw):
        path = f"attachments[{index}]"
        if not isinstance(item, dict):
            _invalid(f"{path} must be an object")
        url = _get_str(item, "data_url", f"{path}.data_url")
        if url is None:
            # Location and similar attachments carry coordinates, not a file: nothing to link.
            continue
        mime = _get_str(item, "content_type", f"{path}.content_type") or _get_str(
            item, "file_type", f"{path}.file_type"
        )
        result.append(
            Attachment(
                url=url,
                mime=mime,
                size=_get_int(item, "file_size", f"{path}.file_size", required=False),
            )
        )
    return result


class _Conversation:
    """The fields every handled event needs from a conversation object."""

    __slots__ = ("account_id", "display_id", "inbox_id", "raw", "status")

    def __init__(
        self,
        raw: dict[str, Any],
        *,
        path: str,
        payload: Mapping[str, Any],
        default_account_id: int | None,
        inbox_id: int | None = None,
    ) -> None:
        self.raw = raw
        display_id = _get_int(raw, "id", f"{path}.id", required=True)
        assert display_id is not None
        self.display_id = display_id
        if inbox_id is None:
            inbox_id = _get_int(
                raw, "inbox_id", f"{path}.inbox_id", required=True, maximum=MAX_INBOX_ID
            )
        assert inbox_id is not None
        self.inbox_id = inbox_id
        self.status = _get_str(raw, "status", f"{path}.status", max_length=20)
        self.account_id = _account_id(payload, raw, default_account_id)

    @property
    def channel_key(self) -> str:
        return f"{self.account_id}:{self.display_id}"


def _message_inbox_id(payload: Mapping[str, Any], conversation: Mapping[str, Any]) -> int:
    inbox = _get_obj(payload, "inbox", "inbox")
    if inbox is not None:
        value = _get_int(inbox, "id", "inbox.id", required=False, maximum=MAX_INBOX_ID)
        if value is not None:
            return value
    value = _get_int(
        conversation, "inbox_id", "conversation.inbox_id", required=False, maximum=MAX_INBOX_ID
    )
    if value is None:
        _invalid("inbox.id must be an integer (or conversation.inbox_id)")
    return value


def _message_conversation(
    payload: Mapping[str, Any], default_account_id: int | None
) -> _Conversation:
    raw = _get_obj(payload, "conversation", "conversation", required=True)
    assert raw is not None
    return _Conversation(
        raw,
        path="conversation",
        payload=payload,
        default_account_id=default_account_id,
        inbox_id=_message_inbox_id(payload, raw),
    )


def _private_note(
    payload: Mapping[str, Any], message_type: str | None, delivery_id: str | None
) -> ParsedWebhook:
    """A private note: never a customer's message, never a human taking over.

    Our own note (a ``note`` delivery, posted outgoing with ``private: true`` and
    ``source_id`` = its idempotency key) comes back from the bot, or from a user when the
    bridge holds a user token: its echo is the delivery's receipt, with nothing to fall back
    on if the key is not ours. An operator's note (no ``source_id``: the dashboard sets none)
    is dropped, as every private note was before notes were sent.
    """
    # Read leniently: a note is never refused (a 4xx to an agent-bot webhook makes Chatwoot
    # open a pending conversation), it is a receipt or nothing.
    sender = payload.get("sender")
    sender_type = sender.get("type") if isinstance(sender, dict) else None
    source_id = payload.get("source_id")
    if (
        message_type == "outgoing"
        and sender_type in ("agent_bot", "user")
        and isinstance(source_id, str)
        and 0 < len(source_id) <= 100
    ):
        message_id = payload.get("id")
        return DeliveryReceipt(
            channel=CHANNEL,
            idempotency_key=source_id,
            external_message_id=str(message_id) if _is_int(message_id) else None,
            delivery_id=delivery_id,
        )
    return Ignored("private_note", delivery_id=delivery_id)


def _parse_message_created(
    payload: dict[str, Any], delivery_id: str | None, default_account_id: int | None
) -> ParsedWebhook:
    message_type = _get_str(payload, "message_type", "message_type", required=True)
    if _get_bool(payload, "private", "private"):
        return _private_note(payload, message_type, delivery_id)
    if message_type == "template":
        return Ignored("template", delivery_id=delivery_id)
    sender = _get_obj(payload, "sender", "sender")
    if message_type == "outgoing":
        sender_type = None if sender is None else sender.get("type")
        # Our replies carry source_id = the delivery's idempotency key, and Chatwoot echoes
        # every message back, the bot's own included: that echo is the delivery's receipt.
        raw_source = payload.get("source_id")
        # (ours are short; a channel's own ids, e.g. an e-mail Message-ID, may be long)
        source_id = raw_source if isinstance(raw_source, str) and len(raw_source) <= 100 else None
        if sender_type == "agent_bot":
            if source_id:
                message_id = _get_int(payload, "id", "id", required=True)
                return DeliveryReceipt(
                    channel=CHANNEL,
                    idempotency_key=source_id,
                    external_message_id=str(message_id),
                    delivery_id=delivery_id,
                )
            return Ignored("own_reply", delivery_id=delivery_id)
        if sender_type != "user":
            return Ignored("outgoing", delivery_id=delivery_id)
        assert sender is not None
        conversation = _message_conversation(payload, default_account_id)
        message_id = _get_int(payload, "id", "id", required=True)
        signal = OwnerSignal(
            channel=CHANNEL,
            inbox_id=conversation.inbox_id,
            channel_key=conversation.channel_key,
            reason="human_reply",
            owner="human",
            external_status=conversation.status,
            text=_get_str(payload, "content", "content"),
            external_message_id=f"{conversation.account_id}:{message_id}",
            delivery_id=delivery_id,
            author_name=_get_str(sender, "name", "sender.name"),
        )
        if source_id:
            # Posted with a user token, our own reply comes back from a "user": its
            # source_id tells it from a human's (the bridge checks the key is ours).
            return DeliveryReceipt(
                channel=CHANNEL,
                idempotency_key=source_id,
                external_message_id=str(message_id),
                delivery_id=delivery_id,
                otherwise=signal,
            )
        return signal
    if message_type != "incoming":
        return Ignored(f"message_type_not_handled:{message_type}", delivery_id=delivery_id)

    conversation = _message_conversation(payload, default_account_id)
    message_id = _get_int(payload, "id", "id", required=True)
    content_type = _get_str(payload, "content_type", "content_type", max_length=40) or "text"
    created_at = payload.get("created_at")
    if created_at is not None and not isinstance(created_at, str | int | float):
        _invalid("created_at must be a string")
    return InboundMessage(
        channel=CHANNEL,
        inbox_id=conversation.inbox_id,
        channel_key=conversation.channel_key,
        text=_get_str(payload, "content", "content") or "",
        external_message_id=f"{conversation.account_id}:{message_id}",
        delivery_id=delivery_id,
        content_type=content_type,
        attachments=_attachments(payload),
        contact=_contact(sender, "sender"),
        external_status=conversation.status,
        context={
            "channel": _get_str(conversation.raw, "channel", "conversation.channel"),
            "created_at": created_at,
            "external_conversation_id": str(conversation.display_id),
            "additional_attributes": _get_obj(
                conversation.raw, "additional_attributes", "conversation.additional_attributes"
            )
            or {},
        },
        metadata={
            "account_id": conversation.account_id,
            "display_id": conversation.display_id,
            "content_type": content_type,
            "source_id": _get_str(payload, "source_id", "source_id"),
        },
    )


def _status_change(payload: Mapping[str, Any]) -> tuple[bool, str | None, str | None]:
    """Read ``changed_attributes``: (status changed?, previous, current).

    Chatwoot sends a list of one-key objects (``[{"status": {"previous_value": …,
    "current_value": …}}]``); a single object is accepted too.
    """
    raw = payload.get("changed_attributes")
    if raw is None:
        return False, None, None
    if isinstance(raw, dict):
        items: list[Any] = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        _invalid("changed_attributes must be a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            _invalid(f"changed_attributes[{index}] must be an object")
        change = item.get("status")
        if change is None:
            continue
        path = f"changed_attributes[{index}].status"
        if not isinstance(change, dict):
            _invalid(f"{path} must be an object")
        previous = _get_str(change, "previous_value", f"{path}.previous_value", max_length=20)
        current = _get_str(change, "current_value", f"{path}.current_value", max_length=20)
        return True, previous, current
    return False, None, None


def _parse_status_event(
    event: str, payload: dict[str, Any], delivery_id: str | None, default_account_id: int | None
) -> ParsedWebhook:
    changed, previous, current = _status_change(payload)
    if event == "conversation_updated" and not changed:
        return Ignored("no_status_change", delivery_id=delivery_id)
    conversation = _Conversation(
        payload, path="conversation", payload=payload, default_account_id=default_account_id
    )
    status = conversation.status or current or _IMPLIED_STATUS.get(event)
    if status is None:
        _invalid("status must be a string")
    return OwnerSignal(
        channel=CHANNEL,
        inbox_id=conversation.inbox_id,
        channel_key=conversation.channel_key,
        reason="status_changed",
        owner=None,
        external_status=status,
        previous_status=previous,
        delivery_id=delivery_id,
    )


def _parse_conversation_created(
    payload: dict[str, Any], delivery_id: str | None, default_account_id: int | None
) -> ParsedWebhook:
    conversation = _Conversation(
        payload, path="conversation", payload=payload, default_account_id=default_account_id
    )
    meta = _get_obj(payload, "meta", "meta")
    sender = None if meta is None else _get_obj(meta, "sender", "meta.sender")
    return ConversationEvent(
        channel=CHANNEL,
        inbox_id=conversation.inbox_id,
        event="conversation_created",
        channel_key=conversation.channel_key,
        contact=_contact(sender, "meta.sender"),
        external_status=conversation.status,
        data={"status": conversation.status},
        delivery_id=delivery_id,
    )


def _parse_webwidget_triggered(
    payload: dict[str, Any], delivery_id: str | None, default_account_id: int | None
) -> ParsedWebhook:
    inbox = _get_obj(payload, "inbox", "inbox", required=True)
    assert inbox is not None
    inbox_id = _get_int(inbox, "id", "inbox.id", required=True, maximum=MAX_INBOX_ID)
    assert inbox_id is not None
    current = _get_obj(payload, "current_conversation", "current_conversation")
    channel_key: str | None = None
    status: str | None = None
    if current is not None:
        conversation = _Conversation(
            current,
            path="current_conversation",
            payload=payload,
            default_account_id=default_account_id,
            inbox_id=inbox_id,
        )
        channel_key = conversation.channel_key
        status = conversation.status
    event_info = _get_obj(payload, "event_info", "event_info") or {}
    return ConversationEvent(
        channel=CHANNEL,
        inbox_id=inbox_id,
        event="webwidget_triggered",
        channel_key=channel_key,
        contact=_contact(_get_obj(payload, "contact", "contact"), "contact"),
        external_status=status,
        data=event_info,
        delivery_id=delivery_id,
    )


def parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | None,
    default_account_id: int | None = None,
) -> ParsedWebhook:
    """Turn one Chatwoot webhook delivery into a neutral model.

    Args:
        headers: the request headers (any case; starlette ``Headers`` or a dict).
        body: the raw request body.
        secret: the inbox's or bot's webhook secret. When set, the signature is checked before
            anything else; when ``None``, unsigned deliveries (Chatwoot before 4.12) are
            accepted.
        default_account_id: the account id to use when the payload names none (Chatwoot
            before 4.14.2 sends no ``account`` inside conversation events).

    Returns:
        ``InboundMessage`` for a customer's message, ``OwnerSignal`` for a human reply or a
        status change, ``ConversationEvent`` for ``conversation_created`` and
        ``webwidget_triggered``, and ``Ignored`` (with the reason) for everything else.

    Raises:
        BadSignature: a secret is set and the signature is missing, malformed or wrong.
        BadInput: ``invalid_json`` when the body is not a JSON object; ``invalid_payload``
            when a field the mapping needs is missing or of the wrong type.
    """
    if secret is not None:
        verify_chatwoot(secret, body, headers)
    return parse_delivery(
        body,
        delivery_id=find_header(headers, DELIVERY_HEADER),
        default_account_id=default_account_id,
    )


def parse_delivery(
    body: bytes, *, delivery_id: str | None, default_account_id: int | None = None
) -> ParsedWebhook:
    """``parse_webhook`` of a delivery whose signature, if any, is already checked, with its
    ``X-Chatwoot-Delivery`` header already looked up (``None`` when absent).

    Raises:
        BadInput: as ``parse_webhook``.
    """
    payload = load_object(body)
    if delivery_id is not None and len(delivery_id) > MAX_DELIVERY_ID:
        _invalid(f"{DELIVERY_HEADER} header is longer than {MAX_DELIVERY_ID} characters")
    event = payload.get("event")
    if not isinstance(event, str):
        _invalid("event must be a string")

    if event == "message_created":
        return _parse_message_created(payload, delivery_id, default_account_id)
    if event == "message_updated":
        return Ignored("message_updated", delivery_id=delivery_id)
    if event in _STATUS_EVENTS:
        return _parse_status_event(event, payload, delivery_id, default_account_id)
    if event == "conversation_created":
        return _parse_conversation_created(payload, delivery_id, default_account_id)
    if event == "webwidget_triggered":
        return _parse_webwidget_triggered(payload, delivery_id, default_account_id)
    return Ignored(f"event_not_handled:{event}", delivery_id=delivery_id)
