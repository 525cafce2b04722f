"""Turns answered whole: run the handler to the end, return every frame at once.

For a bridge that asks and waits for the response (http-webhook, ``chatbridge.agent.webhook``):
a streaming handler's chunks are collected and returned with ``agent_complete`` (carrying the
full text). Answers are kept (the last ``cache_size``), so the same turn asked again gets the
same frames without running the handler twice; turns are told apart by
``agent.identity.turn_key``, never by ``message_id`` alone. ``cancel`` marks a turn still
running cancelled (protocol 1.1); the caller cancels its task, and nothing is kept for it.

What the handler sends while it works (protocol 1.3: ``turn.status(…)``, ``turn.notice(…)``,
…) goes into the answer ahead of the frames that end the turn, in the order it was sent. It is
not kept: a repeat of the turn gets the answer alone (a notice must not be stored twice).
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
from chatbridge.agent.turn import Event, Handlers, Notice, Session, Turn, TurnError
from chatbridge.models import JsonObject
from chatbridge.protocol import (
    LIVE_TYPES,
    NOTICE_TYPES,
    ConversationEvent,
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    SystemMessage,
    UserMessage,
    WarningMessage,
)

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
        frames: list[JsonObject] = []

        async def collect(frame: JsonObject) -> bool:
            frames.append(frame)
            return True

        turn = self._live[key] = Turn.from_message(message, raw, live=collect)
        started = time.monotonic()
        handler = self.handlers.message
        try:
            if handler is None:
                raise TurnError("no_handler", "this agent has no on_message handler")
            result = await call_handler(handler, turn)
            if isinstance(result, AsyncIterator):
                parts: list[str] = []
                async for chunk in result:
                    frame = chunk_frame(turn, len(parts), chunk)
                    parts.append(frame["content"])
                    frames.append(frame)
                meta = metadata(self.agent_id, started)
                frames.append(complete_frame(turn, meta, "".join(parts)))
            else:
                frames.append(reply_frame(turn, result, metadata(self.agent_id, started)))
        except Exception as exc:
            frames.append(failure_frame(turn, exc))
        finally:
            self._live.pop(key, None)
        if turn.cancelled:
            return []  # withdrawn by the bridge: nothing to answer, nothing to keep
        self._kept[key] = [f for f in frames if f["type"] not in LIVE_TYPES | NOTICE_TYPES]
        while len(self._kept) > self.cache_size:
            self._kept.popitem(last=False)
        return frames

    async def handle_frame(
        self,
        message: SessionCreated | SessionUpdated | SessionExpired | SystemMessage | WarningMessage,
        raw: JsonObject,
    ) -> None:
        """Run the ``on_session`` / ``on_notice`` handler for a frame (protocol 1.3)."""
        if isinstance(message, SystemMessage | WarningMessage):
            notice_handler = self.handlers.notice
            if notice_handler is None:
                return
            call = call_handler(notice_handler, Notice.from_message(message, raw))
        else:
            session_handler = self.handlers.session
            if session_handler is None:
                return
            call = call_handler(session_handler, Session.from_message(message, raw))
        try:
            await call
        except Exception:
            log.exception("%s handler failed", message.type)

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
