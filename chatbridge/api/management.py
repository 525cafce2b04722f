"""Management API: health and readiness probes (no key), and — behind the admin key —
agent status, routes (inbox mappings), dead letters and Prometheus metrics.

Without ``CHATBRIDGE_ADMIN_KEY`` the protected endpoints answer only to loopback clients, so a
laptop install works out of the box and an exposed one is not open to the world.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from chatbridge.config import InboxMapping
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store.records import Route

router = APIRouter()

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def get_bridge(request: Request) -> Bridge:
    return request.app.state.bridge  # type: ignore[no-any-return]


async def require_admin(request: Request) -> None:
    key = request.app.state.bridge.settings.admin_key
    if key is None:
        host = request.client.host if request.client else ""
        if host not in _LOOPBACK:
            raise BadInput(
                "forbidden",
                "set CHATBRIDGE_ADMIN_KEY to use the management API from another host",
                status_code=403,
            )
        return
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.encode()):
        raise BadInput(
            "unauthorized", "missing or wrong admin key (Authorization: Bearer …)", status_code=401
        )


admin = [Depends(require_admin)]


@router.get("/health", tags=["probes"], summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", tags=["probes"], summary="Readiness: store reachable, workers running")
async def ready(bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    store_ok = await bridge.store.ping()
    workers = bridge.workers_running
    ok = store_ok and workers
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "store": store_ok, "workers": workers},
        status_code=200 if ok else 503,
    )


@router.get("/agents/status", tags=["management"], dependencies=admin)
async def agents_status(bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    return {"agents": bridge.agents_status()}


def route_json(r: Route) -> dict[str, Any]:
    return {
        "inbox_id": r.inbox_id,
        "channel": r.channel,
        "agent_id": r.agent_id,
        "reply_mode": r.reply_mode,
        "timeout_seconds": r.timeout_seconds,
        "fallback_text": r.fallback_text,
        "on_failure": r.on_failure,
        "agent_bot_mode": r.agent_bot_mode,
        "updated_at": r.updated_at,
    }


@router.get("/config/mappings", tags=["management"], dependencies=admin)
async def list_mappings(bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    agents = {a.id: a for a in await bridge.store.list_agents()}
    out = []
    for r in bridge.routes():
        m = route_json(r)
        a = agents.get(r.agent_id)
        m["agent_config"] = {
            "agent_id": r.agent_id,
            "websocket_url": a.url if a else None,
            "timeout_seconds": r.timeout_seconds,
            "transport": a.transport if a else None,
        }
        out.append(m)
    return {"mappings": out}


@router.post("/config/mappings", tags=["management"], dependencies=admin, status_code=201)
async def create_mapping(
    mapping: InboxMapping, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """Create the route of an inbox (409 if it exists: use PUT to change it)."""
    if bridge.route_for(mapping.channel, mapping.inbox_id) is not None:
        raise BadInput(
            "mapping_exists",
            f"inbox {mapping.inbox_id} is already mapped; PUT /config/mappings/{mapping.inbox_id}",
            status_code=409,
        )
    route, _ = await bridge.save_mapping(mapping)
    return JSONResponse({"mapping": route_json(route)}, status_code=201)


@router.put("/config/mappings/{inbox_id}", tags=["management"], dependencies=admin)
async def update_mapping(
    inbox_id: int, mapping: InboxMapping, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    if mapping.inbox_id != inbox_id:
        raise BadInput("inbox_mismatch", "inbox_id in the body differs from the path")
    route, created = await bridge.save_mapping(mapping)
    return {"mapping": route_json(route), "created": created}


@router.delete("/config/mappings/{inbox_id}", tags=["management"], dependencies=admin)
async def delete_mapping(
    inbox_id: int, channel: str = Query(default="chatwoot"), bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    if not await bridge.delete_mapping(channel, inbox_id):
        raise BadInput("not_found", f"no mapping for {channel} inbox {inbox_id}", status_code=404)
    return {"deleted": True, "inbox_id": inbox_id, "channel": channel}


@router.get("/dead-letters", tags=["management"], dependencies=admin)
async def list_dead_letters(
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    rows = await bridge.store.list_dead_letters(limit=limit, offset=offset)
    return {
        "dead_letters": [
            {
                "id": d.id,
                "conversation_id": d.conversation_id,
                "channel": d.channel,
                "channel_key": d.channel_key,
                "kind": d.kind,
                "text": d.text,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "created_at": d.created_at,
                "turn_id": f"t_{d.turn_id}" if d.turn_id else None,
            }
            for d in rows
        ]
    }


@router.post("/dead-letters/{delivery_id}/retry", tags=["management"], dependencies=admin)
async def retry_dead_letter(
    delivery_id: int, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    if not await bridge.store.replay_dead_letter(delivery_id):
        raise BadInput("not_found", f"no dead letter {delivery_id}", status_code=404)
    bridge.wake_deliveries()
    return {"retried": True, "id": delivery_id}


@router.get("/metrics", tags=["management"], dependencies=admin)
async def metrics(bridge: Bridge = Depends(get_bridge)) -> Response:
    return Response(bridge.metrics.render(), media_type="text/plain; version=0.0.4")
