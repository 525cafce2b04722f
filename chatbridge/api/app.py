"""The app factory: ``create_app(settings)`` builds the Bridge and mounts every router.

The FastAPI lifespan opens the store and starts the workers; shutdown stops claiming, drains
in-flight work for ``drain_seconds`` and then cancels (see ``Bridge.stop``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.telemetry import TelemetryConfig

from chatbridge import __version__, tracing
from chatbridge.api import (
    agent_media,
    agent_pull,
    api_docs,
    audit,
    console,
    inbound,
    invitations,
    management,
    media,
    operator_threads,
    operators,
    webchat,
    webchat_compat,
    webhooks,
)
from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.bodies import BodySizeLimit
from chatbridge.api.comms import body_limits
from chatbridge.api.comms import router as comms_router
from chatbridge.api.comms import uploads as comms_uploads
from chatbridge.api.comms_webhooks import router as comms_webhooks_router
from chatbridge.api.errors import document_errors, install_error_handlers
from chatbridge.api.exposure import chatwoot_configured, check_webhook_exposure, open_webhooks
from chatbridge.api.origins import ScopedCORS
from chatbridge.config import Settings
from chatbridge.pipeline.bridge import Bridge


def fastapi_telemetry() -> TelemetryConfig | None:
    """FastAPI's own OpenTelemetry switched off where nothing could receive it.

    FastAPI asks on every request whether a global OpenTelemetry provider has been set (it
    reads the environment and the providers: about 8 µs of a webhook's CPU). Only an
    OpenTelemetry SDK makes such a provider, and the bridge does not depend on one: without
    it installed the answer is always no, so it is not asked. With it, FastAPI's default.
    """
    try:
        sdk = importlib.util.find_spec("opentelemetry.sdk")
    except ModuleNotFoundError:  # not even the API
        sdk = None
    if sdk is not None:
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None, *, bridge: Bridge | None = None) -> FastAPI:
    """Build the ASGI app. Pass ``bridge`` to share one with a test; otherwise one is made."""
    settings = settings or (bridge.settings if bridge else Settings())
    the_bridge = bridge or Bridge(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        traced = tracing.configure_from_settings(settings.tracing)  # off by default
        await the_bridge.start()
        try:
            # after start: the WhatsApp settings stored through the API count too
            open_hooks = open_webhooks(
                settings,
                the_bridge.comms_settings(),
                chatwoot_in_use=chatwoot_configured(
                    settings, (r.channel for r in the_bridge.routes())
                ),
            )
            check_webhook_exposure(settings, open_hooks)
            yield
        finally:
            await the_bridge.stop()
            if traced:
                tracing.shutdown()  # exports the spans still buffered

    app = FastAPI(
        title="Chatbridge",
        version=__version__,
        description="Connects customer channels to AI agents: durable, exactly once, in order.",
        lifespan=lifespan,
        telemetry=fastapi_telemetry(),
        docs_url=None,  # /docs and /redoc come from api_docs: no CDN
        redoc_url=None,
    )
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.bridge = the_bridge
    app.state.metrics = the_bridge.metrics
    app.state.webchat_pending = webchat.PendingSockets(settings.webchat_max_pending_sockets)
    app.state.agent_pending = webchat.PendingSockets(settings.agent_max_pending_sockets)
    if the_bridge.cluster.distributed:
        from chatbridge.api.forward import serve_forwarded

        serve_forwarded(app, the_bridge.cluster)
    install_error_handlers(app)
    app.add_middleware(audit.AuditTrail)  # a row per successful admin action
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        path_limits={
            **body_limits(settings.max_body_bytes),
            **agent_media.body_limit(settings.max_body_bytes, settings.media_max_bytes),
            **comms_uploads.body_limit(settings.max_body_bytes, settings.media_max_bytes),
            **webchat.upload_body_limit(settings.max_body_bytes, settings.webchat_upload_max_bytes),
        },
        timeout=settings.body_timeout_seconds,
        discard_bytes=settings.body_discard_bytes,
    )
    app.add_middleware(
        ScopedCORS, prefixes=("/api/webchat/",), origins=settings.webchat_cors_origins
    )
    webhooks.add_routes(app)
    inbound.add_routes(app)
    app.include_router(comms_webhooks_router)
    app.include_router(management.router)
    app.include_router(webchat.router)
    app.include_router(agent_pull.router)
    app.include_router(agent_media.router)  # agents upload attachments (media out)
    app.include_router(webchat_compat.router)
    app.include_router(console.router)
    app.include_router(invitations.router)  # an invited operator chooses a password
    app.include_router(operators.router)  # operator accounts
    app.include_router(operator_threads.router)  # assignment, private notes, canned replies
    app.include_router(audit.router)  # the audit log of admin actions
    app.include_router(comms_router)
    app.include_router(media.router)  # public: signed media URLs
    api_docs.add_routes(app)  # /docs and /redoc, their assets in the package
    app.add_api_websocket_route("/api/ws/chat/{session_id}", webchat.webchat_socket)

    @app.get("/api/protocol/schema.json", tags=["agents"], summary="Agent protocol v1 JSON Schema")
    async def protocol_schema() -> dict[str, Any]:
        from chatbridge.protocol import protocol_json_schema

        return protocol_json_schema()

    @app.websocket("/api/ws/agent")
    async def agent_dial_in(websocket: WebSocket) -> None:
        """Agents dial in here (token per agent; see the protocol's ``hello``)."""
        await the_bridge.hub.handle_dial_in(
            websocket, auth_failures(websocket), pending=app.state.agent_pending
        )

    return app
