"""Chatwoot's JSON, as the mock Chatwoot sends it in webhooks and returns it from its API.

Plain functions, no I/O, from the mock's state (a ``MockConversation``, its stored messages, the
account) to the shapes of Chatwoot's presenters, named where there is one. Shapes follow Chatwoot's
own webhook and API payloads: a string ``message_type`` and ISO ``created_at`` at the top level of
message events (``message_event``), integer ``message_type`` and Unix ``created_at`` inside
``conversation.messages`` (``push_message``, at most one entry), contact senders without a ``type``
key (``contact_full``), ``meta.sender`` with ``type: "contact"`` (``contact_push``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class MockConversation:
    """One conversation as the mock keeps it; ``messages`` are in REST API shape."""

    display_id: int
    inbox_id: int
    status: str
    contact: dict[str, Any]
    channel: str
    contact_inbox_id: int
    source_id: str
    created_at: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    typing: str = "off"


def iso(ts: float) -> str:
    """Unix seconds as Chatwoot writes times in webhooks: ``2024-05-01T12:00:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int(ts * 1000) % 1000:03d}Z"
    )


def inbox(inbox_id: int) -> dict[str, Any]:
    """An inbox as events name it: id and name."""
    return {"id": inbox_id, "name": f"Inbox {inbox_id}"}


def contact_full(contact: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    """``Contact#webhook_data``: no ``type`` key."""
    return {
        "account": dict(account),
        "additional_attributes": {},
        "avatar": "",
        "custom_attributes": {},
        "email": contact.get("email"),
        "id": contact["id"],
        "identifier": contact.get("identifier"),
        "name": contact.get("name"),
        "phone_number": contact.get("phone_number"),
        "thumbnail": "",
        "blocked": False,
    }


def contact_push(contact: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    """``Contact#push_event_data`` as in ``conversation.meta.sender``: ``type: contact``."""
    data = contact_full(contact, account)
    del data["account"], data["avatar"]
    data["type"] = "contact"
    return data


def conversation_data(conv: MockConversation, account: dict[str, Any]) -> dict[str, Any]:
    """``Conversations::EventDataPresenter#webhook_data``."""
    now = int(time.time())
    latest = [m for m in conv.messages if not m["private"] and m["message_type"] != 2][-1:]
    return {
        "additional_attributes": {},
        "can_reply": True,
        "channel": conv.channel,
        "contact_inbox": {
            "id": conv.contact_inbox_id,
            "contact_id": conv.contact["id"],
            "inbox_id": conv.inbox_id,
            "source_id": conv.source_id,
            "hmac_verified": False,
            "pubsub_token": uuid.uuid5(uuid.NAMESPACE_URL, conv.source_id).hex,
        },
        "id": conv.display_id,
        "inbox_id": conv.inbox_id,
        "messages": [push_message(m) for m in latest],
        "labels": [],
        "meta": {
            "sender": contact_push(conv.contact, account),
            "assignee": None,
            "assignee_type": None,
            "team": None,
            "hmac_verified": False,
        },
        "status": conv.status,
        "custom_attributes": {},
        "snoozed_until": None,
        "unread_count": sum(1 for m in conv.messages if m["message_type"] == 0),
        "first_reply_created_at": None,
        "priority": None,
        "waiting_since": conv.created_at,
        "agent_last_seen_at": 0,
        "contact_last_seen_at": 0,
        "last_activity_at": now,
        "timestamp": now,
        "created_at": conv.created_at,
        "updated_at": float(now),
        "account": dict(account),
    }


def api_conversation(conv: MockConversation, account: dict[str, Any]) -> dict[str, Any]:
    """``GET …/conversations/{id}`` (the ``_conversation`` partial; a bot token may call it).

    ``messages`` holds only the conversation's latest message, whatever its type or privacy;
    ``last_non_activity_message`` the latest that is not an activity. Both as
    ``push_event_data`` (integer type, Unix time, ``source_id``; ``echo_id`` is not stored).
    """
    data = conversation_data(conv, account)
    del data["account"], data["contact_inbox"], data["channel"], data["updated_at"]
    non_activity = [m for m in conv.messages if m["message_type"] != 2]
    data["messages"] = [push_message(m) for m in conv.messages[-1:]]
    data["last_non_activity_message"] = push_message(non_activity[-1]) if non_activity else None
    data["account_id"] = account["id"]
    data["uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, conv.source_id))
    data["muted"] = False
    return data


def push_message(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as it appears in ``conversation.messages``: integer type."""
    return {k: v for k, v in message.items() if k != "echo_id"}


def attachments(
    message_id: int, raw: list[dict[str, Any]], account_id: int
) -> list[dict[str, Any]]:
    """Message ``message_id``'s attachments in Chatwoot's shape, defaults for what ``raw`` omits."""
    result = []
    for index, item in enumerate(raw):
        url = item.get("data_url", f"https://files.example.com/{message_id}/{index}.png")
        result.append(
            {
                "id": message_id * 100 + index,
                "message_id": message_id,
                "file_type": item.get("file_type", "image"),
                "account_id": account_id,
                "extension": item.get("extension"),
                "content_type": item.get("content_type", "image/png"),
                "data_url": url,
                "thumb_url": item.get("thumb_url", url),
                "file_size": item.get("file_size", 1024),
            }
        )
    return result


def message_event(
    conv: MockConversation,
    message: dict[str, Any],
    account: dict[str, Any],
    *,
    message_type: str,
    sender: dict[str, Any] | None,
) -> dict[str, Any]:
    """``Message#webhook_data``: string type, ISO ``created_at``."""
    payload: dict[str, Any] = {
        "account": dict(account),
        "additional_attributes": {},
        "content_attributes": message["content_attributes"],
        "content_type": message["content_type"],
        "content": message["content"],
        "conversation": conversation_data(conv, account),
        "created_at": iso(message["created_at"]),
        "id": message["id"],
        "inbox": inbox(conv.inbox_id),
        "message_type": message_type,
        "private": message["private"],
        "sender": sender,
        "source_id": message["source_id"],
    }
    if message.get("attachments"):
        payload["attachments"] = message["attachments"]
    return payload
