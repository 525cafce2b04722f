"""One inbound handler for every webhook channel: ``POST /webhook/{channel}[/{inbox}]``.

The same steps for every channel, in this order::

    source allowlist (403, before the body is read)
    → Content-Type (415) → body → channel.parse (signature, replay window, echoes: 400/401/404)
    → storable check (400) → bridge.accept per event → channel.stored → metrics → JSON answer

The answer is the one event's result (``{"status": "stored", ...}``), or ``{"status":
"batch", "results": [...]}`` when a request held several (Meta batches messages). A sync
route (or ``?mode=sync``) waits for the reply as ``POST /webhook/chatwoot`` does.

``POST /webhook/chatwoot`` keeps its own fast path (``webhooks.ChatwootRoute``) and
``POST /api/comms/webhooks/{provider}`` its public path (``comms_webhooks``); both run the
same steps, the first with Chatwoot's four headers read in one pass.

A channel's allowlist is ``CHATBRIDGE_<CHANNEL>_ALLOWED_NETWORKS`` (CIDRs), a setting every
channel has (``ChannelSettings.allowed_networks``, read once at start). The client it is
checked against is the connection's peer, or, when the peer is a trusted proxy
(``proxy_headers`` and ``forwarded_allow_ips``), the address it forwards: uvicorn resolves
that before the request reaches the app.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope

from chatbridge import tracing
from chatbridge.api.errors import error_responses, unstorable_reason
from chatbridge.api.shapes import webhook_answers
from chatbridge.channels.base import Channel, InboundRequest
from chatbridge.channels.registry import WEBHOOK_CHANNELS, channel_settings
from chatbridge.config import Settings
from chatbridge.errors import BadInput
from chatbridge.models import Ignored, InboundMessage, ParsedWebhook
from chatbridge.pipeline.bridge import Bridge
from chatbridge.pipeline.inbound import Accepted

log = logging.getLogger("chatbridge.api")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def first_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers, lower-case names (as the server gives them), the first of each."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


class SourceAllowlist:
    """The client networks allowed to call one channel's webhook."""

    __slots__ = ("channel", "networks")

    def __init__(self, channel: str, networks: Sequence[str]) -> None:
        self.channel = channel
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    @classmethod
    def of(cls, settings: Settings, channel: str) -> SourceAllowlist | None:
        """``channel``'s allowlist (its ``CHATBRIDGE_<CHANNEL>_ALLOWED_NETWORKS``); None:
        anyone. Made once per app, not per request."""
        networks = channel_settings(settings, channel).allowed_networks
        return cls(channel, networks) if networks else None

    def allows(self, client: str | None) -> bool:
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def check(self, scope: Scope) -> None:
        """Refuse a client outside the networks (403), before anything of its request is read.

        Raises:
            BadInput: ``source_not_allowed`` (403).
        """
        peer = scope.get("client")
        client = peer[0] if peer else None
        if not self.allows(client):
            raise BadInput(
                "source_not_allowed",
                f"{client or 'this client'} may not call the {self.channel} webhook: it is "
                f"outside CHATBRIDGE_{self.channel.upper()}_ALLOWED_NETWORKS",
                status_code=403,
                details={"client": client, "channel": self.channel},
            )


class InboundHook:
    """What every request to one channel's webhook needs, looked up once per app."""

    def __init__(self, bridge: Bridge, name: str, channel: Channel) -> None:
        self.bridge = bridge
        self.name = name
        self.channel = channel
        self.allowlist = SourceAllowlist.of(bridge.settings, name)
        self.seconds = bridge.metrics.webhook_seconds.labels(name)
        self._received = bridge.metrics.webhooks
        self._counters: dict[str, Any] = {}

    @classmethod
    def of(cls, app: Any, name: str) -> InboundHook:
        """The hook of channel ``name`` in ``app``.

        Raises:
            BadInput: 404 when ``name`` is not a webhook channel this bridge runs.
        """
        hooks: dict[str, InboundHook] | None = getattr(app.state, "inbound_hooks", None)
        if hooks is None:
            hooks = app.state.inbound_hooks = {}
        hook = hooks.get(name)
        if hook is None:
            bridge: Bridge = app.state.bridge
            channel = bridge.channels.get(name)
            if name not in WEBHOOK_CHANNELS or not isinstance(channel, Channel):
                raise BadInput("not_found", f"no webhook channel {name[:100]!r}", status_code=404)
            hook = hooks[name] = cls(bridge, name, channel)
        return hook

    def count(self, result: str) -> None:
        """One more in ``chatbridge_webhooks_total{channel, result}``."""
        counter = self._counters.get(result)
        if counter is None:
            counter = self._counters[result] = self._received.labels(self.name, result)
        counter.inc()


async def accept_events(
    hook: InboundHook, parsed: list[ParsedWebhook], *, mode: str | None = None
) -> list[Accepted]:
    """``bridge.accept`` each event, ``channel.stored`` each new customer message.

    Raises:
        BadInput: ``invalid_payload`` for a value the store cannot hold (nothing is kept).
    """
    results: list[Accepted] = []
    for item in parsed:
        try:
            accepted = await hook.bridge.accept(item, mode=mode)
        except Exception as exc:
            reason = unstorable_reason(exc)
            if reason is None:
                raise
            log.warning("%s webhook refused: payload cannot be stored: %s", hook.name, reason)
            raise BadInput("invalid_payload", f"payload cannot be stored: {reason}") from exc
        hook.count(accepted.status)
        if isinstance(item, InboundMessage) and accepted.status in ("accepted", "stored"):
            hook.channel.stored(item)
        results.append(accepted)
    return results


def results_body(results: list[Accepted]) -> dict[str, Any]:
    """One result's body, or the batch's (a request that held no event is an empty batch)."""
    if len(results) == 1:
        return results[0].body()
    return {"status": "batch", "results": [r.body() for r in results]}


async def answer(bridge: Bridge, results: list[Accepted], *, wait: bool = True) -> WebhookResponse:
    """The JSON answer: one result (with ``wait``, a sync route's reply), or the batch."""
    if len(results) != 1 or not wait:
        return WebhookResponse(results_body(results))
    accepted = results[0]
    if accepted.turn_id is None or accepted.response_mode != "sync":
        return WebhookResponse(accepted.body())
    reply = await bridge.wait_for_reply(accepted.turn_id, bridge.settings.max_sync_response_time)
    if reply is None:
        return WebhookResponse(accepted.body(), status_code=202)
    return WebhookResponse({**accepted.body(), "status": "replied", "reply": reply})


async def receive(
    request: Request,
    name: str,
    path: dict[str, str],
    *,
    mode: str | None = None,
    wait: bool = True,
) -> Response:
    """Run the inbound steps for one request to channel ``name``'s webhook (``wait``: a sync
    route's caller gets the reply in the answer).

    Raises:
        BadInput: (and its subclasses) a request to refuse; the app's handlers answer it.
    """
    if tracing.ON:
        with tracing.webhook(name):
            return await _receive(request, name, path, mode=mode, wait=wait)
    return await _receive(request, name, path, mode=mode, wait=wait)


async def _receive(
    request: Request, name: str, path: dict[str, str], *, mode: str | None, wait: bool
) -> Response:
    scope = request.scope
    hook = InboundHook.of(scope["app"], name)
    if hook.allowlist is not None:
        hook.allowlist.check(scope)
    started = time.perf_counter()
    try:
        require_json_content_type(request.headers.get("content-type"))
        body = await read_body(request.receive)
        inbound = InboundRequest(
            body=body,
            headers=first_headers(scope["headers"]),
            path=path,
            query=dict(request.query_params),
            client=scope["client"][0] if scope.get("client") else None,
        )
        parsed = await hook.channel.parse(inbound)
        if not all(isinstance(p, Ignored) for p in parsed):
            check_storable_json(body)
        results = await accept_events(hook, parsed, mode=mode)
    except Exception as exc:
        hook.count(type(exc).__name__)
        raise
    hook.seconds.observe(time.perf_counter() - started)
    return await answer(hook.bridge, results, wait=wait)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    **webhook_answers(),
    **error_responses(
        {
            400: "malformed JSON or payload, or a value the store cannot hold",
            401: "missing or bad signature, or a timestamp outside the replay window",
            403: "the client is outside the channel's allowed networks",
            404: "no such webhook channel, the channel is off, or no route for the inbox",
            413: "body too large",
            415: "the body is not declared as JSON",
        }
    ),
}
_BODY = {
    "requestBody": {
        "required": True,
        "description": "The channel's webhook payload, exactly as it sends it",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


async def channel_webhook(
    request: Request, channel: str, mode: Literal["sync", "async"] | None = Query(default=None)
) -> Response:
    return await receive(request, channel, {}, mode=mode)


async def channel_inbox_webhook(
    request: Request,
    channel: str,
    inbox: str,
    mode: Literal["sync", "async"] | None = Query(default=None),
) -> Response:
    return await receive(request, channel, {"inbox": inbox}, mode=mode)


def add_routes(app: FastAPI) -> None:
    """``POST /webhook/{channel}`` and ``POST /webhook/{channel}/{inbox}``, after the
    Chatwoot fast route (which matches its own path first)."""
    app.router.add_api_route(
        "/webhook/{channel}",
        channel_webhook,
        methods=["POST"],
        tags=["webhooks"],
        summary="A webhook channel's inbound endpoint (chatwoot, whatsapp, http, ...)",
        openapi_extra=_BODY,
        responses=_RESPONSES,
    )
    app.router.add_api_route(
        "/webhook/{channel}/{inbox}",
        channel_inbox_webhook,
        methods=["POST"],
        tags=["webhooks"],
        summary="A webhook channel's inbound endpoint for one inbox (e.g. /webhook/http/7)",
        openapi_extra=_BODY,
        responses=_RESPONSES,
    )


# ---------------------------------------------------------------- bodies and answers


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
