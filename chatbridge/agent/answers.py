"""Turns answered whole: run the handler to the end, return every frame at once.

For a bridge that asks and waits for the response (http-webhook, ``chatbridge.agent.webhook``):
a streaming handler's chunks are collected and returned with ``agent_complete`` (carrying the
full text). Answers are kept (the last ``cache_size``), so the same turn asked again gets the
same frames without running the handler twice; turns are told apart by
``agent.identity.turn_key``, never by ``message_id`` alone. ``cancel`` marks a turn still
running cancelled (protocol 1.1); the caller cancels its task, and nothing is kept for it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator

from chatbridge.agent.frames import (
    call_handler,
    chunk_frame,
    complete_frame,
    failure_frame,
    metadata,
    reply_frame,
)
from chatbridge.agent.identity import TurnKey, turn_key
from chatbridge.agent.turn import Event, Handlers, Turn, TurnError
from chatbridge.models import JsonObject
from chatbridge.protocol import ConversationEvent, UserMessage

log = logging.getLogger("chatbridge.agent")


class WholeAnswers:
    """Answers turns whole for one agent and keeps the answers (see the module docstring).

    Args:
        agent_id: named in each answer's ``metadata``.
        handlers: the agent's handlers (read at each turn, so later registrations count).
        cache_size: how many answered turns are remembered.
    """

    def __init__(self, agent_id: str, handlers: Handlers, cache_size: int) -> None:
        self.agent_id = agent_id
        self.handlers = handlers
        self.cache_size = cache_size
        self._kept: OrderedDict[TurnKey, list[JsonObject]] = OrderedDict()
        self._live: dict[TurnKey, Turn] = {}  # turns whose handler runs now

    def cancel(self, message_id: str, conversation_id: str | None, reason: str) -> bool:
        """Mark the running turn ``message_id`` (of ``conversation_id``, when given) cancelled.
        Returns whether one matched."""
        found = False
        for (cid, mid, _), turn in self._live.items():
            if mid == message_id and conversation_id in (None, cid):
                turn.cancellation.set(reason)
                found = True
        return found

    async def answer(self, message: UserMessage, raw: JsonObject) -> list[JsonObject]:
        """Run one turn and return the frames that answer it: one ending frame, or a streaming
        handler's chunks then ``agent_complete`` (with the full text). Kept: the same turn
        again gets the same frames without running the handler twice. None (``[]``) for a
        turn the bridge cancelled meanwhile."""
        key = turn_key(message)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        turn = self._live[key] = Turn.from_message(message, raw)
        started = time.monotonic()
        handler = self.handlers.message
        frames: list[JsonObject]
        try:
            if handler is None:
                raise TurnError("no_handler", "this agent has no on_message handler")
            result = await call_handler(handler, turn)
            if isinstance(result, AsyncIterator):
                frames = []
                async for chunk in result:
                    frames.append(chunk_frame(turn, len(frames), chunk))
                whole = "".join(f["content"] for f in frames)
                frames.append(complete_frame(turn, metadata(self.agent_id, started), whole))
            else:
                frames = [reply_frame(turn, result, metadata(self.agent_id, started))]
        except Exception as exc:
            frames = [failure_frame(turn, exc)]
        finally:
            self._live.pop(key, None)
        if turn.cancelled:
            return []  # withdrawn by the bridge: nothing to answer, nothing to keep
        self._kept[key] = frames
        while len(self._kept) > self.cache_size:
            self._kept.popitem(last=False)
        return frames

    async def handle_event(self, message: ConversationEvent, raw: JsonObject) -> None:
        """Run the ``on_event`` handler where no connection can carry its answer back."""
        handler = self.handlers.event
        if handler is None:
            return
        event = Event.from_message(message, raw)
        try:
            result = await call_handler(handler, event)
        except Exception:
            log.exception("event handler failed on %s", event.event)
            return
        if isinstance(result, str) and result:
            log.warning(
                "event %s: an http-webhook agent cannot answer an event; text dropped",
                event.event,
            )
