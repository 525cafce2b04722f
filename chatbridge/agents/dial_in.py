"""ws-dial-in: an agent opens a WebSocket to ``GET /api/ws/agent`` and says ``hello``.

The pieces here know Starlette's ``WebSocket`` and the handshake; the ``AgentHub`` runs the
protocol once the agent is known (``AgentHub.handle_dial_in``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from starlette.websockets import WebSocket, WebSocketDisconnect

from chatbridge.protocol import Hello, ProtocolError, parse_agent_frame

HELLO_TIMEOUT = 10.0
"""Seconds an agent has, after the upgrade, to send its ``hello``."""


class PeerGone(Exception):
    """The agent disconnected before the handshake finished."""


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def receive_hello(websocket: WebSocket, *, timeout: float, max_bytes: int) -> Hello:
    """Wait for the first frame and read it as ``hello``.

    Raises:
        ProtocolError: ``bad_hello`` when it is late, not JSON, too big or not a ``hello``.
        PeerGone: the agent went away first.
    """
    try:
        async with asyncio.timeout(timeout):
            message = await websocket.receive()
    except TimeoutError:
        raise ProtocolError("bad_hello", f"no hello within {timeout:g} s") from None
    except (WebSocketDisconnect, RuntimeError) as exc:
        raise PeerGone from exc
    if message["type"] == "websocket.disconnect":
        raise PeerGone
    data: str | bytes | None = message.get("text")
    if data is None:
        data = message.get("bytes") or b""
    if len(data) > max_bytes:
        raise ProtocolError("bad_hello", "hello frame too large")
    try:
        frame = parse_agent_frame(data)
    except ProtocolError as exc:
        raise ProtocolError("bad_hello", f"first frame must be hello: {exc.message}") from exc
    if not isinstance(frame, Hello):
        raise ProtocolError("bad_hello", f"first frame must be hello, not {frame.type}")
    return frame


async def frames(websocket: WebSocket) -> AsyncIterator[str | bytes]:
    """The agent's frames as they arrive, until it disconnects."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            yield text
        else:
            yield message.get("bytes") or b""
