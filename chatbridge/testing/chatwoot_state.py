"""``MockChatwoot``: the state behind the mock Chatwoot's endpoints, and what changes it.

Conversations, stored messages, recorded actions, webhook history and injected ``Faults``
live on one ``MockChatwoot``. ``trigger()`` builds an event from a ``TriggerRequest``
(``SIMULATED_EVENTS``), posts it to the registered webhook URL and records it; ``toggle_status()``
and ``post_message()`` are what the REST API calls do. Payload shapes come from
``chatwoot_payloads``; the HTTP app around it is ``chatbridge.testing.mock_chatwoot``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import time
import uuid
from collections.abc import Coroutine
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from chatbridge.channels.signatures import DELIVERY_HEADER, sign_chatwoot
from chatbridge.testing import chatwoot_payloads as payloads
from chatbridge.testing.chatwoot_payloads import MockConversation

ConversationStatus = Literal["open", "resolved", "pending", "snoozed"]
MESSAGE_TYPE_CODES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
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


_RAILS_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "off", "OFF"})


def rails_boolean(value: object) -> bool:
    """``value`` as Chatwoot stores a boolean request field (``params[:x] || false`` cast by
    ``ActiveModel::Type::Boolean``): false for nothing, ``""``, false, 0 and Rails' false
    strings; true for anything else (``"no"`` included, as in Rails)."""
    if value is None or value == "" or value is False:
        return False
    if type(value) is int:  # Rails' set holds the integer 0 only (0.0 is true)
        return value != 0
    if isinstance(value, str):
        return value not in _RAILS_FALSE
    return True


class Faults(BaseModel):
    """Faults injected into the REST API (never into ``/mock/*``).

    ``fail_next`` status codes are used first, one per call; then each call fails with 429 at
    ``rate_429`` and with 500 at ``rate_500``. ``delay_ms`` delays a ``delay_rate`` share of
    calls (before they are carried out). A failed call changes nothing.

    Two faults make a caller time out on a message creation that still happens, as a
    Chatwoot under load does (it finishes a request whose client has left). Each list holds
    milliseconds, one per message creation, used in order:

    - ``slow_messages``: the message is stored that much later (its ``message_created``
      echo follows as usual);
    - ``slow_answers``: the message is stored and echoed at once (Chatwoot commits and
      enqueues the webhook before it answers), but the answer comes that much later.
    """

    rate_429: float = Field(default=0.0, ge=0.0, le=1.0)
    rate_500: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_ms: int = Field(default=0, ge=0, le=600_000)
    delay_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    fail_next: list[int] = Field(default_factory=list)
    slow_messages: list[int] = Field(default_factory=list)
    slow_answers: list[int] = Field(default_factory=list)
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
        emit_message_webhooks: bool = True,
        allow_list_messages: bool = False,
        faults: Faults | None = None,
        webhook_timeout: float = 5.0,
        token_kind: Literal["bot", "user"] = "bot",
        retry_wait: float = 3.0,
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
        # Whose token the bridge holds: an agent bot's (the default, as in production) or a
        # user's. It decides who our replies come from in their message_created echoes.
        self.token_kind = token_kind
        self.retry_wait = retry_wait
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
        self.creating = 0
        """Message creations being handled (a slow one included)."""
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

    # --- simulated events --------------------------------------------------------------

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
            return payloads.contact_full(conv.contact, self.account)
        if kind == "user":
            return {
                "id": given.get("id", 1),
                "name": given.get("name", "Agent Smith"),
                "email": given.get("email", "agent@example.com"),
                "type": "user",
            }
        return {"id": given.get("id", 1), "name": given.get("name", "Bridge Bot"), "type": kind}

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
            "updated_at": payloads.iso(ts),
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
                attachments=payloads.attachments(message_id, spec.attachments, self.account_id),
            )
            payload = payloads.message_event(
                conv, message, self.account, message_type=spec.message_type, sender=sender
            )
            return {**payload, "event": event}, message_id
        if event == "webwidget_triggered":
            current = None
            widget_conv: MockConversation | None = None
            if "conversation_id" in spec.model_fields_set:
                widget_conv = self.conversation(
                    spec.conversation_id, inbox_id=spec.inbox_id, channel=spec.channel
                )
                current = payloads.conversation_data(widget_conv, self.account)
            contact = widget_conv.contact if widget_conv else self._new_contact()
            inbox_id = (
                spec.inbox_id
                if spec.inbox_id is not None
                else (widget_conv.inbox_id if widget_conv else 1)
            )
            payload = {
                "id": widget_conv.contact_inbox_id if widget_conv else 0,
                "contact": payloads.contact_full(contact, self.account),
                "inbox": payloads.inbox(inbox_id),
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
            payload = {**payloads.conversation_data(conv, self.account), "event": event}
            if event in ("conversation_status_changed", "conversation_updated"):
                payload["changed_attributes"] = [
                    {"status": {"previous_value": previous, "current_value": new_status}}
                ]
            return payload, None
        raise KeyError(event)

    # --- webhooks -----------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # A new connection per webhook, as Chatwoot's webhook jobs make one per request
            # (nothing is kept alive between Sidekiq jobs).
            self._client = httpx.AsyncClient(
                timeout=self.webhook_timeout, limits=httpx.Limits(max_keepalive_connections=0)
            )
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

    async def settle_background(self) -> None:
        """Wait until the background webhooks begun so far (an echo with its retries, a
        status change) have ended, delivered or given up; later ones are not waited for."""
        begun = list(self._tasks)
        if begun:
            await asyncio.gather(*begun, return_exceptions=True)

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

    def creation_delays(self) -> tuple[float, float]:
        """Seconds to wait before storing the next message created through the API, and
        after it before answering (``Faults.slow_messages``, ``Faults.slow_answers``)."""
        before, after = self.faults.slow_messages, self.faults.slow_answers
        return (before.pop(0) / 1000 if before else 0.0, after.pop(0) / 1000 if after else 0.0)

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
                **payloads.conversation_data(conv, self.account),
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

    def notes(self, conversation_id: int | None = None) -> list[dict[str, Any]]:
        """The private notes posted through the API (``received_messages`` with ``private``),
        optionally of one conversation: what the team sees and the customer does not."""
        return [
            m
            for m in self.received_messages
            if m["private"] and (conversation_id is None or m["conversation_id"] == conversation_id)
        ]

    def post_message(self, conv: MockConversation, body: dict[str, Any]) -> dict[str, Any]:
        """Record a message posted through the API (a bot reply, or with ``private`` a private
        note) and return its JSON.

        ``private`` is read as Rails reads the boolean column (``params[:private] || false``,
        then ``ActiveModel::Type::Boolean``): absent, null, ``""`` and ``false``/``0``/
        ``"false"``/``"f"``/``"0"``/``"off"`` (either case) are false, anything else true. A
        note is stored, echoed (``message_created`` with ``private: true``, from the bot or
        the user as the token says, with the ``source_id`` sent) and left out of the
        conversation's ``messages`` in webhooks, as Chatwoot does.
        """
        attributes = body.get("content_attributes") or {}
        if isinstance(attributes, str):
            try:
                attributes = json.loads(attributes)
            except ValueError:
                attributes = {}
        message_type = body.get("message_type") or "outgoing"
        sender: dict[str, Any] = (
            {"id": 1, "name": "Bridge Bot", "type": "agent_bot"}
            if self.token_kind == "bot"
            else {"id": 7, "name": "Bridge User", "email": "bridge@example.com", "type": "user"}
        )
        message = self._store_message(
            conv,
            message_id=self._new_message_id(),
            content=body.get("content"),
            message_type=message_type,
            private=rails_boolean(body.get("private")),
            sender=None if message_type == "incoming" else sender,
            content_type=body.get("content_type") or "text",
            content_attributes=attributes if isinstance(attributes, dict) else {},
            echo_id=body.get("echo_id"),
            source_id=body.get("source_id"),
        )
        record = {
            "received_at": time.time(),
            "conversation_id": conv.display_id,
            "content": message["content"],
            "echo_id": message["echo_id"],
            "id": message["id"],
            "created_at": message["created_at"],
            "private": message["private"],
            "source_id": message["source_id"],
            "content_type": message["content_type"],
            "content_attributes": message["content_attributes"],
        }
        self.received_messages.append(record)
        self.record_action("message", conv.display_id, dict(body))
        if self.emit_message_webhooks and self.webhook_url:
            payload = {
                **payloads.message_event(
                    conv, message, self.account, message_type=message_type, sender=sender
                ),
                "event": "message_created",
            }
            delivery_id = str(uuid.uuid4())
            self._sent[delivery_id] = ("message_created", payload, message["id"], None)
            self._spawn(self._echo(payload, delivery_id, message["id"]))
        return {**payloads.push_message(message), "sender": sender}

    async def _echo(self, payload: dict[str, Any], delivery_id: str, message_id: int) -> None:
        """Send a message's ``message_created`` webhook the way Chatwoot's agent-bot job
        does: in the background, retried only after 429 or 500 (3 attempts, ``retry_wait``
        apart). A target that is down, or answers anything else, loses the event."""
        for attempt in range(3):
            result = await self._deliver("message_created", payload, delivery_id, None, message_id)
            if result["status_code"] not in (429, 500) or attempt == 2:
                return
            await asyncio.sleep(self.retry_wait)
