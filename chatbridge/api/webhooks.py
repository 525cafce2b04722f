"""``POST /webhook/chatwoot``: verify, parse, persist, acknowledge — in milliseconds.

Chatwoot ignores the response body and gives up after 5 s, so the reply always goes back
through the Chatwoot API. ``?mode=sync`` (or a route in sync mode) makes *this* HTTP call wait
up to ``MAX_SYNC_RESPONSE_TIME`` for the reply and return it in the body, for callers that
read it (scripts, the mock Chatwoot); if it doesn't come in time the answer is 202.

Every refusal is a 4xx with the JSON error body, and a refused delivery writes nothing: the
store keeps a webhook in one transaction, and a value it cannot hold rolls that back.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chatbridge.api.errors import error_responses, unstorable_reason
from chatbridge.channels.chatwoot import parse_delivery
from chatbridge.channels.signatures import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_chatwoot_signature,
)
from chatbridge.errors import BadInput
from chatbridge.models import Ignored
from chatbridge.pipeline.bridge import Bridge

log = logging.getLogger("chatbridge.api")


class ChatwootRoute(APIRoute):
    """``POST /webhook/chatwoot`` as a FastAPI route that serves plain deliveries itself.

    A webhook is the bridge's hottest request, and its only parameter is ``mode``: a POST
    whose query is empty, ``mode=sync`` or ``mode=async`` goes straight to
    ``receive_chatwoot``, without FastAPI's per-request parameter solving (about a fifth of
    the request's CPU). Any other request (another method, another query) takes FastAPI's
    way, so its 405 and its 422s stay FastAPI's. Either way an error reaches the same
    exception handlers, and the OpenAPI operation is FastAPI's, made from ``chatwoot_webhook``.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        mode = _PLAIN_QUERIES.get(scope["query_string"], _OTHER)
        if mode is _OTHER or scope["method"] != "POST":
            await super().handle(scope, receive, send)
            return
        response = await receive_chatwoot(scope, receive, mode)
        await response(scope, receive, send)


_OTHER: Any = object()
_PLAIN_QUERIES: dict[bytes, Any] = {b"": None, b"mode=sync": "sync", b"mode=async": "async"}


def add_routes(app: FastAPI) -> None:
    """Add ``POST /webhook/chatwoot`` to ``app``'s own router, as its first route.

    Not through ``include_router``: FastAPI matches an included router's routes twice per
    request (to pick the router, then the route), which costs a webhook about 10 µs.
    """
    app.router.add_api_route(
        "/webhook/chatwoot",
        chatwoot_webhook,
        methods=["POST"],
        route_class_override=ChatwootRoute,
        tags=["webhooks"],
        summary="Chatwoot webhook (agent bot outgoing_url or account webhook)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "A Chatwoot webhook event (message_created, conversation_*, …)",
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": {"event": {"type": "string"}}}
                    }
                },
            }
        },
        responses={
            200: {"description": "stored (async), replied (sync), duplicate or ignored"},
            202: {"description": "sync mode: the reply did not come within the sync window"},
            **error_responses(
                {
                    400: "malformed JSON or payload, or a value the store cannot hold",
                    401: "missing or bad X-Chatwoot-Signature, or a timestamp outside the window",
                    404: "no route for this inbox",
                    413: "body too large",
                    415: "the body is not declared as JSON",
                    422: "invalid query parameter",
                }
            ),
        },
    )
    # Tried first: a router matches a request against its routes in order, and nearly every
    # request to a bridge is a webhook (FastAPI's own /docs routes came before it).
    routes = app.router.routes
    routes.insert(0, routes.pop())


async def chatwoot_webhook(
    request: Request, mode: Literal["sync", "async"] | None = Query(default=None)
) -> Response:
    # The route's endpoint as FastAPI sees it: its OpenAPI operation (no docstring: it would
    # become the operation's description), and the requests ChatwootRoute leaves to FastAPI.
    return await receive_chatwoot(request.scope, request.receive, mode)


async def receive_chatwoot(
    scope: Scope, receive: Receive, mode: Literal["sync", "async"] | None
) -> Response:
    """Verify, parse and persist one Chatwoot delivery; the answer to send back.

    Raises:
        BadInput: (and its subclasses) a delivery to refuse; the app's handlers answer it.
    """
    hook = ChatwootHook.of(scope["app"])
    bridge = hook.bridge
    started = time.perf_counter()
    try:
        content_type, timestamp, signature, delivery_id = _chatwoot_headers(scope["headers"])
        require_json_content_type(content_type)
        body = await read_body(receive)
        settings = bridge.settings
        secret = settings.chatwoot_webhook_secret
        if secret is not None:
            # Checked here, with the replay window, so the parser need not check it again.
            max_age = settings.chatwoot_signature_max_age_seconds
            check_chatwoot_signature(secret, body, timestamp, signature, max_age=max_age or None)
        parsed = parse_delivery(
            body, delivery_id=delivery_id, default_account_id=settings.chatwoot_account_id
        )
        if not isinstance(parsed, Ignored):
            check_storable_json(body)
        try:
            accepted = await bridge.accept(parsed, mode=mode)
        except Exception as exc:
            reason = unstorable_reason(exc)
            if reason is None:
                raise
            log.warning("chatwoot webhook refused: payload cannot be stored: %s", reason)
            raise BadInput("invalid_payload", f"payload cannot be stored: {reason}") from exc
    except Exception as exc:
        hook.count(type(exc).__name__)
        raise
    hook.count(accepted.status)
    hook.seconds.observe(time.perf_counter() - started)
    if accepted.turn_id is None or accepted.response_mode != "sync":
        return WebhookResponse(accepted.body())
    reply = await bridge.wait_for_reply(accepted.turn_id, settings.max_sync_response_time)
    if reply is None:
        return WebhookResponse(accepted.body(), status_code=202)
    return WebhookResponse({**accepted.body(), "status": "replied", "reply": reply})


class ChatwootHook:
    """What every delivery to one app needs, looked up once: its bridge and its metrics'
    children (``.labels(...)`` per request costs more than the increment)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._received = bridge.metrics.webhooks
        self._counters: dict[str, Any] = {}
        self.seconds = bridge.metrics.webhook_seconds.labels("chatwoot")

    @classmethod
    def of(cls, app: Any) -> ChatwootHook:
        """The app's hook (made on its first delivery)."""
        state = app.state
        found: ChatwootHook | None = getattr(state, "chatwoot_hook", None)
        if found is None:
            found = state.chatwoot_hook = cls(state.bridge)
        return found

    def count(self, result: str) -> None:
        """One more delivery in ``chatbridge_webhooks_total{channel="chatwoot", result}``."""
        counter = self._counters.get(result)
        if counter is None:
            counter = self._counters[result] = self._received.labels("chatwoot", result)
        counter.inc()


def _chatwoot_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[str | None, str | None, str | None, str | None]:
    """Content-Type, X-Chatwoot-Timestamp, X-Chatwoot-Signature and X-Chatwoot-Delivery, each
    the first of its name (as starlette's ``Headers.get``), in one pass over the raw headers."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    get = found.get
    return get(_CONTENT_TYPE), get(_TIMESTAMP), get(_SIGNATURE), get(_DELIVERY)


_CONTENT_TYPE = b"content-type"
_TIMESTAMP = TIMESTAMP_HEADER.lower().encode()
_SIGNATURE = SIGNATURE_HEADER.lower().encode()
_DELIVERY = DELIVERY_HEADER.lower().encode()
_WANTED = frozenset((_CONTENT_TYPE, _TIMESTAMP, _SIGNATURE, _DELIVERY))


async def read_body(receive: Receive) -> bytes:
    """The whole request body, read as ``Request.body()`` reads it, without its generator.

    Raises:
        ClientDisconnect: the client went away before the body was complete.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


class WebhookResponse(JSONResponse):
    """The webhook's JSON answer with non-ASCII characters escaped: a value echoed from the
    payload (an unknown event's name in ``reason``) may hold a lone surrogate, which UTF-8
    cannot encode; escaped, it still renders instead of becoming a 500."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("ascii")


def require_json_content_type(value: str | None) -> None:
    """Refuse a body declared as anything but JSON (415); an undeclared body is read as JSON.

    Raises:
        BadInput: ``unsupported_media_type`` (415).
    """
    if value is None:
        return
    media = value.partition(";")[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise BadInput(
        "unsupported_media_type",
        f"Content-Type must be application/json, got {value[:100]!r}",
        status_code=415,
    )


# What can only appear in JSON that PostgreSQL (or any JSON parser but Python's) refuses:
# a \u escape (NUL, lone surrogate), a raw UTF-8-encoded surrogate, or NaN / Infinity.
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def _suspect(body: bytes) -> bool:
    """Whether ``body`` may hold any of those: plain substring scans, about half the cost of
    one regular expression with four alternatives (most bodies hold no backslash and no 0xED
    byte, which skips two of the scans)."""
    return (
        (b"\\" in body and b"\\u" in body)
        or b"NaN" in body
        or b"Infinity" in body
        or (b"\xed" in body and _RAW_SURROGATE.search(body) is not None)
    )


def check_storable_json(body: bytes) -> None:
    """Refuse JSON that the store would hold on SQLite but not on PostgreSQL, or not at all.

    Python's ``json`` accepts ``NaN``/``Infinity``, NUL characters and unpaired surrogates;
    PostgreSQL refuses all three, SQLite the surrogates. Chatwoot never sends them, so they
    are refused the same way on every store. Cheap: a payload is walked only when its bytes
    contain something suspect.

    Raises:
        BadInput: ``invalid_json`` for NaN/Infinity, ``invalid_payload`` naming the field
            whose text holds a NUL or an unpaired surrogate.
    """
    if not _suspect(body):
        return

    def constant(name: str) -> Any:
        raise BadInput("invalid_json", f"{name} is not valid JSON")

    payload = json.loads(body, parse_constant=constant)
    todo: list[tuple[str, Any]] = [("", payload)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, str):
            _check_text(value, path or "body")
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                _check_text(key, f"a key of {path or 'the body'}")
                todo.append((child, item))
        elif isinstance(value, list):
            todo.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise BadInput("invalid_payload", f"{_short(where)}: text contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(
            "invalid_payload", f"{_short(where)}: text contains an unpaired surrogate"
        ) from None


def _short(where: str) -> str:
    """The path as printable text: NULs and surrogates escaped, at most 200 characters."""
    where = where.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return where if len(where) <= 200 else where[:197] + "..."
