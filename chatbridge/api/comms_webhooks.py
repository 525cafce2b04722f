"""WhatsApp gateways in: ``POST /api/comms/webhooks/{provider}`` (mock, waha, evolution, meta),
Meta's ``GET`` verification handshake, a provider check, and the mock provider's simulator.

A webhook runs the inbound steps every webhook channel shares (``chatbridge.api.inbound``:
source allowlist, Content-Type, the channel's parse, accept, metrics): it is verified on its
raw bytes, parsed, stored and acknowledged in one go; replies go
out later through the provider's API. WAHA retries even 4xx answers, so a refusal is only
for what a retry cannot fix by itself being wrong (signature, JSON, unknown inbox). A
duplicate (the provider's message id was seen) answers 200 with ``"status": "duplicate"``.

Only the configured provider's webhook is open: a gateway that is not in use gets 404, so an
unconfigured (unauthenticated) provider path cannot be used to inject messages. No provider is
configured by default (WhatsApp is off); the mock one, which checks no credentials, must be
chosen explicitly (``CHATBRIDGE_COMMS_PROVIDER=mock``, as the demo does).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from chatbridge.api import inbound
from chatbridge.api.errors import error_responses
from chatbridge.api.management import admin
from chatbridge.api.shapes import webhook_answers
from chatbridge.channels.base import InboundRequest
from chatbridge.channels.whatsapp import ROUTE_NAMES, WhatsAppChannel, require_provider
from chatbridge.channels.whatsapp.base import ProviderCheck
from chatbridge.channels.whatsapp.meta import verify_subscription
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge

log = logging.getLogger("chatbridge.api")
router = APIRouter(prefix="/api/comms", tags=["comms"])

ProviderName = Literal["mock", "waha", "evolution", "meta"]
_ADMIN_ERRORS = error_responses(
    {401: "missing or wrong admin key", 403: "no admin key set and the client is not local"}
)


def _channel(bridge: Bridge) -> WhatsAppChannel:
    channel = bridge.channels.get("whatsapp")
    if not isinstance(channel, WhatsAppChannel):
        raise BadInput("not_found", "the WhatsApp channel is not enabled", status_code=404)
    return channel


def _settings(channel: WhatsAppChannel) -> CommsSettings:
    return channel.settings_source()


@router.post(
    "/webhooks/{provider}",
    summary="WhatsApp gateway webhook (WAHA, Evolution API, Meta Cloud API, mock)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The gateway's webhook event, exactly as it sends it",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    responses={
        **webhook_answers(sync=False),
        **error_responses(
            {
                400: "malformed JSON or payload",
                401: "missing or bad signature / secret header / JWT",
                403: "the client is outside CHATBRIDGE_WHATSAPP_ALLOWED_NETWORKS",
                404: "WhatsApp is off (no provider configured), this provider is not the "
                "configured one, or no route for the inbox",
                413: "body too large",
                415: "the body is not declared as JSON",
                422: "unknown provider",
            }
        ),
    },
)
async def provider_webhook(request: Request, provider: ProviderName) -> Response:
    # The source allowlist first, then a provider not in use is refused before its body is
    # read, as ever (the channel's parse checks it again); then the inbound steps every
    # webhook channel shares. A gateway reads no reply from the answer.
    hook = inbound.InboundHook.of(request.app, "whatsapp")
    if hook.allowlist is not None:
        hook.allowlist.check(request.scope)
    require_provider(_settings(_channel(hook.bridge)), ROUTE_NAMES[provider])
    return await inbound.receive(request, "whatsapp", {"provider": provider}, wait=False)


@router.get(
    "/webhooks/meta",
    summary="Meta's webhook verification handshake",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "the challenge, as text", "content": {"text/plain": {}}},
        **error_responses({403: "wrong or missing verify token"}),
    },
)
async def meta_verification(
    request: Request,
    mode: str | None = Query(default=None, alias="hub.mode", max_length=100),
    token: str | None = Query(default=None, alias="hub.verify_token", max_length=1000),
    challenge: str | None = Query(default=None, alias="hub.challenge", max_length=1000),
) -> PlainTextResponse:
    channel = _channel(request.app.state.bridge)
    answer = verify_subscription(_settings(channel), mode, token, challenge)
    if answer is None:
        raise BadInput(
            "forbidden",
            "verification refused: hub.mode must be 'subscribe' and hub.verify_token must "
            "equal the configured meta_verify_token",
            status_code=403,
        )
    return PlainTextResponse(answer)


@router.post(
    "/provider/test",
    summary="Check the configured WhatsApp provider's connectivity and credentials",
    dependencies=admin,
    responses=_ADMIN_ERRORS,
)
async def provider_test(request: Request) -> dict[str, Any]:
    """``ok`` with the provider's details, or ``problems`` saying in plain words what is
    wrong (unreachable, key refused, session/instance missing or not connected); ``warnings``
    for what works but is unsafe (webhooks not authenticated)."""
    channel = _channel(request.app.state.bridge)
    if _settings(channel).provider == "none":
        check = ProviderCheck("none", ok=False)
        check.problems.append(
            "no WhatsApp provider is configured: WhatsApp is off (choose one in the settings)"
        )
        return check.body()
    return (await channel.check_provider()).body()


class MockMedia(BaseModel):
    url: str = Field(max_length=2000)
    mimetype: str | None = Field(default=None, max_length=200)
    filename: str | None = Field(default=None, max_length=300)


class MockInbound(BaseModel):
    """A simulated WhatsApp message for the mock provider."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=100,
        description="the customer's phone (+15550001111) or JID",
    )
    name: str | None = Field(default=None, max_length=300)
    text: str = Field(default="", max_length=65536)
    id: str | None = Field(default=None, min_length=1, max_length=200)
    fromMe: bool = False
    instance: str = Field(default="mock", min_length=1, max_length=100, pattern=r"^[^:]+$")
    participant: str | None = Field(default=None, max_length=100)
    media: MockMedia | None = None


@router.post(
    "/mock/inbound",
    summary="Simulate a customer's WhatsApp message on the mock provider",
    dependencies=admin,
    responses={
        **_ADMIN_ERRORS,
        **error_responses(
            {400: "invalid message", 404: "the mock provider is not chosen, or no route"}
        ),
    },
)
async def mock_inbound(request: Request, message: MockInbound) -> dict[str, Any]:
    bridge: Bridge = request.app.state.bridge
    channel = _channel(bridge)
    require_provider(_settings(channel), "mock")
    body = json.dumps(message.model_dump(by_alias=True, exclude_none=True)).encode()
    inbound.check_storable_json(body)
    parsed = await channel.parse(InboundRequest(body, path={"provider": "mock"}))
    hook = inbound.InboundHook.of(request.app, "whatsapp")
    return inbound.results_body(await inbound.accept_events(hook, parsed))


@router.get(
    "/mock/outbox",
    summary="What the mock WhatsApp provider has sent (newest last)",
    dependencies=admin,
    responses=_ADMIN_ERRORS,
)
async def mock_outbox(
    request: Request, limit: int = Query(default=100, ge=1, le=500)
) -> dict[str, Any]:
    channel = _channel(request.app.state.bridge)
    items = list(channel.mock_outbox.items)[-limit:]
    return {"items": items}
