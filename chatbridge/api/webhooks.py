"""``POST /webhook/chatwoot``: verify, parse, persist, acknowledge — in milliseconds.

Chatwoot ignores the response body and gives up after 5 s, so the reply always goes back
through the Chatwoot API. ``?mode=sync`` (or a route in sync mode) makes *this* HTTP call wait
up to ``MAX_SYNC_RESPONSE_TIME`` for the reply and return it in the body, for callers that
read it (scripts, the mock Chatwoot); if it doesn't come in time the answer is 202.

Every refusal is a 4xx with the JSON error body, and a refused delivery writes nothing: the
store keeps a webhook in one transaction, and a value it cannot hold rolls that back.

The steps are the generic inbound handler's (``chatbridge.api.inbound``): source allowlist,
Content-Type, body, the channel's parse (``ChatwootChannel.parse_delivery``: signature,
replay window, echoes), storable check, accept, metrics. Here they run inline, with the four
headers Chatwoot's delivery needs read in one pass: this is the bridge's hottest request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chatbridge import tracing
from chatbridge.api.errors import error_responses, unstorable_reason
from chatbridge.api.inbound import (
    InboundHook,
    WebhookResponse,
    check_storable_json,
    read_body,
    require_json_content_type,
)
from chatbridge.api.shapes import webhook_answers
from chatbridge.channels.chatwoot_channel import ChatwootChannel
from chatbridge.channels.signatures import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
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
        receiver = traced_chatwoot if tracing.ON else receive_chatwoot
        response = await receiver(scope, receive, mode)
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
            **webhook_answers(batch=False),
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
    receiver = traced_chatwoot if tracing.ON else receive_chatwoot
    return await receiver(request.scope, request.receive, mode)


async def traced_chatwoot(
    scope: Scope, receive: Receive, mode: Literal["sync", "async"] | None
) -> Response:
    """``receive_chatwoot`` in a ``webhook`` span (tracing on: the root of the trace of the
    message it brings)."""
    with tracing.webhook("chatwoot"):
        return await receive_chatwoot(scope, receive, mode)


async def receive_chatwoot(
    scope: Scope, receive: Receive, mode: Literal["sync", "async"] | None
) -> Response:
    """Verify, parse and persist one Chatwoot delivery; the answer to send back.

    Raises:
        BadInput: (and its subclasses) a delivery to refuse; the app's handlers answer it.
    """
    hook = ChatwootHook.of_app(scope["app"])
    bridge = hook.bridge
    if hook.allowlist is not None:
        hook.allowlist.check(scope)
    started = time.perf_counter()
    try:
        content_type, timestamp, signature, delivery_id = _chatwoot_headers(scope["headers"])
        require_json_content_type(content_type)
        body = await read_body(receive)
        parsed = hook.channel.parse_delivery(
            body, timestamp=timestamp, signature=signature, delivery_id=delivery_id
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
    # (``channel.stored`` is not called: Chatwoot's does nothing)
    hook.count(accepted.status)
    hook.seconds.observe(time.perf_counter() - started)
    if accepted.turn_id is None or accepted.response_mode != "sync":
        return WebhookResponse(accepted.body())
    reply = await bridge.wait_for_reply(accepted.turn_id, bridge.settings.max_sync_response_time)
    if reply is None:
        return WebhookResponse(accepted.body(), status_code=202)
    return WebhookResponse({**accepted.body(), "status": "replied", "reply": reply})


class ChatwootHook(InboundHook):
    """The inbound hook of ``/webhook/chatwoot``, kept in its own attribute of the app's
    state (one lookup per delivery) and typed with its Chatwoot channel."""

    channel: ChatwootChannel

    def __init__(self, bridge: Bridge) -> None:
        channel = bridge.channels.get("chatwoot")
        # A test may run the bridge with an outbound-only fake: parse with a channel of its own.
        if not isinstance(channel, ChatwootChannel):
            channel = ChatwootChannel(bridge.settings)
        super().__init__(bridge, "chatwoot", channel)

    @classmethod
    def of_app(cls, app: Any) -> ChatwootHook:
        """The app's hook (made on its first delivery)."""
        state = app.state
        found: ChatwootHook | None = getattr(state, "chatwoot_hook", None)
        if found is None:
            found = state.chatwoot_hook = cls(state.bridge)
        return found


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
