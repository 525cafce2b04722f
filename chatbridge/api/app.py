"""The app factory: ``create_app(settings)`` builds the Bridge and mounts every router.

The FastAPI lifespan opens the store and starts the workers; shutdown stops claiming, drains
in-flight work for ``drain_seconds`` and then cancels (see ``Bridge.stop``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, WebSocket

from chatbridge import __version__
from chatbridge.api import management, webhooks
from chatbridge.api.errors import BodySizeLimit, document_errors, install_error_handlers
from chatbridge.config import Settings
from chatbridge.pipeline.bridge import Bridge


def create_app(settings: Settings | None = None, *, bridge: Bridge | None = None) -> FastAPI:
    """Build the ASGI app. Pass ``bridge`` to share one with a test; otherwise one is made."""
    settings = settings or (bridge.settings if bridge else Settings())
    the_bridge = bridge or Bridge(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_bridge.start()
        try:
            yield
        finally:
            await the_bridge.stop()

    app = FastAPI(
        title="Chatbridge",
        version=__version__,
        description="Connects customer channels to AI agents: durable, exactly once, in order.",
        lifespan=lifespan,
    )
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.bridge = the_bridge
    app.state.metrics = the_bridge.metrics
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(webhooks.router)
    app.include_router(management.router)

    @app.get("/api/protocol/schema.json", tags=["agents"], summary="Agent protocol v1 JSON Schema")
    async def protocol_schema() -> dict[str, Any]:
        from chatbridge.protocol import protocol_json_schema

        return protocol_json_schema()

    @app.websocket("/api/ws/agent")
    async def agent_dial_in(websocket: WebSocket) -> None:
        """Agents dial in here (token per agent; see the protocol's ``hello``)."""
        await the_bridge.hub.handle_dial_in(websocket)

    return app
