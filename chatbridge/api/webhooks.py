"""``POST /webhook/chatwoot``: verify, parse, persist, acknowledge — in milliseconds.

Chatwoot ignores the response body and gives up after 5 s, so the reply always goes back
through the Chatwoot API. ``?mode=sync`` (or a route in sync mode) makes *this* HTTP call wait
up to ``MAX_SYNC_RESPONSE_TIME`` for the reply and return it in the body, for callers that
read it (scripts, the mock Chatwoot); if it doesn't come in time the answer is 202.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from chatbridge.channels.chatwoot import parse_webhook
from chatbridge.pipeline.bridge import Bridge

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhook/chatwoot",
    summary="Chatwoot webhook (agent bot outgoing_url or account webhook)",
    responses={
        200: {"description": "stored (async), replied (sync), duplicate or ignored"},
        202: {"description": "sync mode: the reply did not come within the sync window"},
        400: {"description": "malformed JSON or payload"},
        401: {"description": "missing or bad X-Chatwoot-Signature"},
        404: {"description": "no route for this inbox"},
        413: {"description": "body too large"},
    },
)
async def chatwoot_webhook(
    request: Request, mode: Literal["sync", "async"] | None = Query(default=None)
) -> JSONResponse:
    bridge: Bridge = request.app.state.bridge
    metrics = bridge.metrics
    started = time.perf_counter()
    body = await request.body()
    try:
        parsed = parse_webhook(
            request.headers,
            body,
            secret=bridge.settings.chatwoot_webhook_secret,
            default_account_id=bridge.settings.chatwoot_account_id,
        )
        accepted = await bridge.accept(parsed, mode=mode)
    except Exception as exc:
        metrics.webhooks.labels("chatwoot", type(exc).__name__).inc()
        raise
    metrics.webhooks.labels("chatwoot", accepted.status).inc()
    metrics.webhook_seconds.labels("chatwoot").observe(time.perf_counter() - started)
    if accepted.turn_id is None or accepted.response_mode != "sync":
        return JSONResponse(accepted.body())
    reply = await bridge.wait_for_reply(accepted.turn_id, bridge.settings.max_sync_response_time)
    if reply is None:
        return JSONResponse(accepted.body(), status_code=202)
    return JSONResponse({**accepted.body(), "status": "replied", "reply": reply})
