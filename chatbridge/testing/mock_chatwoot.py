"""A Chatwoot imitation: sends realistic webhooks and answers the REST calls the bridge makes.

Used by the tests, by ``chatbridge demo`` and by ``chatbridge mock-chatwoot``. Payload shapes
follow ``contracts/chatwoot.md``: a string ``message_type`` and ISO ``created_at`` at the top
level of message events, integer ``message_type`` and Unix ``created_at`` inside
``conversation.messages`` (at most one entry), contact senders without a ``type`` key,
``meta.sender`` with ``type: "contact"``, ``X-Chatwoot-Delivery`` and, when a secret is set,
``X-Chatwoot-Timestamp``/``X-Chatwoot-Signature``.

Endpoints:

* ``POST /mock/webhook/register``, ``GET /mock/webhook/history``,
  ``POST /mock/webhook/trigger/{event}`` — drive webhooks at the bridge. Passing an earlier
  ``delivery_id`` re-sends that delivery's payload unchanged (a duplicate delivery).
* ``/api/v1/accounts/{account}/conversations/{id}`` (``GET``), ``…/messages`` (``GET``,
  ``POST``), ``…/toggle_status``, ``…/toggle_typing_status`` — the REST API.
* ``GET /mock/api/received_messages``, ``GET /mock/api/actions``, ``GET /mock/conversations``,
  ``POST /mock/reset``, ``GET|POST /mock/faults`` — inspection and fault injection.

All state lives on one ``MockChatwoot`` (``app.state.mock``). Handlers change it only in
synchronous sections (no ``await`` between read and write), so concurrent requests on the
event loop never see it half-updated.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from chatbridge.channels.signatures import DELIVERY_HEADER, sign_chatwoot

__all__ = [
    "SIMULATED_EVENTS",
    "Faults",
    "MockChatwoot",
    "TriggerRequest",
    "create_mock_chatwoot",
    "run_mock_chatwoot",
]

ConversationStatus = Literal["open", "resolved", "pending", "snoozed"]
MESSAGE_TYPE_CODES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
_STATUSES = ("open", "resolved", "pending", "snoozed")
_SENDER_TYPES = {"contact": "Contact", "user": "User", "agent_bot": "AgentBot"}
SIMULATED_EVENTS = frozenset(
    {
        "message_created",
        "message_updated",
        "conversation_created",
        "conversation_status_changed",
        "conversation_updated",
        "conversation_opened",
        "conversation_resolved",
        "webwidget_triggered",
    }
)


class Faults(BaseModel):
    """Faults injected into the REST API (never into ``/mock/*``).

    ``fail_next`` status codes are used first, one per call; then each call fails with 429 at
    ``rate_429`` and with 500 at ``rate_500``. ``delay_ms`` delays a ``delay_rate`` share of
    calls. A failed call changes nothing.
    """

    rate_429: float = Field(default=0.0, ge=0.0, le=1.0)
    rate_500: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_ms: int = Field(default=0, ge=0, le=600_000)
    delay_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    fail_next: list[int] = Field(default_factory=list)
    seed: int | None = None


class TriggerRequest(BaseModel):
    """What to simulate; every field has a default."""

    conversation_id: int = Field(default=1, ge=1, description="display id")
    inbox_id: int | None = Field(default=None, ge=0, description="default: current or 1")
    content: str | None = None
    message_type: Literal["incoming", "outgoing", "template"] = "incoming"
    private: bool = False
    sender: dict[str, Any] | None = Field(default=None, description="{id, name, email, type?}")
    sender_type: Literal["contact", "user", "agent_bot"] | None = None
    status: ConversationStatus | None = Field(default=None, description="default: current")
    message_id: int | None = Field(default=None, ge=1)
    delivery_id: str | None = Field(default=None, description="reuse one to send a duplicate")
    query: dict[str, str | int | float | bool] | None = None
    content_type: str = "text"
    content_attributes: dict[str, Any] = Field(default_factory=dict)
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    channel: str | None = Field(default=None, description='default "Channel::WebWidget"')
    event_info: dict[str, Any] | None = None
    timeout: float | None = Field(
        default=None, gt=0, le=600, description="seconds to wait for the target (default 5)"
    )


class WebhookRegistration(BaseModel):
    url: str
    secret: str | None = None


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


class _Refusal(Exception):
    """Raised by the API gate to answer with ``response`` instead of running the handler."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int(ts * 1000) % 1000:03d}Z"
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class MockChatwoot:
    """The state and behaviour behind the mock's endpoints; tests may call it directly."""

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        secret: str | None = None,
        api_token: str | None = None,
        account_id: int = 1,
        emit_status_webhooks: bool = True,
        emit_message_webhooks: bool = False,
        allow_list_messages: bool = True,
        faults: Faults | None = None,
        webhook_timeout: float = 5.0,
    ) -> None:
        self.webhook_url = webhook_url
        self.secret = secret
        self.api_token = api_token
        self.account_id = account_id
        self.account = {"id": account_id, "name": "Acme Inc"}
        self.emit_status_webhooks = emit_status_webhooks
        self.emit_message_webhooks = emit_message_webhooks
        self.allow_list_messages = allow_list_messages
        self.webhook_timeout = webhook_timeout
        self._initial_faults = faults or Faults()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reset()

    # --- state ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget conversations, messages, actions and history; restore the initial faults.

        The registered webhook URL and secret are kept.
        """
        self.conversations: dict[int, MockConversation] = {}
        self.received_messages: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.webhook_history: list[dict[str, Any]] = []
        self._sent: dict[str, tuple[str, dict[str, Any], int | None, dict[str, Any] | None]] = {}
        self._next_message_id = 1
        self._next_contact_id = 1
        self.set_faults(self._initial_faults)

    def set_faults(self, faults: Faults) -> None:
        """Replace the injected faults (and reseed the random generator)."""
        self.faults = faults.model_copy(deep=True)
        self._rng = random.Random(faults.seed)

    def _new_message_id(self) -> int:
        value = self._next_message_id
        self._next_message_id += 1
        return value

    def _new_contact(self) -> dict[str, Any]:
        contact_id = self._next_contact_id
        self._next_contact_id += 1
        return {
            "id": contact_id,
            "name": f"Customer {contact_id}",
            "email": None,
            "phone_number": None,
            "identifier": None,
        }

    def conversation(
        self, display_id: int, *, inbox_id: int | None = None, channel: str | None = None
    ) -> MockConversation:
        """Return conversation ``display_id``, creating it (pending, new contact) if needed."""
        existing = self.conversations.get(display_id)
        if existing is not None:
            if inbox_id is not None:
                existing.inbox_id = inbox_id
            return existing
        contact = self._new_contact()
        created = MockConversation(
            display_id=display_id,
            inbox_id=1 if inbox_id is None else inbox_id,
            status="pending",
            contact=contact,
            channel=channel or "Channel::WebWidget",
            contact_inbox_id=contact["id"],
            source_id=str(uuid.uuid4()),
            created_at=int(time.time()),
        )
        self.conversations[display_id] = created
        return created

    # --- payload shapes -----------------------------------------------------------------

    def _inbox(self, inbox_id: int) -> dict[str, Any]:
        return {"id": inbox_id, "name": f"Inbox {inbox_id}"}

    def _contact_full(self, contact: dict[str, Any]) -> dict[str, Any]:
        """``Contact#webhook_data``: no ``type`` key."""
        return {
            "account": dict(self.account),
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

    def _contact_push(self, contact: dict[str, Any]) -> dict[str, Any]:
        """``Contact#push_event_data`` as in ``conversation.meta.sender``: ``type: contact``."""
        data = self._contact_full(contact)
        del data["account"], data["avatar"]
        data["type"] = "contact"
        return data

    def _conversation_data(self, conv: MockConversation) -> dict[str, Any]:
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
            "messages": [self._push_message(m) for m in latest],
            "labels": [],
            "meta": {
                "sender": self._contact_push(conv.contact),
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
            "account": dict(self.account),
        }

    @staticmethod
    def _push_message(message: dict[str, Any]) -> dict[str, Any]:
        """A stored message as it appears in ``conversation.messages``: integer type."""
        return {k: v for k, v in message.items() if k != "echo_id"}

    def _sender(self, conv: MockConversation, spec: TriggerRequest) -> dict[str, Any] | None:
        given = dict(spec.sender or {})
        kind = spec.sender_type or given.pop("type", None)
        if kind is None:
            kind = {"incoming": "contact", "outgoing": "user", "template": None}[spec.message_type]
        if kind is None:
            return None
        if kind == "contact":
            for key in ("id", "name", "email", "phone_number", "identifier"):
                if key in given:
                    conv.contact[key] = given[key]
            return self._contact_full(conv.contact)
        if kind == "user":
            return {
                "id": given.get("id", 1),
                "name": given.get("name", "Agent Smith"),
                "email": given.get("email", "agent@example.com"),
                "type": "user",
            }
        return {"id": given.get("id", 1), "name": given.get("name", "Bridge Bot"), "type": kind}

    def _attachments(self, message_id: int, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result = []
        for index, item in enumerate(raw):
            url = item.get("data_url", f"https://files.example.com/{message_id}/{index}.png")
            result.append(
                {
                    "id": message_id * 100 + index,
                    "message_id": message_id,
                    "file_type": item.get("file_type", "image"),
                    "account_id": self.account_id,
                    "extension": item.get("extension"),
                    "content_type": item.get("content_type", "image/png"),
                    "data_url": url,
                    "thumb_url": item.get("thumb_url", url),
                    "file_size": item.get("file_size", 1024),
                }
            )
        return result

    def _store_message(
        self,
        conv: MockConversation,
        *,
        message_id: int,
        content: str | None,
        message_type: str,
        private: bool,
        sender: dict[str, Any] | None,
        content_type: str = "text",
        content_attributes: dict[str, Any] | None = None,
        echo_id: str | None = None,
        source_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Record a message in REST API shape (integer type, Unix ``created_at``)."""
        ts = time.time()
        sender_kind = "contact" if sender is not None and "type" not in sender else None
        if sender is not None and sender_kind is None:
            sender_kind = sender["type"]
        message: dict[str, Any] = {
            "id": message_id,
            "content": content,
            "account_id": self.account_id,
            "inbox_id": conv.inbox_id,
            "conversation_id": conv.display_id,
            "message_type": MESSAGE_TYPE_CODES[message_type],
            "created_at": int(ts),
            "updated_at": _iso(ts),
            "private": private,
            "status": "sent",
            "source_id": source_id,
            "content_type": content_type,
            "content_attributes": content_attributes or {},
            "sender_type": _SENDER_TYPES.get(sender_kind or ""),
            "sender_id": None if sender is None else sender.get("id"),
            "external_source_ids": {},
            "additional_attributes": {},
            "echo_id": echo_id,
        }
        if attachments:
            message["attachments"] = attachments
        conv.messages = [m for m in conv.messages if m["id"] != message_id] + [message]
        conv.messages.sort(key=lambda m: m["id"])
        return message

    def _message_event(
        self,
        conv: MockConversation,
        message: dict[str, Any],
        *,
        message_type: str,
        sender: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """``Message#webhook_data``: string type, ISO ``created_at``."""
        payload: dict[str, Any] = {
            "account": dict(self.account),
            "additional_attributes": {},
            "content_attributes": message["content_attributes"],
            "content_type": message["content_type"],
            "content": message["content"],
            "conversation": self._conversation_data(conv),
            "created_at": _iso(message["created_at"]),
            "id": message["id"],
            "inbox": self._inbox(conv.inbox_id),
            "message_type": message_type,
            "private": message["private"],
            "sender": sender,
            "source_id": message["source_id"],
        }
        if message.get("attachments"):
            payload["attachments"] = message["attachments"]
        return payload

    def build_event(self, event: str, spec: TriggerRequest) -> tuple[dict[str, Any], int | None]:
        """Apply ``spec`` to the state and return (payload, message id) for ``event``.

        Raises:
            KeyError: ``event`` is not one the mock can simulate.
        """
        if event in ("message_created", "message_updated"):
            conv = self.conversation(
                spec.conversation_id, inbox_id=spec.inbox_id, channel=spec.channel
            )
            if spec.status is not None:
                conv.status = spec.status
            sender = self._sender(conv, spec)
            existing = next(
                (m for m in conv.messages if spec.message_id and m["id"] == spec.message_id), None
            )
            message_id = spec.message_id or self._new_message_id()
            if spec.message_id is not None and spec.message_id >= self._next_message_id:
                self._next_message_id = spec.message_id + 1
            content = spec.content
            if content is None:
                content = existing["content"] if existing else f"Hello from message {message_id}"
            message = self._store_message(
                conv,
                message_id=message_id,
                content=content,
                message_type=spec.message_type,
                private=spec.private,
                sender=sender,
                content_type=spec.content_type,
                content_attributes=spec.content_attributes,
                attachments=self._attachments(message_id, spec.attachments),
            )
            payload = self._message_event(
                conv, message, message_type=spec.message_type, sender=sender
            )
            return {**payload, "event": event}, message_id
        if event == "webwidget_triggered":
            current = None
            widget_conv: MockConversation | None = None
            if "conversation_id" in spec.model_fields_set:
                widget_conv = self.conversation(
                    spec.conversation_id, inbox_id=spec.inbox_id, channel=spec.channel
                )
                current = self._conversation_data(widget_conv)
            contact = widget_conv.contact if widget_conv else self._new_contact()
            inbox_id = (
                spec.inbox_id
                if spec.inbox_id is not None
                else (widget_conv.inbox_id if widget_conv else 1)
            )
            payload = {
                "id": widget_conv.contact_inbox_id if widget_conv else 0,
                "contact": self._contact_full(contact),
                "inbox": self._inbox(inbox_id),
                "account": dict(self.account),
                "current_conversation": current,
                "source_id": widget_conv.source_id if widget_conv else str(uuid.uuid4()),
                "event": event,
                "event_info": spec.event_info
                or {
                    "widget_language": "en",
                    "browser_language": "en",
                    "browser": {"browser_name": "Firefox", "platform_name": "Linux"},
                },
            }
            return payload, None
        if event in (
            "conversation_created",
            "conversation_status_changed",
            "conversation_updated",
            "conversation_opened",
            "conversation_resolved",
        ):
            conv = self.conversation(
                spec.conversation_id, inbox_id=spec.inbox_id, channel=spec.channel
            )
            previous = conv.status
            implied = {"conversation_opened": "open", "conversation_resolved": "resolved"}
            if event in ("conversation_status_changed", "conversation_updated"):
                # The common case to simulate: a human opens a pending conversation.
                implied[event] = "open"
            new_status = spec.status or implied.get(event) or conv.status
            conv.status = new_status
            payload = {**self._conversation_data(conv), "event": event}
            if event in ("conversation_status_changed", "conversation_updated"):
                payload["changed_attributes"] = [
                    {"status": {"previous_value": previous, "current_value": new_status}}
                ]
            return payload, None
        raise KeyError(event)

    # --- webhooks -----------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.webhook_timeout)
        return self._client

    async def trigger(self, event: str, spec: TriggerRequest | None = None) -> dict[str, Any]:
        """Build ``event`` from ``spec``, POST it to the registered URL, record and return it.

        Reusing an earlier ``delivery_id`` re-sends that delivery's payload unchanged.

        Raises:
            KeyError: ``event`` is not in ``SIMULATED_EVENTS``.
            RuntimeError: no webhook URL is registered.
        """
        spec = spec or TriggerRequest()
        if event not in SIMULATED_EVENTS:
            raise KeyError(event)
        if self.webhook_url is None:
            raise RuntimeError("no webhook registered; POST /mock/webhook/register first")
        delivery_id = spec.delivery_id or str(uuid.uuid4())
        previous = self._sent.get(delivery_id)
        if previous is not None:
            event, payload, message_id, query = previous
        else:
            payload, message_id = self.build_event(event, spec)
            query = dict(spec.query) if spec.query else None
            self._sent[delivery_id] = (event, payload, message_id, query)
        return await self._deliver(
            event, payload, delivery_id, query, message_id, timeout=spec.timeout
        )

    async def _deliver(
        self,
        event: str,
        payload: dict[str, Any],
        delivery_id: str,
        query: dict[str, Any] | None,
        message_id: int | None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        assert self.webhook_url is not None
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            DELIVERY_HEADER: delivery_id,
            "User-Agent": "chatbridge-mock-chatwoot",
        }
        if self.secret:
            headers.update(sign_chatwoot(self.secret, body, int(time.time())))
        url = httpx.URL(self.webhook_url)
        if query:
            url = url.copy_merge_params(
                {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
            )
        record: dict[str, Any] = {
            "event": event,
            "delivery_id": delivery_id,
            "message_id": message_id,
            "url": str(url),
            "payload": payload,
            "status_code": None,
            "response": None,
            "error": None,
            "sent_at": time.time(),
        }
        try:
            response = await self._http().post(
                url, content=body, headers=headers, timeout=timeout or self.webhook_timeout
            )
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        else:
            record["status_code"] = response.status_code
            try:
                record["response"] = response.json()
            except ValueError:
                record["response"] = response.text
        self.webhook_history.append(record)
        return {
            "delivery_id": delivery_id,
            "message_id": message_id,
            "status_code": record["status_code"],
            "response": record["response"],
            "error": record["error"],
        }

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every background webhook (e.g. after ``toggle_status``) was sent."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish background webhooks and close the HTTP client."""
        await self.drain()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- REST API -------------------------------------------------------------------------

    def _fault(self) -> tuple[int | None, float]:
        """Decide (synchronously) this call's injected failure and delay."""
        faults = self.faults
        status: int | None = None
        if faults.fail_next:
            status = faults.fail_next.pop(0)
        else:
            draw = self._rng.random()
            if draw < faults.rate_429:
                status = 429
            elif draw < faults.rate_429 + faults.rate_500:
                status = 500
        delay = 0.0
        if faults.delay_ms and self._rng.random() < faults.delay_rate:
            delay = faults.delay_ms / 1000
        return status, delay

    def check_token(self, given: str | None) -> bool:
        if self.api_token is None:
            return True
        if given is None:
            return False
        return hmac.compare_digest(given.encode(), self.api_token.encode())

    def record_action(self, kind: str, conversation_id: int, data: dict[str, Any]) -> None:
        self.actions.append(
            {"kind": kind, "conversation_id": conversation_id, "data": data, "at": time.time()}
        )

    def toggle_status(self, conv: MockConversation, status: str | None) -> dict[str, Any]:
        previous = conv.status
        if status is None:
            status = "resolved" if previous == "open" else "open"
        conv.status = status
        self.record_action("toggle_status", conv.display_id, {"status": status})
        if self.emit_status_webhooks and self.webhook_url and previous != status:
            payload = {
                **self._conversation_data(conv),
                "event": "conversation_status_changed",
                "changed_attributes": [
                    {"status": {"previous_value": previous, "current_value": status}}
                ],
            }
            delivery_id = str(uuid.uuid4())
            self._sent[delivery_id] = ("conversation_status_changed", payload, None, None)
            self._spawn(
                self._deliver("conversation_status_changed", payload, delivery_id, None, None)
            )
        return {
            "payload": {
                "success": True,
                "conversation_id": conv.display_id,
                "current_status": status,
            }
        }

    def post_message(self, conv: MockConversation, body: dict[str, Any]) -> dict[str, Any]:
        """Record a message posted through the API (a bot reply) and return its JSON."""
        attributes = body.get("content_attributes") or {}
        if isinstance(attributes, str):
            try:
                attributes = json.loads(attributes)
            except ValueError:
                attributes = {}
        message_type = body.get("message_type") or "outgoing"
        sender = {"id": 1, "name": "Bridge Bot", "type": "agent_bot"}
        message = self._store_message(
            conv,
            message_id=self._new_message_id(),
            content=body.get("content"),
            message_type=message_type,
            private=bool(body.get("private", False)),
            sender=None if message_type == "incoming" else sender,
            content_type=body.get("content_type") or "text",
            content_attributes=attributes if isinstance(attributes, dict) else {},
            echo_id=body.get("echo_id"),
            source_id=body.get("source_id"),
        )
        record = {
            "conversation_id": conv.display_id,
            "content": message["content"],
            "echo_id": message["echo_id"],
            "id": message["id"],
            "created_at": message["created_at"],
            "private": message["private"],
            "content_type": message["content_type"],
            "content_attributes": message["content_attributes"],
        }
        self.received_messages.append(record)
        self.record_action("message", conv.display_id, dict(body))
        if self.emit_message_webhooks and self.webhook_url:
            payload = {
                **self._message_event(conv, message, message_type=message_type, sender=sender),
                "event": "message_created",
            }
            delivery_id = str(uuid.uuid4())
            self._sent[delivery_id] = ("message_created", payload, message["id"], None)
            self._spawn(self._deliver("message_created", payload, delivery_id, None, message["id"]))
        return {**message, "sender": sender}


# --------------------------------------------------------------------------------------
# HTTP app
# --------------------------------------------------------------------------------------


def _mock(request: Request) -> MockChatwoot:
    mock: MockChatwoot = request.app.state.mock
    return mock


async def _api_gate(request: Request, account_id: int) -> None:
    """Faults first (Chatwoot's rate limiter runs before auth), then token, then account."""
    mock = _mock(request)
    status, delay = mock._fault()
    if delay:
        await asyncio.sleep(delay)
    if status == 429:
        raise _Refusal(PlainTextResponse("Retry later\n", status_code=429))
    if status == 422:
        raise _Refusal(_error(422, "Too many messages"))
    if status is not None:
        raise _Refusal(_error(status, "injected fault" if status >= 500 else "Request refused"))
    if not mock.check_token(request.headers.get("api_access_token")):
        raise _Refusal(_error(401, "Invalid Access Token"))
    if account_id != mock.account_id:
        raise _Refusal(_error(404, "Resource could not be found"))


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _Refusal(_error(400, "body must be JSON")) from exc
    if not isinstance(body, dict):
        raise _Refusal(_error(400, "body must be a JSON object"))
    return body


def _conversation_or_404(mock: MockChatwoot, display_id: int) -> MockConversation:
    conv = mock.conversations.get(display_id)
    if conv is None:
        raise _Refusal(_error(404, "Resource could not be found"))
    return conv


def _api_router() -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/accounts/{account_id}/conversations/{conversation_id}",
        dependencies=[Depends(_api_gate)],
        tags=["chatwoot api"],
    )

    @router.get("")
    async def get_conversation(request: Request, conversation_id: int) -> dict[str, Any]:
        mock = _mock(request)
        return mock._conversation_data(_conversation_or_404(mock, conversation_id))

    @router.post("/messages")
    async def create_message(request: Request, conversation_id: int) -> dict[str, Any]:
        mock = _mock(request)
        body = await _json_body(request)
        conv = _conversation_or_404(mock, conversation_id)
        if body.get("message_type", "outgoing") not in ("outgoing", "incoming", "template"):
            raise _Refusal(_error(422, "message_type is not valid"))
        return mock.post_message(conv, body)

    @router.get("/messages")
    async def list_messages(
        request: Request, conversation_id: int, before: int | None = None, after: int | None = None
    ) -> dict[str, Any]:
        mock = _mock(request)
        if not mock.allow_list_messages:
            raise _Refusal(_error(401, "You are not authorized to do this action"))
        conv = _conversation_or_404(mock, conversation_id)
        messages = conv.messages
        if after is not None:
            selected = [m for m in messages if m["id"] > after][:100]
        else:
            selected = [m for m in messages if before is None or m["id"] < before][-20:]
        return {"meta": {}, "payload": [dict(m) for m in selected]}

    @router.post("/toggle_status")
    async def toggle_status(request: Request, conversation_id: int) -> dict[str, Any]:
        mock = _mock(request)
        body = await _json_body(request)
        conv = _conversation_or_404(mock, conversation_id)
        status = body.get("status")
        if status is not None and status not in _STATUSES:
            raise _Refusal(_error(422, f"'{status}' is not a valid status"))
        return mock.toggle_status(conv, status)

    @router.post("/toggle_typing_status")
    async def toggle_typing(request: Request, conversation_id: int) -> Response:
        mock = _mock(request)
        body = await _json_body(request)
        conv = _conversation_or_404(mock, conversation_id)
        state = body.get("typing_status")
        if state not in ("on", "off"):
            raise _Refusal(_error(422, "typing_status must be on or off"))
        conv.typing = state
        mock.record_action(f"typing_{state}", conv.display_id, dict(body))
        return Response(status_code=200)

    return router


def _mock_router() -> APIRouter:
    router = APIRouter(prefix="/mock", tags=["mock controls"])

    @router.post("/webhook/register")
    async def register(request: Request, registration: WebhookRegistration) -> dict[str, Any]:
        mock = _mock(request)
        mock.webhook_url = registration.url
        if "secret" in registration.model_fields_set:
            mock.secret = registration.secret
        return {"url": mock.webhook_url, "signed": bool(mock.secret)}

    @router.get("/webhook/history")
    async def history(request: Request) -> list[dict[str, Any]]:
        return _mock(request).webhook_history

    @router.post("/webhook/trigger/{event}", response_model=None)
    async def trigger(
        request: Request, event: str, spec: TriggerRequest | None = None
    ) -> dict[str, Any] | JSONResponse:
        mock = _mock(request)
        if event not in SIMULATED_EVENTS:
            return _error(404, f"the mock cannot simulate {event!r}: {sorted(SIMULATED_EVENTS)}")
        if mock.webhook_url is None:
            return _error(409, "no webhook registered; POST /mock/webhook/register first")
        return await mock.trigger(event, spec)

    @router.get("/api/received_messages")
    async def received(request: Request) -> list[dict[str, Any]]:
        return _mock(request).received_messages

    @router.get("/api/actions")
    async def actions(request: Request) -> list[dict[str, Any]]:
        return _mock(request).actions

    @router.get("/conversations")
    async def conversations(request: Request) -> list[dict[str, Any]]:
        mock = _mock(request)
        return [mock._conversation_data(c) for c in mock.conversations.values()]

    @router.post("/reset")
    async def reset(request: Request) -> dict[str, bool]:
        _mock(request).reset()
        return {"ok": True}

    @router.get("/faults")
    async def get_faults(request: Request) -> Faults:
        return _mock(request).faults

    @router.post("/faults")
    async def set_faults(request: Request, faults: Faults) -> Faults:
        mock = _mock(request)
        mock.set_faults(faults)
        return mock.faults

    return router


def create_mock_chatwoot(
    *,
    webhook_url: str | None = None,
    secret: str | None = None,
    api_token: str | None = None,
    account_id: int = 1,
    emit_status_webhooks: bool = True,
    emit_message_webhooks: bool = False,
    allow_list_messages: bool = True,
    faults: Faults | None = None,
    webhook_timeout: float = 5.0,
) -> FastAPI:
    """Build the mock Chatwoot app; its state is ``app.state.mock`` (a ``MockChatwoot``).

    Args:
        webhook_url: where webhooks go (also settable with ``POST /mock/webhook/register``).
        secret: sign webhooks with it, as Chatwoot 4.12+ does.
        api_token: when set, API calls need ``api_access_token`` equal to it (else 401).
        account_id: the only account the API answers for.
        emit_status_webhooks: ``toggle_status`` fires ``conversation_status_changed``.
        emit_message_webhooks: a message posted through the API fires ``message_created``
            (outgoing, ``sender.type == "agent_bot"``), as real Chatwoot does for bots.
        allow_list_messages: ``False`` answers 401 to listing messages, like a bot token.
        faults: faults injected from the start.
        webhook_timeout: seconds to wait for the webhook target (Chatwoot's default is 5).
    """
    mock = MockChatwoot(
        webhook_url=webhook_url,
        secret=secret,
        api_token=api_token,
        account_id=account_id,
        emit_status_webhooks=emit_status_webhooks,
        emit_message_webhooks=emit_message_webhooks,
        allow_list_messages=allow_list_messages,
        faults=faults,
        webhook_timeout=webhook_timeout,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await mock.aclose()

    app = FastAPI(title="Mock Chatwoot", lifespan=lifespan)
    app.state.mock = mock

    async def refusal(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refusal)
        return exc.response

    app.add_exception_handler(_Refusal, refusal)
    app.include_router(_api_router())
    app.include_router(_mock_router())
    return app


async def run_mock_chatwoot(
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    webhook_url: str | None = None,
    secret: str | None = None,
    api_token: str | None = None,
    account_id: int = 1,
    emit_status_webhooks: bool = True,
    emit_message_webhooks: bool = False,
    allow_list_messages: bool = True,
    faults: Faults | None = None,
    webhook_timeout: float = 5.0,
    log_level: str = "info",
) -> None:
    """Run the mock Chatwoot until interrupted (for ``chatbridge mock-chatwoot``).

    To run it inside tests or the demo, serve ``create_mock_chatwoot(...)`` with
    ``chatbridge.testing.servers.serve_app`` instead.
    """
    app = create_mock_chatwoot(
        webhook_url=webhook_url,
        secret=secret,
        api_token=api_token,
        account_id=account_id,
        emit_status_webhooks=emit_status_webhooks,
        emit_message_webhooks=emit_message_webhooks,
        allow_list_messages=allow_list_messages,
        faults=faults,
        webhook_timeout=webhook_timeout,
    )
    # log_config=None: the CLI has configured logging already; uvicorn must not redo it.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=None)
    await uvicorn.Server(config).serve()
