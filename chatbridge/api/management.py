"""Management API: health and readiness probes (no key), and — behind the admin key —
agent status, routes (inbox mappings), dead letters and Prometheus metrics.

Without ``CHATBRIDGE_ADMIN_KEY`` the protected endpoints answer only to clients on this machine
that reach us directly (a loopback address and no proxy header: behind a same-host proxy every
visitor would look local), so a laptop install works out of the box and an exposed one is not
open to the world. Wrong admin keys spend the client address's failed-authentication budget
(``chatbridge.api.auth_limits``): over it, 429 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.console_auth import admit, direct_local, session_principal
from chatbridge.api.errors import error_responses, unstorable_reason
from chatbridge.api.shapes import envelope, json_object, text
from chatbridge.config import SECRET_OPTIONS, InboxMapping
from chatbridge.errors import BadInput
from chatbridge.operators.roles import KEY_ADMIN, LOCAL_ADMIN
from chatbridge.pipeline.bridge import Bridge
from chatbridge.ratelimit import client_ip
from chatbridge.store.records import AgentRecord, Route
from chatbridge.transports import registry as transport_registry

router = APIRouter()

# The store's columns: inbox ids are INTEGER, row ids BIGINT, channel names VARCHAR(40).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

InboxId = Annotated[int, Path(ge=0, le=INT32_MAX, description="the channel's inbox id")]
ChannelName = Annotated[
    str, Query(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$", description="channel")
]


class MappingBody(InboxMapping):
    """One route, as ``POST /config/mappings`` and ``PUT /config/mappings/{inbox_id}`` take it
    (the same rules as ``INBOX_AGENT_MAPPINGS``)."""


def get_bridge(request: Request) -> Bridge:
    bridge: Bridge = request.app.state.bridge
    return bridge


_bearer = HTTPBearer(
    auto_error=False,
    description="CHATBRIDGE_ADMIN_KEY; without one, only local clients (loopback, no proxy "
    "header) are let in",
)


async def require_admin(
    request: Request,
    _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    """Let the request through with the admin key (or, with no key set, from a direct local
    client), or from a logged-in console session (with its CSRF token on changes).

    Raises:
        BadInput: 401 without the key, 403 without a key set and not a direct local client.
        RateLimited: the address has spent its budget of wrong admin keys (429).
    """
    bridge = request.app.state.bridge
    settings = bridge.settings
    # an operator's session: an agent-role operator is refused the admin screens (403)
    principal = await session_principal(request, settings, bridge.rate_limiter, bridge.store)
    if principal is not None:
        admit(request, principal)
        return
    key = settings.admin_key
    if key is None:
        if not direct_local(request):
            raise BadInput(
                "forbidden",
                "set CHATBRIDGE_ADMIN_KEY to use the management API from another host or "
                "through a proxy",
                status_code=403,
            )
        admit(request, LOCAL_ADMIN)
        return
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if auth:
        failures = auth_failures(request)
        await failures.guard("admin", client_ip(request))
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), key.encode()):
            admit(request, KEY_ADMIN)
            return
        await failures.failed("admin", client_ip(request))
    raise BadInput(
        "unauthorized", "missing or wrong admin key (Authorization: Bearer …)", status_code=401
    )


admin = [Depends(require_admin)]
_ADMIN_ERRORS = error_responses(
    {
        401: "missing or wrong admin key",
        403: "no admin key set and the client is not local",
        429: "too many wrong admin keys from this address",
    }
)


def _known_channel(bridge: Bridge, channel: str) -> None:
    if channel not in bridge.channels:
        known = ", ".join(sorted(bridge.channels))
        raise BadInput(
            "unknown_channel",
            f"channel {channel!r} is not one this bridge serves ({known})",
            status_code=422,
        )


@asynccontextmanager
async def _storing() -> AsyncIterator[None]:
    """A value the database refuses is the request's fault: 400 (the route was not saved)."""
    try:
        yield
    except Exception as exc:
        reason = unstorable_reason(exc)
        if reason is None:
            raise
        raise BadInput("invalid_request", f"mapping cannot be stored: {reason}") from exc


@router.get("/health", tags=["probes"], summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    tags=["probes"],
    summary="Readiness: store reachable, workers running",
    responses={
        **json_object(200, "ready: status, store, workers, backlog (and redis, replicas)"),
        **json_object(503, "not ready: the same fields, status not_ready and the reason"),
    },
)
async def ready(bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """Ready when the store answers, the workers run and no work is stuck.

    Stuck: the last housekeeping round could not reach the store, or a turn's or delivery's
    lease ran out more than a lease period ago and nobody took the work again. ``backlog``
    gives, per queue, how long the oldest due item has waited and how long ago the oldest
    unclaimed lease ran out (seconds; also in ``/metrics``).

    With ``CHATBRIDGE_REDIS_URL`` set, ``redis`` says whether Redis answers and ``replicas``
    how many replicas it knows to be alive. Redis being down does not make a replica unready:
    every replica would fail together, and the bridge carries on without it (claims poll the
    store, sync callers re-read their turn, web chat clients catch up from history; rate
    limits let requests through). It is reported so a monitor can alert on it.
    """
    store_ok = await bridge.store.ping()
    workers = bridge.workers_running
    stuck = bridge.stuck() if store_ok else "store_unreachable"
    ok = store_ok and workers and stuck is None
    body: dict[str, Any] = {
        "status": "ready" if ok else "not_ready",
        "store": store_ok,
        "workers": workers,
        "backlog": bridge.backlog,
    }
    if stuck is not None:
        body["reason"] = stuck
    if bridge.cluster.distributed:
        body["redis"] = await bridge.cluster.ping()
        body["replica"] = bridge.cluster.replica_id
        body["replicas"] = len(bridge.cluster.replicas())
    elif bridge.rate_limiter.uses_redis:
        body["redis"] = await bridge.rate_limiter.ping()
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/agents/status", tags=["management"], dependencies=admin, responses=_ADMIN_ERRORS)
async def agents_status(bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    """Every agent and how it is reached. With several replicas: the whole cluster's view
    (``replica`` holds the agent; ``replicas`` lists every live replica)."""
    if not bridge.cluster.distributed:
        return {"agents": bridge.agents_status()}
    answers = await bridge.cluster.gather("agents", {})
    replicas = bridge.cluster.replicas()
    return {
        "agents": bridge.agents_status(answers),
        "replica": bridge.cluster.replica_id,
        "replicas": [
            {"id": r["id"], "started_at": r.get("started_at"), "beat_at": r.get("beat_at")}
            for r in sorted(replicas.values(), key=lambda r: r["id"])
        ],
    }


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
        "policies": r.policies.model_dump(mode="json"),
        "agents": [a.stored() for a in r.agents],
        "updated_at": r.updated_at,
    }


def agent_config_json(agent_id: str, timeout: float, a: AgentRecord | None) -> dict[str, Any]:
    """An agent's config as the API shows it: secrets only as ``<name>_set`` flags."""
    transport = a.transport if a else None
    url = a.url if a else None
    # The transport's spec says which field its URL is shown as and which settings it keeps.
    spec = transport_registry.SPECS.get(transport) if transport else None
    url_field = spec.url_field if spec is not None else None
    out: dict[str, Any] = {
        "agent_id": agent_id,
        "websocket_url": url if transport is None or url_field == "websocket_url" else None,
        "timeout_seconds": timeout,
        "transport": transport,
        "token_set": bool(a and a.token_hash),
    }
    options = a.options if a else {}
    if url_field is not None and url_field != "websocket_url":
        out[url_field] = url
    for key in spec.option_keys if spec is not None else ():
        if key in options and key not in SECRET_OPTIONS:
            out[key] = options[key]
    if options.get("features"):  # protocol 1.3, any transport
        out["features"] = options["features"]
    for key in SECRET_OPTIONS:
        if key in options:
            out[f"{key}_set"] = True
    return out


def _audit_route(request: Request, r: Route) -> None:
    """What the audit row of a route change says (no agent tokens or secrets)."""
    request.state.audit_target = f"{r.channel}:{r.inbox_id}"
    request.state.audit_details = {"agent_id": r.agent_id, "reply_mode": r.reply_mode}


@router.get("/config/mappings", tags=["management"], dependencies=admin, responses=_ADMIN_ERRORS)
async def list_mappings(bridge: Bridge = Depends(get_bridge)) -> dict[str, Any]:
    agents = {a.id: a for a in await bridge.store.list_agents()}
    out = []
    for r in bridge.routes():
        m = route_json(r)
        a = agents.get(r.agent_id)
        m["agent_config"] = agent_config_json(r.agent_id, r.timeout_seconds, a)
        for entry in m["agents"]:  # named agents the bridge knows how to reach
            named = agents.get(entry["agent_id"])
            if named is not None and named.id != r.agent_id:
                entry["agent_config"] = agent_config_json(named.id, named.timeout_seconds, named)
        out.append(m)
    return {"mappings": out}


@router.post(
    "/config/mappings",
    tags=["management"],
    dependencies=admin,
    status_code=201,
    responses={
        **envelope(201, "mapping", "the route, created"),
        **_ADMIN_ERRORS,
        **error_responses({409: "the inbox is already mapped", 422: "invalid mapping"}),
    },
)
async def create_mapping(
    request: Request, mapping: MappingBody, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """Create the route of an inbox (409 if it exists: use PUT to change it)."""
    _known_channel(bridge, mapping.channel)
    exists = BadInput(
        "mapping_exists",
        f"inbox {mapping.inbox_id} is already mapped; PUT /config/mappings/{mapping.inbox_id}",
        status_code=409,
    )
    async with _storing():  # overwrite=False: a refused POST writes nothing at all
        route, created = await bridge.save_mapping(mapping, overwrite=False)
    if not created:
        raise exists
    _audit_route(request, route)
    return JSONResponse({"mapping": route_json(route)}, status_code=201)


@router.put(
    "/config/mappings/{inbox_id}",
    tags=["management"],
    dependencies=admin,
    responses={
        **envelope(200, "mapping", "the route, replaced"),
        **envelope(201, "mapping", "the route, created"),
        **_ADMIN_ERRORS,
        **error_responses({400: "inbox_id differs from the path", 422: "invalid mapping"}),
    },
)
async def update_mapping(
    request: Request, inbox_id: InboxId, mapping: MappingBody, bridge: Bridge = Depends(get_bridge)
) -> JSONResponse:
    """Create or replace the route of an inbox: 201 when created, 200 when replaced."""
    if mapping.inbox_id != inbox_id:
        raise BadInput("inbox_mismatch", "inbox_id in the body differs from the path")
    _known_channel(bridge, mapping.channel)
    async with _storing():
        route, created = await bridge.save_mapping(mapping)
    _audit_route(request, route)
    return JSONResponse(
        {"mapping": route_json(route), "created": created}, status_code=201 if created else 200
    )


@router.delete(
    "/config/mappings/{inbox_id}",
    tags=["management"],
    dependencies=admin,
    responses={**_ADMIN_ERRORS, **error_responses({404: "no such mapping"})},
)
async def delete_mapping(
    request: Request,
    inbox_id: InboxId,
    channel: ChannelName = "chatwoot",
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    if not await bridge.delete_mapping(channel, inbox_id):
        raise BadInput("not_found", f"no mapping for {channel} inbox {inbox_id}", status_code=404)
    request.state.audit_target = f"{channel}:{inbox_id}"
    return {"deleted": True, "inbox_id": inbox_id, "channel": channel}


@router.get("/dead-letters", tags=["management"], dependencies=admin, responses=_ADMIN_ERRORS)
async def list_dead_letters(
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=INT64_MAX),
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


@router.post(
    "/dead-letters/{delivery_id}/retry",
    tags=["management"],
    dependencies=admin,
    responses={**_ADMIN_ERRORS, **error_responses({404: "no such dead letter"})},
)
async def retry_dead_letter(
    delivery_id: Annotated[int, Path(ge=1, le=INT64_MAX)], bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    if not await bridge.store.replay_dead_letter(delivery_id):
        raise BadInput("not_found", f"no dead letter {delivery_id}", status_code=404)
    bridge.wake_deliveries()
    return {"retried": True, "id": delivery_id}


@router.post(
    "/dead-letters/{delivery_id}/discard",
    tags=["management"],
    dependencies=admin,
    responses={**_ADMIN_ERRORS, **error_responses({404: "no such dead letter"})},
)
async def discard_dead_letter(
    delivery_id: Annotated[int, Path(ge=1, le=INT64_MAX)], bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """Give up on a dead letter: it is never sent and leaves the list (kept for the record)."""
    if not await bridge.store.discard_dead_letter(delivery_id):
        raise BadInput("not_found", f"no dead letter {delivery_id}", status_code=404)
    return {"discarded": True, "id": delivery_id}


ConversationId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-]{1,40}$", description="the bridge's conversation id")
]


@router.get(
    "/conversations/{conversation_id}/live",
    tags=["management"],
    dependencies=admin,
    responses={**_ADMIN_ERRORS, **error_responses({404: "no such conversation"})},
)
async def conversation_live(
    conversation_id: ConversationId, bridge: Bridge = Depends(get_bridge)
) -> dict[str, Any]:
    """What the agent is doing in the conversation right now (protocol 1.3 status and
    progress frames): ``live`` is ``{agent_id, turn_id, content, progress, updated_at}``,
    or null when no status came within two minutes or the turn is over. Never stored: the
    console polls this while it shows the conversation."""
    live = bridge.live_status(conversation_id)
    if live is None and await bridge.store.get_conversation(conversation_id) is None:
        raise BadInput("not_found", f"no conversation {conversation_id}", status_code=404)
    return {"conversation_id": conversation_id, "live": live}


@router.get(
    "/metrics",
    tags=["management"],
    dependencies=admin,
    responses={**text(200, "Prometheus text exposition format"), **_ADMIN_ERRORS},
    response_class=Response,
)
async def metrics(bridge: Bridge = Depends(get_bridge)) -> Response:
    return Response(bridge.metrics.render(), media_type="text/plain; version=0.0.4")
