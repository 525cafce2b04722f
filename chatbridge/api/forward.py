"""Hand an http-pull agent's request to the replica that holds the agent's offers.

An http-pull agent's turns are offered by one replica at a time (``chatbridge.cluster``: that
replica holds the agent's lease and is the only one claiming its turns). A poll, a reply or an
action-API ``inbox`` / ``outbox`` may reach any replica through the load balancer; the
replica it reached checks the caller (auth, rate limits) and, when another replica holds the
agent, passes the whole request to it over Redis and returns its answer unchanged. The holder
runs the request through its own app, marked with a secret only that process knows, so it
is served there and never passed on again.

Costs and limits, said plainly: a long-poll forwarded this way holds one Redis round trip
open for its ``wait``; if the caller hangs up, the holder does not see it, so what it leased
comes back only when the lease runs out. If the holder dies mid-request the caller gets a
503 with ``Retry-After`` and polls again (its lease is gone with the holder; the turn is
offered again by the next holder under the same ``message_id``).
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from chatbridge.cluster import Cluster, ClusterUnavailable

if TYPE_CHECKING:
    from chatbridge.pipeline.bridge import Bridge

log = logging.getLogger("chatbridge.api.forward")

HEADER = "x-chatbridge-forwarded"
# Headers that describe one hop, not the request.
_HOP = {"host", "content-length", "connection", "transfer-encoding", HEADER}
_SECRET = os.urandom(16).hex()


def forwarded(request: Request) -> bool:
    """Whether this request was passed here by another replica (so: serve it, no limits)."""
    given = request.headers.get(HEADER)
    # constant time: the marker lifts every limit, so it must not leak a byte at a time
    return given is not None and hmac.compare_digest(given.encode(), _SECRET.encode())


def _unavailable(code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def to_holder(request: Request, bridge: Bridge, agent_id: str) -> Response | None:
    """The holder's answer when another replica holds ``agent_id``; None to serve it here."""
    cluster = bridge.cluster
    if cluster.holds(agent_id):
        return None
    if forwarded(request):
        # Passed to us as the holder, but the lease moved meanwhile: the caller tries again.
        return _unavailable("agent_moving", f"agent {agent_id!r} is moving between replicas")
    holder = cluster.location(agent_id)
    if holder is None:
        if await cluster.try_lease(agent_id):
            return None
        holder = cluster.location(agent_id)
        if holder is None:
            return None  # Redis is away: serve here (the poll fallback keeps things moving)
    if holder == cluster.replica_id:
        return None
    wait = float(request.query_params.get("wait") or 0) if request.method == "GET" else 0.0
    return await to_replica(
        request,
        cluster,
        holder,
        agent_id,
        timeout=min(wait, bridge.settings.pull_max_wait) + 15.0,
        unreachable=f"the replica holding agent {agent_id!r} did not answer; try again",
    )


async def to_replica(
    request: Request,
    cluster: Cluster,
    replica: str,
    agent_id: str,
    *,
    timeout: float,
    unreachable: str,
) -> Response:
    """Pass the whole request to ``replica`` over Redis and return its answer unchanged (a 503
    with ``Retry-After`` and ``unreachable`` when it does not answer)."""
    query = request.url.query
    payload = {
        "agent_id": agent_id,
        "method": request.method,
        "path": request.url.path + (f"?{query}" if query else ""),
        "headers": [[k, v] for k, v in request.headers.items() if k.lower() not in _HOP],
        "body": base64.b64encode(await request.body()).decode("ascii"),
    }
    try:
        answer = await cluster.call(replica, "http", payload, timeout=timeout)
    except ClusterUnavailable as exc:
        log.warning("could not pass %s for %s to %s: %s", request.url.path, agent_id, replica, exc)
        return _unavailable("agent_holder_unreachable", unreachable)
    return Response(
        content=base64.b64decode(answer["body"]),
        status_code=int(answer["status"]),
        headers={k: v for k, v in answer["headers"] if k.lower() not in _HOP},
    )


def serve_forwarded(app: FastAPI, cluster: Cluster) -> None:
    """Let other replicas pass http-pull requests to this one (``to_holder``)."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://replica", timeout=None
    )

    async def run(payload: dict[str, Any]) -> dict[str, Any]:
        headers = [(k, v) for k, v in payload["headers"] if k.lower() not in _HOP]
        headers.append((HEADER, _SECRET))
        r = await client.request(
            payload["method"],
            payload["path"],
            headers=headers,
            content=base64.b64decode(payload["body"]),
        )
        return {
            "status": r.status_code,
            "headers": [[k, v] for k, v in r.headers.items() if k.lower() not in _HOP],
            "body": base64.b64encode(r.content).decode("ascii"),
        }

    cluster.serve("http", run)
