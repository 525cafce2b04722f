"""Fixtures for AgentHub tests (helpers live in ``hub_helpers``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, WebSocket
from websockets.asyncio.server import serve

from chatbridge.config import Settings
from chatbridge.metrics import Metrics
from chatbridge.transports.hub import AgentHub
from tests.transports.hub_helpers import FRAME_LIMIT, FakeAgent, Recorder, serve_app, verify_token


@pytest.fixture
def settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        heartbeat_interval=0.5,
        reconnect_initial_delay=0.02,
        reconnect_max_delay=0.1,
        ws_max_frame_bytes=FRAME_LIMIT,
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def hub(settings: Settings, metrics: Metrics, recorder: Recorder) -> AsyncIterator[AgentHub]:
    hub = AgentHub(
        settings,
        metrics,
        verify_token=verify_token,
        on_proactive=recorder.on_proactive,
        on_typing=recorder.on_typing,
        on_chunk=recorder.on_chunk,
        on_live=recorder.on_live,
        on_notice=recorder.on_notice,
    )
    await hub.start()
    yield hub
    await hub.stop()


@pytest.fixture
async def fake_agent() -> AsyncIterator[FakeAgent]:
    fake = FakeAgent()
    async with serve(fake.handler, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}"
        yield fake


@pytest.fixture
async def bridge_url(hub: AgentHub) -> AsyncIterator[str]:
    """``ws://…/api/ws/agent`` served by ``hub.handle_dial_in``."""
    app = FastAPI()

    @app.websocket("/api/ws/agent")
    async def agent_socket(websocket: WebSocket) -> None:
        await hub.handle_dial_in(websocket)

    async with serve_app(app) as port:
        yield f"ws://127.0.0.1:{port}/api/ws/agent"
        await hub.stop()  # close agent connections before the server waits for them
