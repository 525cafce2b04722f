"""Fixtures for agent SDK tests (helpers live in ``sdk_helpers``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import serve

from tests.agent.sdk_helpers import FakeBridge


@pytest.fixture
async def fake_bridge() -> AsyncIterator[FakeBridge]:
    bridge = FakeBridge()
    async with serve(bridge.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        bridge.url = f"ws://127.0.0.1:{port}/api/ws/agent"
        yield bridge
