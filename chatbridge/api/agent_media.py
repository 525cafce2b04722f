"""``POST /api/agent/media``: an agent uploads a file to the bridge's media store, then sends it.

The body is the file itself (``Content-Type``: its type; the name in ``?name=``), sent with
``Authorization: Bearer <agent token>`` and ``X-Agent-Id`` (the token of ``CHATBRIDGE_AGENT_
TOKENS`` or of the agent's route). The file is checked as every stored file is
(``media.limits``: size caps, type, magic bytes) and answered with
``{media_id, url: "media:<id>", mime, kind, size, name}``. The agent then puts
``{"url": "media:<id>"}`` in a reply's ``attachments``: the channel sends the stored bytes
with the provider's own call (WhatsApp: WAHA ``file.data``, Evolution base64, Meta's media
upload), so no gateway has to reach a URL of the bridge.

Refusals: 401 missing or wrong token (it spends the caller's failed-authentication budget),
413 over the size cap, 422 a type not allowed or bytes that are not that type, 429 rate
limited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel

from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.bodies import declared_file_type, file_upload_limit
from chatbridge.api.errors import error_responses
from chatbridge.errors import BadInput
from chatbridge.media.files import put
from chatbridge.pipeline.bridge import Bridge
from chatbridge.ratelimit import client_ip

router = APIRouter(tags=["agents"])

AGENT_MEDIA_PATH = "/api/agent/media"


class UploadedMedia(BaseModel):
    media_id: str
    url: str  # "media:<id>": what a reply's attachment names
    mime: str | None
    kind: str
    size: int | None
    name: str | None


def body_limit(max_body_bytes: int, media_max_bytes: int) -> dict[str, int]:
    """``BodySizeLimit``'s limit for this path: a whole file up to the media cap."""
    return file_upload_limit(AGENT_MEDIA_PATH, max_body_bytes, media_max_bytes)


@router.post(
    AGENT_MEDIA_PATH,
    status_code=201,
    response_model=UploadedMedia,
    summary="An agent uploads a file to send as an attachment",
    responses=error_responses(
        {
            401: "missing or bad agent token",
            413: "over the media size cap",
            422: "type not allowed, or bytes that are not that type",
            429: "rate limited, or too many wrong tokens from this address",
        }
    ),
)
async def upload_agent_media(
    request: Request,
    name: Annotated[str | None, Query(max_length=255)] = None,
    authorization: Annotated[str | None, Header(max_length=2000)] = None,
    agent_id: Annotated[str | None, Header(alias="X-Agent-Id", max_length=200)] = None,
    content_type: Annotated[str | None, Header(max_length=200)] = None,
) -> UploadedMedia:
    bridge: Bridge = request.app.state.bridge
    token = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
    if not agent_id or not token:
        raise BadInput(
            "unauthorized",
            "send Authorization: Bearer <agent token> and X-Agent-Id: <agent id>",
            status_code=401,
        )
    failures = auth_failures(request)
    ip = client_ip(request)
    await failures.guard("pull", ip)
    if not await bridge.verify_agent_token(agent_id, token):
        await failures.failed("pull", ip)
        raise BadInput("unauthorized", "bad agent id or token", status_code=401)
    await bridge.rate_limiter.hit("agent", bridge.settings.rate_limit_agent, agent_id)
    mime = declared_file_type(content_type)
    data = await request.body()
    row = await put(bridge.store, bridge.settings, data, mime, name)
    return UploadedMedia(
        media_id=row.id,
        url=f"media:{row.id}",
        mime=row.mime,
        kind=row.kind,
        size=row.size,
        name=row.name,
    )
