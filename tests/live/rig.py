"""The scripted agent of the live-status tests: the widget tests' raw-frame agent
(``tests/browser/envelope_agent.py``, a real WebSocket server the bridge dials out to) with
named gates, so a script holds a turn until the test opens its gate (no sleeps). The script
sends raw protocol 1.3 frames: the test says exactly what crossed the wire. A script that
failed fails the test when the agent stops."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.browser.envelope_agent import ScriptedAgent as EnvelopeAgent
from tests.browser.envelope_agent import ScriptedTurn

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
    """One ``user_message`` the script answers, frame by frame."""

    inner: ScriptedTurn
    gates: Gates

    @property
    def frame(self) -> Frame:
        return self.inner.frame

    @property
    def key(self) -> str:
        return self.inner.id

    @property
    def content(self) -> str:
        return self.inner.content

    async def send(self, frame: Frame) -> None:
        """A frame about this turn (its ``message_id`` and ``conversation_id``)."""
        await self.inner.send(frame)

    async def say(self, frame: Frame) -> None:
        """A frame outside the turn: the conversation's id, no ``message_id``."""
        await self.inner.ws.send(
            json.dumps({"conversation_id": self.inner.conversation_id, **frame})
        )

    async def ws_send(self, frame: Frame) -> None:
        """A frame exactly as given (nothing added)."""
        await self.inner.ws.send(json.dumps(frame))

    async def gate(self, name: str, timeout: float = 20.0) -> None:
        await asyncio.wait_for(self.gates[name].wait(), timeout)


Script = Callable[[Turn], Awaitable[None]]


@dataclass
class ScriptedAgent:
    port: int
    gates: Gates
    turns: list[Turn]
    envelope: EnvelopeAgent

    @property
    def errors(self) -> list[Frame]:
        """``error_message`` frames the bridge answered with."""
        return self.envelope.errors


@asynccontextmanager
async def scripted_agent(script: Script) -> AsyncIterator[ScriptedAgent]:
    """Serve the agent on 127.0.0.1 while the block runs."""
    gates = Gates()
    turns: list[Turn] = []

    async def run(inner: ScriptedTurn) -> None:
        turn = Turn(inner, gates)
        turns.append(turn)
        await script(turn)

    envelope = EnvelopeAgent(run)
    async with envelope.serving() as port:
        yield ScriptedAgent(port, gates, turns, envelope)
    assert envelope.failures == [], envelope.failures
