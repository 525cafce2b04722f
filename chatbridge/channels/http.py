"""The generic ``http`` channel: any app or site that is not Chatwoot or WhatsApp.

Inbound, the app POSTs one JSON object per request to ``/webhook/http/{inbox}``, signed with
the inbox's secret::

    X-Chatbridge-Timestamp: <unix seconds>
    X-Chatbridge-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

and the body is one of::

    {"type": "message", "conversation_id", "message_id", "text",
     "author"?, "contact"?, "attachments"?, "metadata"?}
    {"type": "handoff", "conversation_id", "to": "human" | "bot", "event_id"?}
    {"type": "event", "event", "conversation_id"?, "contact"?, "data"?, "event_id"?}

Outbound, replies, typing on/off, handoffs and private notes for the app's team (``note``,
e.g. a handoff summary) go to the inbox's ``callback_url`` as JSON POSTs signed the same way
(``sign`` and ``verify`` here serve both ends) and carrying the delivery's idempotency key
(``Idempotency-Key`` header and ``idempotency_key`` field). A retry repeats the key and the
receiver dedupes on it, so re-sending is harmless and ``already_sent`` is always ``False``.

The app's ids are namespaced by inbox in the store (``"<inbox>:<id>"``): two apps may both
have a conversation ``"42"``. ``docs/channels/http.md`` is the reference for app authors.

Its settings are its own (``HttpSettings``, ``CHATBRIDGE_HTTP_*``): the inboxes, the replay
window, the callback timeout and the source allowlist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from chatbridge import __version__
from chatbridge.backoff import parse_retry_after
from chatbridge.channels.base import (
    Capabilities,
    ChannelContext,
    ChannelSettings,
    InboundRequest,
    field_error,
    load_object,
    object_field,
    text_field,
)
from chatbridge.channels.signatures import find_header
from chatbridge.config import MIN_SECRET_CHARS
from chatbridge.errors import BadInput, BadSignature, PermanentDelivery, RetryableDelivery
from chatbridge.models import (
    Attachment,
    ContactInfo,
    ConversationEvent,
    Ignored,
    InboundMessage,
    OutboundAction,
    OwnerSignal,
    ParsedWebhook,
    SendResult,
)

__all__ = [
    "CHANNEL",
    "IDEMPOTENCY_HEADER",
    "SETTINGS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "HttpChannel",
    "HttpInbox",
    "HttpSettings",
    "build",
    "callback_body",
    "parse_payload",
    "sign",
    "verify",
]

CHANNEL = "http"
TIMESTAMP_HEADER = "X-Chatbridge-Timestamp"
SIGNATURE_HEADER = "X-Chatbridge-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = f"chatbridge/{__version__}"

# The store keeps channel keys and external ids in 200 characters, and ours are
# "<inbox>:<id>" (up to 11 characters of prefix).
MAX_ID_CHARS = 150
MAX_EVENT_CHARS = 100
MAX_ATTACHMENTS = 50
_CONTACT_LIMITS = {"name": 300, "email": 300, "phone": 40}
_SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,20}")
_MAX_INBOX_ID = 2**31 - 1

# Compact, UTF-8 kept as is, NaN refused; built once (``json.dumps`` with options is not).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


# --------------------------------------------------------------------------------------
# Settings (CHATBRIDGE_HTTP_*)
# --------------------------------------------------------------------------------------


class HttpInbox(BaseModel):
    """One inbox (``docs/channels/http.md``): the secret both directions are signed with,
    and where the bridge POSTs replies, typing and handoffs."""

    secret: str = Field(
        min_length=MIN_SECRET_CHARS,
        max_length=1000,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="HMAC-SHA256 key of X-Chatbridge-Signature, both ways; write-only",
        repr=False,
    )
    callback_url: str = Field(max_length=2000, pattern=r"^[^\x00-\x20\x7f]*$")

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("callback_url must be an http:// or https:// URL with a host")
        return value


class HttpSettings(ChannelSettings):
    """The channel's settings: ``CHATBRIDGE_HTTP_INBOXES``,
    ``CHATBRIDGE_HTTP_SIGNATURE_MAX_AGE_SECONDS``, ``CHATBRIDGE_HTTP_TIMEOUT_SECONDS`` and
    ``CHATBRIDGE_HTTP_ALLOWED_NETWORKS`` (the registry reads them with that prefix; it is
    named here too for a test that builds the model itself)."""

    model_config = SettingsConfigDict(env_prefix="CHATBRIDGE_HTTP_")

    inboxes: dict[int, HttpInbox] = Field(
        default_factory=dict,
        description='{"<inbox id>": {"secret": "...", "callback_url": "https://..."}}; the '
        'inbox\'s agent comes from a mapping with "channel": "http"',
    )
    signature_max_age_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="signed requests whose timestamp is further than this from the bridge's clock "
        "are refused with 401",
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="time limit of one callback POST to an inbox's callback_url",
    )

    @field_validator("inboxes")
    @classmethod
    def _inbox_ids(cls, value: dict[int, HttpInbox]) -> dict[int, HttpInbox]:
        for inbox_id in value:
            if not 0 <= inbox_id <= _MAX_INBOX_ID:
                raise ValueError(f"inbox id {inbox_id} is out of range")
        return value


SETTINGS = HttpSettings
"""The registry's settings model for this channel."""


# --------------------------------------------------------------------------------------
# Signatures (both directions)
# --------------------------------------------------------------------------------------


def signature(secret: str, body: bytes, timestamp: str) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
    mac.update(timestamp.encode("ascii"))
    mac.update(b".")
    mac.update(body)
    return "sha256=" + mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """The two signature headers for ``body`` (sent now, or at ``timestamp``).

    Args:
        secret: the inbox's secret.
        body: the exact bytes that will be sent.
        timestamp: Unix seconds; defaults to now.
    """
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, body, stamp)}


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature_header: str | None,
    *,
    max_age: float | None,
    now: float | None = None,
) -> None:
    """Check that ``body`` was signed with ``secret`` within ``max_age`` seconds of ``now``.

    Args:
        secret: the inbox's secret.
        body: the raw request body, exactly as received.
        timestamp: the ``X-Chatbridge-Timestamp`` header (None when absent).
        signature_header: the ``X-Chatbridge-Signature`` header (None when absent).
        max_age: the replay window in seconds; None turns it off.
        now: the current Unix time; defaults to ``time.time()``.

    Raises:
        BadSignature: a header is missing or malformed, the signature does not match, or the
            timestamp is outside the window. The message names which.
    """
    if timestamp is None:
        raise BadSignature(f"missing {TIMESTAMP_HEADER} header")
    if signature_header is None:
        raise BadSignature(f"missing {SIGNATURE_HEADER} header")
    timestamp = timestamp.strip()
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise BadSignature(f"malformed {TIMESTAMP_HEADER} header (expected Unix seconds)")
    match = _SIGNATURE_RE.fullmatch(signature_header.strip())
    if match is None:
        raise BadSignature(f"malformed {SIGNATURE_HEADER} header (expected sha256=<64 hex>)")
    expected = signature(secret, body, timestamp)[7:].encode("ascii")
    if not hmac.compare_digest(expected, match.group(1).lower().encode("ascii")):
        raise BadSignature(f"{SIGNATURE_HEADER} does not match the body and timestamp")
    # After the signature: "outside the window" then only describes an authentic request
    # (replayed, delayed, or a clock out of sync), which is what the app's author needs to know.
    if max_age is not None:
        current = time.time() if now is None else now
        if abs(current - int(timestamp)) > max_age:
            raise BadSignature(
                f"{TIMESTAMP_HEADER} is more than {max_age:g} s from the bridge's clock "
                "(a replayed or delayed request, or a clock out of sync)"
            )


# --------------------------------------------------------------------------------------
# Inbound bodies (pure)
# --------------------------------------------------------------------------------------


def _id(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    return text_field(obj, key, path, required=required, max_length=MAX_ID_CHARS, printable=True)


def _contact(payload: Mapping[str, Any], inbox_id: int) -> ContactInfo | None:
    raw = object_field(payload, "contact", "contact")
    if raw is None:
        return None
    contact_id = _id(raw, "id", "contact.id", required=False)
    # cut to what the store holds: a long name is no reason to refuse a customer's message
    fields: dict[str, str | None] = {}
    for key, limit in _CONTACT_LIMITS.items():
        value = text_field(raw, key, f"contact.{key}")
        fields[key] = None if value is None else value[:limit]
    return ContactInfo(
        external_id=None if contact_id is None else f"{inbox_id}:{contact_id}",
        name=fields["name"],
        email=fields["email"],
        phone=fields["phone"],
        metadata=object_field(raw, "metadata", "contact.metadata") or {},
    )


def _attachments(payload: Mapping[str, Any]) -> list[Attachment]:
    raw = payload.get("attachments")
    if raw is None:
        return []
    if not isinstance(raw, list):
        field_error("attachments", "must be a list")
    if len(raw) > MAX_ATTACHMENTS:
        field_error("attachments", f"has more than {MAX_ATTACHMENTS} items")
    result: list[Attachment] = []
    for index, item in enumerate(raw):
        path = f"attachments[{index}]"
        if not isinstance(item, dict):
            field_error(path, "must be an object")
        url = text_field(item, "url", f"{path}.url", required=True, max_length=2000)
        assert url is not None
        if not url.startswith(("http://", "https://")):
            field_error(f"{path}.url", "must be an http:// or https:// URL")
        size = item.get("size")
        if size is not None and (
            not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 2**53
        ):
            field_error(f"{path}.size", "must be a non-negative integer")
        result.append(
            Attachment(
                url=url,
                mime=text_field(item, "mime", f"{path}.mime", max_length=200),
                size=size,
                name=text_field(item, "name", f"{path}.name", max_length=300),
            )
        )
    return result


def _addressing(metadata: Mapping[str, Any]) -> dict[str, str]:
    """``metadata.agent`` / ``metadata.role``: the customer addresses one of the route's
    agents (protocol 1.3, docs/multi-agent.md); anything but a short string is ignored."""
    out: dict[str, str] = {}
    for key in ("agent", "role"):
        value = metadata.get(key)
        if isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable():
            out[key] = value
    return out


def _message(payload: Mapping[str, Any], inbox_id: int, received_at: float) -> ParsedWebhook:
    conversation_id = _id(payload, "conversation_id", "conversation_id")
    message_id = _id(payload, "message_id", "message_id")
    text = text_field(payload, "text", "text", required=True)
    assert conversation_id is not None and message_id is not None and text is not None
    attachments = _attachments(payload)
    if not text and not attachments:
        field_error("text", "must not be empty (unless attachments are given)")
    author = payload.get("author", "customer")
    channel_key = f"{inbox_id}:{conversation_id}"
    external_id = f"{inbox_id}:{message_id}"
    contact = _contact(payload, inbox_id)
    metadata = object_field(payload, "metadata", "metadata") or {}
    if author == "customer":
        return InboundMessage(
            channel=CHANNEL,
            inbox_id=inbox_id,
            channel_key=channel_key,
            text=text,
            external_message_id=external_id,
            attachments=attachments,
            contact=contact,
            context={
                "channel": CHANNEL,
                "external_conversation_id": conversation_id,
                "additional_attributes": metadata,
            },
            metadata={"message_id": message_id, **_addressing(metadata)},
            received_at=received_at,
        )
    if author == "human":
        # One of the app's own people wrote in the conversation: they take it over.
        return OwnerSignal(
            channel=CHANNEL,
            inbox_id=inbox_id,
            channel_key=channel_key,
            reason="human_message",
            owner="human",
            text=text,
            external_message_id=external_id,
            author_name=contact.name if contact else None,
        )
    if author == "bot":
        # The app mirrors its whole chat log, our replies included: never a turn.
        return Ignored("own_reply")
    field_error("author", "must be 'customer', 'human' or 'bot'")


def _handoff(payload: Mapping[str, Any], inbox_id: int) -> OwnerSignal:
    conversation_id = _id(payload, "conversation_id", "conversation_id")
    event_id = _id(payload, "event_id", "event_id", required=False)
    to = payload.get("to")
    if to != "human" and to != "bot":
        field_error("to", "must be 'human' or 'bot'")
    return OwnerSignal(
        channel=CHANNEL,
        inbox_id=inbox_id,
        channel_key=f"{inbox_id}:{conversation_id}",
        reason=f"handoff_to_{to}",
        owner=to,
        delivery_id=None if event_id is None else f"{inbox_id}:{event_id}",
    )


def _event(payload: Mapping[str, Any], inbox_id: int) -> ConversationEvent:
    name = text_field(
        payload, "event", "event", required=True, max_length=MAX_EVENT_CHARS, printable=True
    )
    if name is None:  # (required: text_field has refused it already)
        field_error("event", "is required (a string)")
    conversation_id = _id(payload, "conversation_id", "conversation_id", required=False)
    event_id = _id(payload, "event_id", "event_id", required=False)
    return ConversationEvent(
        channel=CHANNEL,
        inbox_id=inbox_id,
        event=name,
        channel_key=None if conversation_id is None else f"{inbox_id}:{conversation_id}",
        contact=_contact(payload, inbox_id),
        data=object_field(payload, "data", "data") or {},
        delivery_id=None if event_id is None else f"{inbox_id}:{event_id}",
    )


def parse_payload(body: bytes, inbox_id: int, *, received_at: float | None = None) -> ParsedWebhook:
    """The neutral event in one (already authenticated) request body of inbox ``inbox_id``.

    Raises:
        BadInput: ``invalid_json`` (not a JSON object) or ``invalid_payload``, whose message
            and ``details["field"]`` name the offending field.
    """
    payload = load_object(body)
    kind = payload.get("type")
    if kind == "message":
        return _message(payload, inbox_id, time.time() if received_at is None else received_at)
    if kind == "handoff":
        return _handoff(payload, inbox_id)
    if kind == "event":
        return _event(payload, inbox_id)
    field_error("type", "must be 'message', 'handoff' or 'event'")


def _inbox_id(raw: str | None) -> int | None:
    if raw is None or not raw.isdecimal() or not raw.isascii() or len(raw) > 10:
        return None
    number = int(raw)
    return number if number <= _MAX_INBOX_ID else None


# --------------------------------------------------------------------------------------
# Outbound bodies (pure)
# --------------------------------------------------------------------------------------


def callback_body(action: OutboundAction) -> dict[str, Any]:
    """What the callback URL receives for ``action`` (see ``docs/channels/http.md``).

    Raises:
        PermanentDelivery: an action kind this channel does not know.
    """
    conversation = action.conversation
    # "<inbox>:<the app's id>" in the store; the app gets its own id back
    _, _, conversation_id = conversation.channel_key.partition(":")
    body: dict[str, Any] = {
        "type": "message",
        "idempotency_key": action.idempotency_key,
        "inbox_id": conversation.inbox_id,
        "conversation_id": conversation_id,
    }
    kind = action.kind
    if kind == "message":
        body["text"] = action.text or ""
        if action.attachments:
            body["attachments"] = [
                {k: v for k, v in (("url", a.url), ("mime", a.mime), ("name", a.name)) if v}
                for a in action.attachments
            ]
        if action.metadata:
            body["metadata"] = action.metadata
    elif kind == "typing_on" or kind == "typing_off":
        body["type"] = "typing"
        body["on"] = kind == "typing_on"
    elif kind == "handoff":
        body["type"] = "handoff"
        body["to"] = "human"
    elif kind == "note":
        # for the app's team, never its customer (e.g. the handoff summary)
        body["type"] = "note"
        body["text"] = action.text or ""
        if action.metadata:
            body["metadata"] = action.metadata
    else:
        raise PermanentDelivery(f"http channel cannot perform action kind {kind!r}")
    return body


def _reply_id(response: httpx.Response) -> str | None:
    """The receiver's id for the message, when it answers ``{"message_id": ...}``."""
    if not response.content or "json" not in response.headers.get("content-type", ""):
        return None
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    value = data.get("message_id") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None


# --------------------------------------------------------------------------------------
# The channel
# --------------------------------------------------------------------------------------


class HttpChannel:
    """The generic signed-JSON channel (``Channel`` contract): one ``httpx.AsyncClient`` for
    every inbox's callback, created on first send and closed by ``aclose``."""

    name = CHANNEL
    # ``notes``: the callback is the app's back end, which already takes handoffs for its
    # team; a ``note`` callback is for that team and documented as never for the customer.
    capabilities = Capabilities(typing=True, media=True, notes=True)

    def __init__(
        self,
        inboxes: Mapping[int, HttpInbox],
        *,
        max_age: float | None = 300.0,
        timeout: float = 10.0,
    ) -> None:
        """
        Args:
            inboxes: inbox id → its secret and callback URL.
            max_age: the replay window of inbound requests, in seconds (None: none).
            timeout: total seconds per callback POST.
        """
        self._inboxes = dict(inboxes)
        self._max_age = max_age
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    # ---------------------------------------------------------------- inbound
    async def parse(self, request: InboundRequest) -> list[ParsedWebhook]:
        """Authenticate ``request`` with its inbox's secret and read the event it holds.

        Raises:
            BadInput: 404 the inbox is not configured, 401 bad or missing signature or a
                timestamp outside the window, 400 a malformed body (the field is named).
        """
        raw_inbox = request.path.get("inbox")
        inbox_id = _inbox_id(raw_inbox)
        inbox = None if inbox_id is None else self._inboxes.get(inbox_id)
        if inbox is None or inbox_id is None:
            raise BadInput(
                "unknown_inbox",
                f"http inbox {raw_inbox!r} is not configured (CHATBRIDGE_HTTP_INBOXES)",
                status_code=404,
                details={"channel": CHANNEL, "inbox_id": raw_inbox},
            )
        headers = request.headers
        verify(
            inbox.secret,
            request.body,
            find_header(headers, "x-chatbridge-timestamp"),
            find_header(headers, "x-chatbridge-signature"),
            max_age=self._max_age,
            now=request.received_at,
        )
        return [parse_payload(request.body, inbox_id, received_at=request.received_at)]

    def stored(self, message: InboundMessage) -> None:
        """Nothing to do: the app learns the outcome from the reply at its callback."""

    # ---------------------------------------------------------------- outbound
    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("HttpChannel is closed")
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
        return client

    async def send(self, action: OutboundAction) -> SendResult:
        """POST ``action`` to its inbox's callback URL, signed, with its idempotency key.

        Raises:
            RetryableDelivery: connect error, timeout, 408, 429 or 5xx (``retry_after`` from
                ``Retry-After`` when sent); ``outcome_unknown`` when the request may have
                been written and no answer came (a read or write timeout, a dropped
                connection).
            PermanentDelivery: any other non-2xx (redirects are not followed), an inbox no
                longer configured, or an unknown action kind.
        """
        inbox_id = action.conversation.inbox_id
        inbox = self._inboxes.get(inbox_id)
        if inbox is None:
            raise PermanentDelivery(f"http inbox {inbox_id} is not configured")
        body = _encode(callback_body(action)).encode()
        headers = sign(inbox.secret, body)
        headers["Content-Type"] = "application/json"
        headers[IDEMPOTENCY_HEADER] = action.idempotency_key
        what = f"http callback {action.kind}"
        try:
            response = await self._http().post(inbox.callback_url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryableDelivery(
                f"{what}: timed out", outcome_unknown=not isinstance(exc, _NOT_SENT)
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableDelivery(
                f"{what}: cannot reach {_origin(inbox.callback_url)} ({type(exc).__name__})",
                outcome_unknown=not isinstance(exc, _NOT_SENT),
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(external_id=_reply_id(response))
        excerpt = " ".join(response.text.split())[:200].replace(inbox.secret, "***")
        message = f"{what}: HTTP {status}: {excerpt}"
        if status in (408, 429) or status >= 500:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableDelivery(message, retry_after=wait)
        raise PermanentDelivery(message)

    async def already_sent(self, action: OutboundAction) -> bool | None:
        """Always ``False``: a repeated POST carries the same idempotency key, and receivers
        dedupe on it (the documented contract), so sending again is harmless."""
        return False

    async def aclose(self) -> None:
        """Close the client; later sends raise ``RuntimeError``. Idempotent."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


# Failures before any byte of the request left: the receiver cannot have it.
_NOT_SENT = (
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ConnectError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
    httpx.LocalProtocolError,
)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what an error message may show of a callback URL
    (its path or query may hold a token)."""
    parts = httpx.URL(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host}{port}"


def build(context: ChannelContext) -> HttpChannel:
    """The channel as the registry builds it, from its ``HttpSettings``."""
    settings = context.own(HttpSettings)
    return HttpChannel(
        settings.inboxes,
        max_age=settings.signature_max_age_seconds,
        timeout=settings.timeout_seconds,
    )
