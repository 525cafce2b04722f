"""An agent that speaks the protocol's raw frames, for the widget's envelope tests.

The bridge dials out to it (a real WebSocket on 127.0.0.1), as to any agent; each
``user_message`` runs the test's script with a ``ScriptedTurn``, which sends the agent → bridge
frames of protocol 1.3 as JSON objects (``status_update``, ``progress_update``,
``system_message``, ``file_complete``, ``agent_message`` with ``data``…). Raw frames, so the
test says exactly what went over the wire, and a frame the bridge refuses comes back as an
``error_message`` the test fails on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


@dataclass
class ScriptedTurn:
    """One ``user_message`` and a way to answer it frame by frame."""

    frame: Frame
    ws: ServerConnection

    @property
    def id(self) -> str:
        return str(self.frame["message_id"])

    @property
    def conversation_id(self) -> str:
        return str(self.frame["conversation_id"])

    @property
    def content(self) -> str:
        return str(self.frame.get("content") or "")

    @property
    def files(self) -> list[Frame]:
        return list(self.frame.get("files") or [])

    async def send(self, frame: Frame) -> None:
        """Send ``frame`` about this turn (its ``message_id`` and ``conversation_id`` unless
        the frame names its own)."""
        await self.ws.send(
            json.dumps({"message_id": self.id, "conversation_id": self.conversation_id, **frame})
        )

    async def status(self, content: str) -> None:
        await self.send({"type": "status_update", "content": content})

    async def progress(self, progress: float, content: str | None = None) -> None:
        frame: Frame = {"type": "progress_update", "progress": progress}
        if content is not None:
            frame["content"] = content
        await self.send(frame)

    async def notice(self, kind: str, content: str) -> None:
        """A ``system_message`` / ``warning_message`` into the conversation (not an answer)."""
        frame = {"type": f"{kind}_message", "content": content}
        await self.ws.send(json.dumps({"conversation_id": self.conversation_id, **frame}))

    async def file_event(self, kind: str, file_id: str, **fields: Any) -> None:
        """``file_processing`` / ``file_complete`` / ``file_error`` about ``file_id``."""
        await self.send({"type": f"file_{kind}", "file_id": file_id, **fields})

    async def reply(self, content: str, **fields: Any) -> None:
        """The turn's answer: an ``agent_message`` (``data=…``, ``attachments=…``)."""
        await self.send({"type": "agent_message", "content": content, **fields})


Script = Callable[[ScriptedTurn], Coroutine[Any, Any, None]]


@dataclass
class ScriptedAgent:
    """Runs ``script`` for every turn; keeps what the bridge sent and refused."""

    script: Script
    turns: list[Frame] = field(default_factory=list)
    errors: list[Frame] = field(default_factory=list)
    events: list[Frame] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        """Listen on 127.0.0.1 while the block runs; yields the port."""
        async with serve(self._connection, "127.0.0.1", 0) as server:
            port = int(next(iter(server.sockets)).getsockname()[1])
            try:
                yield port
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(task.exception())  # type: ignore[arg-type]

    async def _connection(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "user_message":
                    self.turns.append(frame)
                    task = asyncio.create_task(self.script(ScriptedTurn(frame, ws)))
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
                elif kind == "error_message":
                    self.errors.append(frame)
                elif kind not in ("pong", "hello_ok"):
                    self.events.append(frame)
