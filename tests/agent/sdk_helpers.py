"""Helpers for agent SDK tests: a raw WebSocket "bridge" on either side of the connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import ServerConnection

HEARTBEATS = ("ping", "pong")


def user_message(
    key: str = "t_1", *, seq: int | None = 1, content: str = "hello", conversation_id: str = "c_1"
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "user_message",
        "protocol": "chatbridge/1",
        "message_id": key,
        "conversation_id": conversation_id,
        "content": content,
    }
    if seq is not None:
        frame["seq"] = seq
    return frame


async def send(ws: Any, frame: dict[str, Any] | str) -> None:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))


async def recv(
    ws: Any, *, skip: tuple[str, ...] = (*HEARTBEATS, "ack"), timeout: float = 5.0
) -> dict[str, Any]:
    """The next frame from the agent whose type is not in ``skip``."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame.get("type") not in skip:
                return frame


async def round_trip(ws: Any) -> None:
    """Ping the agent and wait for the pong: every frame sent before has been read."""
    await send(ws, {"type": "ping"})
    await recv(ws, skip=("ping", "ack"))


class FakeBridge:
    """A WebSocket server playing the bridge's ``/api/ws/agent``; the test drives each
    connection by hand."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    async def accept(
        self, *, heartbeat_interval: float = 5.0, timeout: float = 5.0
    ) -> tuple[ServerConnection, dict[str, Any]]:
        """The next connection and its hello, answered with hello_ok."""
        async with asyncio.timeout(timeout):
            ws = await self.connections.get()
        hello = await recv(ws)
        ok = {
            "type": "hello_ok",
            "agent_id": hello["agent_id"],
            "protocol": "chatbridge/1",
            "heartbeat_interval": heartbeat_interval,
        }
        await send(ws, ok)
        return ws, hello
