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
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from chatbridge.api.errors import error_responses, unstorable_reason
from chatbridge.channels.chatwoot import parse_webhook
from chatbridge.channels.signatures import verify_chatwoot
from chatbridge.errors import BadInput
from chatbridge.models import Ignored
from chatbridge.pipeline.bridge import Bridge

log = logging.getLogger("chatbridge.api")
router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhook/chatwoot",
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
async def chatwoot_webhook(
    request: Request, mode: Literal["sync", "async"] | None = Query(default=None)
) -> JSONResponse:
    bridge: Bridge = request.app.state.bridge
    metrics = bridge.metrics
    started = time.perf_counter()
    try:
        require_json_content_type(request.headers.get("content-type"))
        body = await request.body()
        secret = bridge.settings.chatwoot_webhook_secret
        if secret is not None:
            # Checked here, with the replay window, so the parser need not check it again.
            max_age = bridge.settings.chatwoot_signature_max_age_seconds
            verify_chatwoot(secret, body, request.headers, max_age=max_age or None)
        parsed = parse_webhook(
            request.headers,
            body,
            secret=None,
            default_account_id=bridge.settings.chatwoot_account_id,
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
        metrics.webhooks.labels("chatwoot", type(exc).__name__).inc()
        raise
    metrics.webhooks.labels("chatwoot", accepted.status).inc()
    metrics.webhook_seconds.labels("chatwoot").observe(time.perf_counter() - started)
    if accepted.turn_id is None or accepted.response_mode != "sync":
        return WebhookResponse(accepted.body())
    reply = await bridge.wait_for_reply(accepted.turn_id, bridge.settings.max_sync_response_time)
    if reply is None:
        return WebhookResponse(accepted.body(), status_code=202)
    return WebhookResponse({**accepted.body(), "status": "replied", "reply": reply})


class WebhookResponse(JSONResponse):
    """The webhook's JSON answer with non-ASCII characters escaped: a value echoed from the
    payload (an unknown event's name in ``reason``) may hold a lone surrogate, which UTF-8
    cannot encode; escaped, it still renders instead of becoming a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


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
_SUSPECT = re.compile(rb"\\u|NaN|Infinity|\xed[\xa0-\xbf]")


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
    if _SUSPECT.search(body) is None:
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
