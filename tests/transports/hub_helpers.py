"""Helpers for AgentHub tests: recording callbacks, turn requests, a scriptable fake agent (a
real WebSocket server on 127.0.0.1 the hub dials), and uvicorn serving for dial-in."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from websockets.asyncio.server import ServerConnection

from chatbridge.metrics import Metrics
from chatbridge.protocol import UserMessage
from chatbridge.transports.base import TurnRequest

TOKENS = {"agent1": "secret", "agent2": "other-secret"}
FRAME_LIMIT = 4096


@dataclass
class Recorder:
    """Collects what the hub hands to its callbacks."""

    proactive: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    typing: list[tuple[str, str, bool]] = field(default_factory=list)
    chunks: list[tuple[str, str, int, str]] = field(default_factory=list)
    live: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def on_proactive(self, agent_id: str, frame: dict[str, Any]) -> None:
        self.proactive.append((agent_id, frame))

    async def on_typing(self, agent_id: str, conversation_id: str, on: bool) -> None:
        self.typing.append((agent_id, conversation_id, on))

    async def on_chunk(self, turn_key: str, conversation_id: str, index: int, text: str) -> None:
        self.chunks.append((turn_key, conversation_id, index, text))

    async def on_live(self, agent_id: str, frame: dict[str, Any]) -> None:
        self.live.append((agent_id, frame))

    async def on_notice(self, agent_id: str, frame: dict[str, Any]) -> None:
        self.notices.append((agent_id, frame))


async def verify_token(agent_id: str, token: str) -> bool:
    return TOKENS.get(agent_id) == token


def turn_request(
    agent_id: str,
    key: str = "t_1",
    *,
    conversation_id: str = "c_1",
    content: str = "hello",
    seq: int = 1,
    timeout: float = 5.0,
) -> TurnRequest:
    """A turn as the pipeline builds it."""
    frame = UserMessage(
        message_id=key, seq=seq, conversation_id=conversation_id, content=content, channel="api"
    ).model_dump(mode="json", exclude_none=True)
    return TurnRequest(
        turn_key=key,
        seq=seq,
        agent_id=agent_id,
        conversation_id=conversation_id,
        frame=frame,
        deadline=time.time() + timeout,
    )


def dropped(metrics: Metrics, agent_id: str) -> float:
    value = metrics.registry.get_sample_value(
        "chatbridge_agent_replies_dropped_total", {"agent_id": agent_id}
    )
    return value or 0.0


def withheld(metrics: Metrics, agent_id: str, kind: str) -> float:
    value = metrics.registry.get_sample_value(
        "chatbridge_agent_frames_withheld_total", {"agent_id": agent_id, "type": kind}
    )
    return value or 0.0


def connected_gauge(metrics: Metrics, agent_id: str) -> float | None:
    return metrics.registry.get_sample_value("chatbridge_agent_connected", {"agent_id": agent_id})


# --------------------------------------------------------------------------------------------
# a scriptable fake agent the hub dials


class FakeAgent:
    """A WebSocket server whose connections the test drives by hand."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    async def next_connection(self, timeout: float = 5.0) -> ServerConnection:
        async with asyncio.timeout(timeout):
            return await self.connections.get()


async def recv_frame(
    ws: Any, *, timeout: float = 5.0, skip: tuple[str, ...] = ("ping", "pong")
) -> dict[str, Any]:
    """The next frame whose type is not in ``skip`` (heartbeats by default)."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame.get("type") not in skip:
                return frame


async def round_trip(ws: Any) -> None:
    """Ping the hub and wait for its pong: every frame sent before has been handled."""
    await ws.send(json.dumps({"type": "ping"}))
    await recv_frame(ws, skip=("ping",))


# --------------------------------------------------------------------------------------------
# a real bridge endpoint for dial-in


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port for the duration of the block.

    The socket listens before uvicorn starts, so clients may connect at once: their
    connections wait in the backlog instead of being refused.
    """
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()
