"""A Chatwoot imitation: sends realistic webhooks and answers the REST calls the bridge makes.

Used by the tests, by ``chatbridge demo`` and by ``chatbridge mock-chatwoot``. Payload shapes
are Chatwoot's own (see ``chatwoot_payloads``); webhooks carry
``X-Chatwoot-Delivery`` and, when a secret is set, ``X-Chatwoot-Timestamp``/
``X-Chatwoot-Signature``.

This module is the HTTP app (``create_mock_chatwoot``, ``run_mock_chatwoot``); the state and
behaviour behind it, with ``Faults`` and ``TriggerRequest``, are in ``chatwoot_state``.

Endpoints:

* ``POST /mock/webhook/register``, ``GET /mock/webhook/history``,
  ``POST /mock/webhook/trigger/{event}`` — drive webhooks at the bridge. Passing an earlier
  ``delivery_id`` re-sends that delivery's payload unchanged (a duplicate delivery).
* ``/api/v1/accounts/{account}/conversations/{id}`` (``GET``), ``…/messages`` (``GET``,
  ``POST``), ``…/toggle_status``, ``…/toggle_typing_status`` — the REST API.
* ``GET /mock/api/received_messages`` (private notes included, ``private: true``),
  ``GET /mock/api/notes`` (those alone), ``GET /mock/api/actions``, ``GET /mock/conversations``,
  ``POST /mock/reset``, ``GET|POST /mock/faults`` — inspection and fault injection.

All state lives on one ``MockChatwoot`` (``app.state.mock``). Handlers change it only in
synchronous sections (no ``await`` between read and write), so concurrent requests on the
event loop never see it half-updated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from chatbridge.testing import chatwoot_payloads as payloads
from chatbridge.testing.chatwoot_payloads import MockConversation
from chatbridge.testing.chatwoot_state import (
    SIMULATED_EVENTS,
    Faults,
    MockChatwoot,
    TriggerRequest,
)

__all__ = [
    "SIMULATED_EVENTS",
    "Faults",
    "MockChatwoot",
    "TriggerRequest",
    "create_mock_chatwoot",
    "run_mock_chatwoot",
]

_STATUSES = ("open", "resolved", "pending", "snoozed")


class WebhookRegistration(BaseModel):
    url: str
    secret: str | None = None


class _Refusal(Exception):
    """Raised by the API gate to answer with ``response`` instead of running the handler."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# --------------------------------------------------------------------------------------
# HTTP app
# --------------------------------------------------------------------------------------


def _mock(request: Request) -> MockChatwoot:
    mock: MockChatwoot = request.app.state.mock
    return mock


async def _api_gate(request: Request, account_id: int) -> None:
    """Faults first (Chatwoot's rate limiter runs before auth), then token, then account."""
    mock = _mock(request)
    status, delay = mock._fault()
    if delay:
        await asyncio.sleep(delay)
    if status == 429:
        raise _Refusal(PlainTextResponse("Retry later\n", status_code=429))
    if status == 422:
        raise _Refusal(_error(422, "Too many messages"))
    if status is not None:
        raise _Refusal(_error(status, "injected fault" if status >= 500 else "Request refused"))
    if not mock.check_token(request.headers.get("api_access_token")):
        raise _Refusal(_error(401, "Invalid Access Token"))
    if account_id != mock.account_id:
        raise _Refusal(_error(404, "Resource could not be found"))


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _Refusal(_error(400, "body must be JSON")) from exc
    if not isinstance(body, dict):
        raise _Refusal(_error(400, "body must be a JSON object"))
    return body


def _conversation_or_404(mock: MockChatwoot, display_id: int) -> MockConversation:
    conv = mock.conversations.get(display_id)
    if conv is None:
        raise _Refusal(_error(404, "Resource could not be found"))
    return conv


def _api_router() -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/accounts/{account_id}/conversations/{conversation_id}",
        dependencies=[Depends(_api_gate)],
        tags=["chatwoot api"],
    )

    @router.get("")
    async def get_conversation(request: Request, conversation_id: int) -> dict[str, Any]:
        mock = _mock(request)
        return payloads.api_conversation(_conversation_or_404(mock, conversation_id), mock.account)

    @router.post("/messages")
    async def create_message(request: Request, conversation_id: int) -> dict[str, Any]:
        mock = _mock(request)
        body = await _json_body(request)
        conv = _conversation_or_404(mock, conversation_id)
        if body.get("message_type", "outgoing") not in ("outgoing", "incoming", "template"):
            raise _Refusal(_error(422, "message_type is not valid"))
        before, after = mock.creation_delays()
        mock.creating += 1
        try:
            if before:
                await asyncio.sleep(before)  # a slow Chatwoot: the caller may give up first
            created = mock.post_message(conv, body)
            if after:
                await asyncio.sleep(after)  # stored and echoed already; only the answer is late
        finally:
            mock.creating -= 1
        return created

    @router.get("/messages")
    async def list_messages(
        request: Request, conversation_id: int, before: int | None = None, after: int | None = None
    ) -> dict[str, Any]:
        mock = _mock(request)
        if not mock.allow_list_messages:
            raise _Refusal(_error(401, "You are not authorized to do this action"))
        conv = _conversation_or_404(mock, conversation_id)
        messages = conv.messages
        if after is not None:
            selected = [m for m in messages if m["id"] > after][:100]
        else:
            selected = [m for m in messages if before is None or m["id"] < before][-20:]
        return {"meta": {}, "payload": [payloads.push_message(m) for m in selected]}

    @router.post("/toggle_status")
    async def toggle_status(request: Request, conversation_id: int) -> dict[str, Any]:
        mock = _mock(request)
        body = await _json_body(request)
        conv = _conversation_or_404(mock, conversation_id)
        status = body.get("status")
        if status is not None and status not in _STATUSES:
            raise _Refusal(_error(422, f"'{status}' is not a valid status"))
        return mock.toggle_status(conv, status)

    @router.post("/toggle_typing_status")
    async def toggle_typing(request: Request, conversation_id: int) -> Response:
        mock = _mock(request)
        body = await _json_body(request)
        conv = _conversation_or_404(mock, conversation_id)
        state = body.get("typing_status")
        if state not in ("on", "off"):
            raise _Refusal(_error(422, "typing_status must be on or off"))
        conv.typing = state
        mock.record_action(f"typing_{state}", conv.display_id, dict(body))
        return Response(status_code=200)

    return router


def _mock_router() -> APIRouter:
    router = APIRouter(prefix="/mock", tags=["mock controls"])

    @router.post("/webhook/register")
    async def register(request: Request, registration: WebhookRegistration) -> dict[str, Any]:
        mock = _mock(request)
        mock.webhook_url = registration.url
        if "secret" in registration.model_fields_set:
            mock.secret = registration.secret
        return {"url": mock.webhook_url, "signed": bool(mock.secret)}

    @router.get("/webhook/history")
    async def history(request: Request) -> list[dict[str, Any]]:
        return _mock(request).webhook_history

    @router.post("/webhook/trigger/{event}", response_model=None)
    async def trigger(
        request: Request, event: str, spec: TriggerRequest | None = None
    ) -> dict[str, Any] | JSONResponse:
        mock = _mock(request)
        if event not in SIMULATED_EVENTS:
            return _error(404, f"the mock cannot simulate {event!r}: {sorted(SIMULATED_EVENTS)}")
        if mock.webhook_url is None:
            return _error(409, "no webhook registered; POST /mock/webhook/register first")
        return await mock.trigger(event, spec)

    @router.get("/api/received_messages")
    async def received(request: Request) -> list[dict[str, Any]]:
        return _mock(request).received_messages

    @router.get("/api/notes")
    async def notes(request: Request) -> list[dict[str, Any]]:
        return _mock(request).notes()

    @router.get("/api/actions")
    async def actions(request: Request) -> list[dict[str, Any]]:
        return _mock(request).actions

    @router.get("/conversations")
    async def conversations(request: Request) -> list[dict[str, Any]]:
        mock = _mock(request)
        return [payloads.conversation_data(c, mock.account) for c in mock.conversations.values()]

    @router.post("/reset")
    async def reset(request: Request) -> dict[str, bool]:
        _mock(request).reset()
        return {"ok": True}

    @router.get("/faults")
    async def get_faults(request: Request) -> Faults:
        return _mock(request).faults

    @router.post("/faults")
    async def set_faults(request: Request, faults: Faults) -> Faults:
        mock = _mock(request)
        mock.set_faults(faults)
        return mock.faults

    return router


def create_mock_chatwoot(
    *,
    webhook_url: str | None = None,
    secret: str | None = None,
    api_token: str | None = None,
    account_id: int = 1,
    emit_status_webhooks: bool = True,
    emit_message_webhooks: bool = True,
    allow_list_messages: bool | None = None,
    faults: Faults | None = None,
    webhook_timeout: float = 5.0,
    token_kind: Literal["bot", "user"] = "bot",
) -> FastAPI:
    """Build the mock Chatwoot app; its state is ``app.state.mock`` (a ``MockChatwoot``).

    Args:
        webhook_url: where webhooks go (also settable with ``POST /mock/webhook/register``).
        secret: sign webhooks with it, as Chatwoot 4.12+ does.
        api_token: when set, API calls need ``api_access_token`` equal to it (else 401).
        account_id: the only account the API answers for.
        emit_status_webhooks: ``toggle_status`` fires ``conversation_status_changed``.
        emit_message_webhooks: a message posted through the API fires ``message_created``
            (outgoing, from the bot — or the user, see ``token_kind`` — with the
            ``source_id`` the poster sent), as real Chatwoot does.
        allow_list_messages: whether listing messages is allowed; by default only with a
            user token (``token_kind="user"``): a bot token gets 401, as in Chatwoot.
        token_kind: whose token the bridge holds, ``"bot"`` (default) or ``"user"``.
        faults: faults injected from the start.
        webhook_timeout: seconds to wait for the webhook target (Chatwoot's default is 5).
    """
    mock = MockChatwoot(
        webhook_url=webhook_url,
        secret=secret,
        api_token=api_token,
        account_id=account_id,
        emit_status_webhooks=emit_status_webhooks,
        emit_message_webhooks=emit_message_webhooks,
        allow_list_messages=(
            token_kind == "user" if allow_list_messages is None else allow_list_messages
        ),
        faults=faults,
        webhook_timeout=webhook_timeout,
        token_kind=token_kind,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await mock.aclose()

    app = FastAPI(title="Mock Chatwoot", lifespan=lifespan)
    app.state.mock = mock

    async def refusal(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refusal)
        return exc.response

    app.add_exception_handler(_Refusal, refusal)
    app.include_router(_api_router())
    app.include_router(_mock_router())
    return app


async def run_mock_chatwoot(
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    webhook_url: str | None = None,
    secret: str | None = None,
    api_token: str | None = None,
    account_id: int = 1,
    emit_status_webhooks: bool = True,
    emit_message_webhooks: bool = True,
    allow_list_messages: bool | None = None,
    faults: Faults | None = None,
    webhook_timeout: float = 5.0,
    token_kind: Literal["bot", "user"] = "bot",
    log_level: str = "info",
) -> None:
    """Run the mock Chatwoot until interrupted (for ``chatbridge mock-chatwoot``).

    To run it inside tests or the demo, serve ``create_mock_chatwoot(...)`` with
    ``chatbridge.testing.servers.serve_app`` instead.
    """
    app = create_mock_chatwoot(
        webhook_url=webhook_url,
        secret=secret,
        api_token=api_token,
        account_id=account_id,
        emit_status_webhooks=emit_status_webhooks,
        emit_message_webhooks=emit_message_webhooks,
        allow_list_messages=allow_list_messages,
        faults=faults,
        webhook_timeout=webhook_timeout,
        token_kind=token_kind,
    )
    # log_config=None: the CLI has configured logging already; uvicorn must not redo it.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=None)
    await uvicorn.Server(config).serve()
