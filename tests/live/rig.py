"""A scripted agent for the live-status tests: a real WebSocket server the bridge dials out
to, where each ``user_message`` runs the test's ``script(turn)``. The script sends raw
protocol 1.3 frames (``turn.send({...})``), so the test says exactly what crossed the wire;
``turn.gate(name)`` holds it until the test opens that gate (no sleeps)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


@dataclass
class Gates:
    """Named events a script waits on and the test opens."""

    _events: dict[str, asyncio.Event] = field(default_factory=dict)

    def __getitem__(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    def open(self, name: str) -> None:
        self[name].set()


@dataclass
class Turn:
    frame: Frame
    ws: ServerConnection
    gates: Gates

    @property
    def key(self) -> str:
        return str(self.frame["message_id"])

    @property
    def content(self) -> str:
        return str(self.frame.get("content") or "")

    async def send(self, frame: Frame) -> None:
        """A frame about this turn (``message_id`` set unless the frame names its own)."""
        await self.ws.send(json.dumps({"message_id": self.key, **frame}))

    async def say(self, frame: Frame) -> None:
        """A frame outside the turn: the conversation's id, no ``message_id``."""
        await self.ws.send(json.dumps({"conversation_id": self.frame["conversation_id"], **frame}))

    async def gate(self, name: str, timeout: float = 20.0) -> None:
        await asyncio.wait_for(self.gates[name].wait(), timeout)


Script = Callable[[Turn], Awaitable[None]]


@dataclass
class ScriptedAgent:
    port: int
    gates: Gates
    turns: list[Turn]
    errors: list[Frame]  # error_message frames the bridge answered with


@asynccontextmanager
async def scripted_agent(script: Script) -> AsyncIterator[ScriptedAgent]:
    """Serve the agent on 127.0.0.1 while the block runs."""
    gates = Gates()
    turns: list[Turn] = []
    errors: list[Frame] = []
    tasks: set[asyncio.Task[None]] = set()

    async def handler(ws: ServerConnection) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "error_message":
                    errors.append(frame)
                elif kind == "user_message":
                    turn = Turn(frame, ws, gates)
                    turns.append(turn)
                    task = asyncio.create_task(script(turn))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass

    async with serve(handler, "127.0.0.1", 0) as server:
        port = int(next(iter(server.sockets)).getsockname()[1])
        try:
            yield ScriptedAgent(port, gates, turns, errors)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
