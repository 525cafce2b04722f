"""The http-pull agent transport: ``GET /api/agent/turns`` and ``POST …/{id}/reply``.

An agent behind a firewall long-polls for turns (each comes with a lease) and posts its
answer — any agent → bridge frame of protocol v1 — naming the lease. The turns themselves are
offered by ``chatbridge.transports.pull.PullBroker``; see there for leases and re-offers.

With several replicas, an http-pull agent's turns are offered by the replica holding its
lease, and its polls and replies are passed there (``chatbridge.api.forward``). An
http-webhook agent's turns run on whichever replica claimed them; a late reply that reaches
another replica is passed to the one the database names as the turn's lease owner.

The token is checked first: a wrong one spends the caller's failed-authentication budget
(``chatbridge.api.auth_limits``; over it, 429 whatever the token), and only a verified agent's
requests count against its per-agent rate limits, so a stranger sending a real agent's
``X-Agent-Id`` cannot get that agent rate limited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from chatbridge import tracing
from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.errors import error_responses
from chatbridge.api.forward import forwarded, to_holder, to_replica
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.pipeline.workers import iso
from chatbridge.protocol import ProtocolError
from chatbridge.ratelimit import client_ip
from chatbridge.transports import registry as transport_registry
from chatbridge.transports.pull import LeaseExpired, UnknownTurn
from chatbridge.transports.registry import TransportSpec

router = APIRouter(tags=["agents"])

_AUTH_ERRORS = {
    401: "missing or bad agent token",
    409: "the agent is not configured for http-pull (replies: or http-webhook)",
    429: "rate limited, or too many wrong tokens from this address",
}


class PulledTurn(BaseModel):
    lease_id: str
    lease_expires_at: str
    turn: dict[str, Any]


class PullOut(BaseModel):
    turns: list[PulledTurn]


class ReplyOut(BaseModel):
    status: str


async def _agent(
    request: Request,
    authorization: str | None,
    agent_header: str | None,
    agent_query: str | None,
    *,
    replying: bool = False,
) -> tuple[Bridge, str, TransportSpec]:
    bridge: Bridge = request.app.state.bridge
    agent_id = agent_header or agent_query
    token = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
    if not agent_id or not token:
        raise BadInput(
            "unauthorized",
            "send Authorization: Bearer <agent token> and X-Agent-Id: <agent id>",
            status_code=401,
        )
    s = bridge.settings
    here = not forwarded(request)  # a forwarded request was checked where it arrived
    failures = auth_failures(request)
    if here:
        await failures.guard("pull", client_ip(request))
    if not await bridge.verify_agent_token(agent_id, token):
        if here:
            await failures.failed("pull", client_ip(request))
        raise BadInput("unauthorized", "bad agent id or token", status_code=401)
    if not here:
        pass  # limited on the replica the agent reached
    elif replying:  # streamed chunks are one POST each: their own, larger budget
        await bridge.rate_limiter.hit("agent_reply", s.rate_limit_agent_replies, agent_id)
    else:
        await bridge.rate_limiter.hit("agent", s.rate_limit_agent, agent_id)
    agent = await bridge.store.get_agent(agent_id)
    # The transport's spec says whether its agent polls, or may answer on the reply endpoint
    # (a webhook agent answering later; its turns are never pulled).
    spec = transport_registry.SPECS.get(agent.transport) if agent is not None else None
    if spec is None or not _may_use(spec, replying):
        allowed = [s.kind for s in transport_registry.SPECS.values() if _may_use(s, replying)]
        raise BadInput(
            "not_pull_agent",
            f"agent {agent_id!r} is not configured with transport {' or '.join(allowed)}",
            status_code=409,
        )
    return bridge, agent_id, spec


def _may_use(spec: TransportSpec, replying: bool) -> bool:
    return spec.posts_replies if replying else spec.polled


async def _to_turn_owner(
    request: Request, bridge: Bridge, agent_id: str, turn_id: str
) -> Response | None:
    """The answer of the replica running this http-webhook turn, when it is not this one;
    None to serve the reply here (no cluster, the turn runs here, or it runs nowhere)."""
    cluster = bridge.cluster
    if not cluster.distributed or forwarded(request):
        return None
    if bridge.hub.pull.find(agent_id, turn_id) is not None:
        return None  # it runs here
    row = await bridge.store.get_turn(int(turn_id.removeprefix("t_")))
    owner = row.get("lease_owner") if row is not None and row.get("state") == "leased" else None
    if not owner or owner == cluster.replica_id:
        return None
    return await to_replica(
        request,
        cluster,
        owner,
        agent_id,
        timeout=15.0,
        unreachable=f"the replica running {turn_id} did not answer; try again",
    )


AgentHeader = Annotated[str | None, Header(alias="X-Agent-Id", max_length=200)]
AgentQuery = Annotated[str | None, Query(alias="agent_id", max_length=200)]
AuthHeader = Annotated[str | None, Header(max_length=2000)]


@router.get(
    "/api/agent/turns",
    response_model=PullOut,
    summary="Long-poll for turns (http-pull agents); each comes with a lease",
    responses=error_responses({**_AUTH_ERRORS, 422: "invalid query"}),
)
async def pull_turns(
    request: Request,
    response: Response,
    authorization: AuthHeader = None,
    x_agent_id: AgentHeader = None,
    agent_id: AgentQuery = None,
    wait: Annotated[float, Query(ge=0, le=60)] = 25,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> PullOut | Response:
    bridge, agent, _ = await _agent(request, authorization, x_agent_id, agent_id)
    elsewhere = await to_holder(request, bridge, agent)
    if elsewhere is not None:
        return elsewhere
    wait = min(wait, bridge.settings.pull_max_wait)
    offers = await bridge.hub.pull.pull(agent, limit=limit, wait=wait)
    if offers and await request.is_disconnected():
        # The poller hung up while waiting (an agent restart): nobody will answer these.
        bridge.hub.pull.release(offers)
        offers = []
    if tracing.ON and offers and (traceparent := offers[0].req.frame.get(tracing.KEY)):
        # W3C, the first turn's (each turn's own is its ``traceparent`` field)
        response.headers[tracing.KEY] = traceparent
    return PullOut(
        turns=[
            PulledTurn(
                lease_id=o.lease_id or "",
                lease_expires_at=iso(o.lease_expires_at),
                turn=o.req.frame,
            )
            for o in offers
        ]
    )


@router.post(
    "/api/agent/turns/{turn_id}/reply",
    response_model=ReplyOut,
    summary="Answer a pulled turn with any agent → bridge frame (names the lease)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "agent_message, agent_streaming, agent_complete, no_reply, handoff, "
            "error_message or typing (protocol v1)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    responses=error_responses(
        {
            **_AUTH_ERRORS,
            400: "not a valid agent frame",
            404: "no open turn with this id for this agent",
            409: "the lease expired or belongs to another poller; or not an http-pull agent",
            422: "invalid query",
        }
    ),
)
async def reply_turn(
    request: Request,
    turn_id: Annotated[str, Path(max_length=64, pattern=r"^t_[0-9]+$")],
    authorization: AuthHeader = None,
    x_agent_id: AgentHeader = None,
    agent_id: AgentQuery = None,
    lease: Annotated[str | None, Query(max_length=64)] = None,
    x_lease_id: Annotated[str | None, Header(alias="X-Lease-Id", max_length=64)] = None,
) -> ReplyOut | Response:
    bridge, agent, spec = await _agent(request, authorization, x_agent_id, agent_id, replying=True)
    if spec.placement == "leased":  # http-pull: the replica holding the agent's lease
        elsewhere = await to_holder(request, bridge, agent)
    else:  # http-webhook: the replica that claimed the turn
        elsewhere = await _to_turn_owner(request, bridge, agent, turn_id)
    if elsewhere is not None:
        return elsewhere
    try:
        body = await request.json()
    except ValueError:
        raise BadInput("invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadInput("invalid_frame", "the body must be a JSON object")
    body.setdefault("message_id", turn_id)
    if body.get("message_id") != turn_id and body.get("type") != "typing":
        raise BadInput("invalid_frame", "message_id in the body names another turn")
    try:
        status = await bridge.hub.pull.reply(agent, turn_id, lease or x_lease_id, body)
    except UnknownTurn:
        raise BadInput(
            "unknown_turn", f"no open turn {turn_id} for agent {agent}", status_code=404
        ) from None
    except LeaseExpired:
        raise BadInput(
            "lease_expired",
            f"the lease on {turn_id} expired or belongs to another poller; pull again",
            status_code=409,
        ) from None
    except ProtocolError as exc:
        raise BadInput("invalid_frame", str(exc)) from None
    return ReplyOut(status=status)
