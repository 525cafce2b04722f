"""The audit log: written by ``AuditTrail`` (a middleware) for every successful admin action,
read with ``GET /api/audit`` (admins only).

The middleware asks ``chatbridge.operators.audit.audited`` whether the request is an audited
action; when its answer is a 2xx, it writes who (the principal ``require_admin`` admitted),
what, on which target, from which address, and the safe details the handler left on the
request state (``audit_details``: which settings changed, an operator's new role — never
tokens or passwords). A row that cannot be written is logged, and the action stands.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbridge.api.errors import error_responses
from chatbridge.api.management import admin, get_bridge
from chatbridge.api.operator_shapes import AuditPage, ok
from chatbridge.operators.audit import audited
from chatbridge.operators.roles import Principal
from chatbridge.pipeline.bridge import Bridge

log = logging.getLogger("chatbridge.audit")

router = APIRouter(tags=["operators"], dependencies=admin)


class AuditTrail:
    """Pure ASGI middleware: one audit row per successful audited request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        found = audited(scope["method"], scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, sending)
        if 200 <= status < 300:
            await self._write(scope, *found)

    @staticmethod
    async def _write(scope: Scope, action: str, target: str | None) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("principal")
        if not isinstance(principal, Principal):
            return
        bridge: Bridge = scope["app"].state.bridge
        client = scope.get("client")
        try:
            await bridge.store.add_audit(
                actor_id=principal.operator_id,
                actor=principal.actor,
                action=action,
                target=state.get("audit_target") or target,
                details=state.get("audit_details") or {},
                ip=client[0] if client else None,
            )
        except Exception:
            log.exception("audit: could not write %s by %s", action, principal.actor)


@router.get(
    "/api/audit",
    response_model=None,
    responses={
        **ok(AuditPage),
        **error_responses({401: "no session or admin key", 403: "admins only"}),
    },
)
async def audit_log(
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    action: Annotated[
        str | None, Query(max_length=60, pattern=r"^[a-z_.]+$", description="e.g. route.")
    ] = None,
    actor_id: Annotated[str | None, Query(max_length=40, pattern=r"^op_[A-Za-z0-9]+$")] = None,
    bridge: Bridge = Depends(get_bridge),
) -> dict[str, Any]:
    """Admin actions, newest first: ``{at, actor, actor_id, action, target, details, ip}``.
    ``action`` narrows by prefix (``route.``, ``settings.``, ``operator.``, ``dead_letter.``)."""
    rows, total = await bridge.store.list_audit(
        limit=limit, offset=offset, action=action, actor_id=actor_id
    )
    return {"entries": rows, "total": total, "limit": limit, "offset": offset}
