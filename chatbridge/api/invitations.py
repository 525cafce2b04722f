"""The invitation page: ``GET /console/invitation?token=…`` asks an invited operator for a
password; ``POST /console/invitation`` (a form, or JSON ``{"token", "password"}``) sets it
and sends them to the login page. An unknown, used or expired token is a 404."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from chatbridge.api.console import PAGE_HEADERS, _page, _same_origin
from chatbridge.api.operators import Invitation, accept_invitation
from chatbridge.errors import BadInput
from chatbridge.operators.passwords import token_hash

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/invitation")
async def invitation_page(request: Request, token: str = "") -> Response:
    bridge = request.app.state.bridge
    op = await bridge.store.operator_by_invite(token_hash(token)) if token else None
    if op is None:
        page = _page(
            "invitation.html",
            greeting="This invitation is unknown, used or expired.",
            token="",
            error="Ask an admin for a new one.",
        )
        page.status_code = 404
        return page
    return _page("invitation.html", greeting=f"Welcome, {op.name}", token=token, error="")


@router.post("/invitation")
async def invitation_accept(request: Request) -> Response:
    if not _same_origin(request):
        raise BadInput("forbidden", "accept the invitation on the console's page", status_code=403)
    raw = await request.body()
    as_json = request.headers.get("content-type", "").startswith("application/json")
    if as_json:
        try:
            sent = json.loads(raw or b"{}")
        except ValueError:
            raise BadInput("invalid_json", "the body must be JSON") from None
    else:
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        sent = {k: v[0] for k, v in form.items() if v}
    try:
        body = Invitation.model_validate(sent)
    except ValidationError:
        raise BadInput(
            "invalid_request", 'send {"token": "…", "password": "…"}', status_code=422
        ) from None
    try:
        op = await accept_invitation(request, body)
    except BadInput as exc:
        if as_json:
            raise
        page = _page("invitation.html", greeting="", token=body.token, error=exc.message)
        page.status_code = exc.status_code
        return page
    if as_json:
        return JSONResponse({"operator": op.body()}, headers=PAGE_HEADERS)
    return RedirectResponse("/console/login", status_code=303, headers=PAGE_HEADERS)
