"""What an agent is doing right now, while a turn runs (protocol 1.3): the live frames the
web chat shows, the line the console's conversation view shows, and the one "working on it"
notice a slow turn sends where the channel has no live surface.

- ``widget_frame``: an agent's ``status_update`` / ``progress_update`` / ``file_*`` frame as
  the web chat widget's live frame (pure).
- ``LiveBoard``: the latest status per conversation, in memory: bounded, forgotten after
  ``LIVE_TTL`` seconds or when the turn ends. Never stored: a status is worth nothing once
  the reply is out, and a restart simply shows none.
- ``WorkingNotices``: a timer per running turn on a route with ``working_notice_after``; when
  it fires while the turn still runs, the notice is written fenced by the turn's lease, once
  (``Store.add_notice``), so it never comes twice and never after the reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("chatbridge.bridge")

LIVE_TTL = 120.0
"""Seconds a status stays on the console's conversation view without a newer one."""

MAX_CONVERSATIONS = 10_000
"""Conversations the board keeps a status for at most (the oldest go first)."""

STATUS_TYPES = frozenset(("status_update", "progress_update"))
FILE_TYPES = frozenset(("file_processing", "file_complete", "file_error"))


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


def widget_frame(frame: dict[str, Any], turn_id: str | None) -> dict[str, Any] | None:
    """The web chat's live frame for an agent's live ``frame`` (None: not a live frame).

    ``turn_id`` is the turn the frame is about (its ``message_id``), None outside a turn.
    """
    kind = frame.get("type")
    if kind == "status_update":
        content = _text(frame.get("content"), 200)
        return None if content is None else {"type": kind, "turn_id": turn_id, "content": content}
    if kind == "progress_update":
        progress = frame.get("progress")
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            return None
        out: dict[str, Any] = {
            "type": kind,
            "turn_id": turn_id,
            "progress": min(1.0, max(0.0, float(progress))),
        }
        content = _text(frame.get("content"), 200)
        if content is not None:
            out["content"] = content
        return out
    if kind in FILE_TYPES:
        file_id = frame.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            return None
        out = {"type": kind, "file_id": file_id}
        for key in ("content", "error"):
            value = _text(frame.get(key), 2000)
            if value is not None:
                out[key] = value
        return out
    return None


@dataclass(slots=True)
class LiveStatus:
    """A conversation's latest status: what the console's conversation view shows."""

    conversation_id: str
    agent_id: str
    turn_id: str | None
    content: str | None
    progress: float | None
    at: float  # time.time() of the latest frame

    def view(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "turn_id": self.turn_id,
            "content": self.content,
            "progress": self.progress,
            "updated_at": self.at,
        }


class LiveBoard:
    """The latest live status per conversation (see the module docstring).

    A progress frame without words keeps the line the status before it gave ("Searching
    your orders…" at 40 %); a frame of another turn starts afresh. Turns that ended are
    remembered for a while, so a status arriving late for one is not shown again.
    """

    def __init__(
        self,
        ttl: float = LIVE_TTL,
        limit: int = MAX_CONVERSATIONS,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.limit = limit
        self._now = now
        self._by_conv: OrderedDict[str, LiveStatus] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()

    def ended(self, turn_id: str | None) -> bool:
        return turn_id is not None and turn_id in self._ended

    def update(
        self, conversation_id: str, agent_id: str, frame: dict[str, Any]
    ) -> LiveStatus | None:
        """Record a widget ``frame`` (``widget_frame``'s) of ``conversation_id``; returns the
        conversation's status after it, None when the frame was ignored (its turn ended)."""
        turn_id = frame.get("turn_id")
        if self.ended(turn_id):
            return None
        kind = frame.get("type")
        old = self.get(conversation_id)
        if old is not None and old.turn_id != turn_id:
            old = None
        content = frame.get("content")
        if kind == "status_update":
            progress = old.progress if old else None
        elif kind == "progress_update":
            progress = frame.get("progress")
            content = content or (old.content if old else None)
        elif kind == "file_processing" and content:
            progress = old.progress if old else None
        else:
            return old
        status = LiveStatus(conversation_id, agent_id, turn_id, content, progress, self._now())
        self._by_conv[conversation_id] = status
        self._by_conv.move_to_end(conversation_id)
        while len(self._by_conv) > self.limit:
            self._by_conv.popitem(last=False)
        return status

    def get(self, conversation_id: str) -> LiveStatus | None:
        """The conversation's status, if one came within the last ``ttl`` seconds."""
        status = self._by_conv.get(conversation_id)
        if status is None:
            return None
        if self._now() - status.at > self.ttl:
            del self._by_conv[conversation_id]
            return None
        return status

    def end_turn(self, conversation_id: str, turn_id: str) -> LiveStatus | None:
        """The turn is over: forget its status; returns it if one was showing."""
        self._ended[turn_id] = None
        while len(self._ended) > self.limit:
            self._ended.popitem(last=False)
        status = self._by_conv.get(conversation_id)
        if status is None or status.turn_id not in (turn_id, None):
            return None
        del self._by_conv[conversation_id]
        return status

    def apply(self, payload: dict[str, Any]) -> None:
        """A change another replica made (``Bridge``'s cluster relay)."""
        conv = str(payload.get("conversation_id") or "")
        if not conv:
            return
        if payload.get("end"):
            self.end_turn(conv, str(payload["end"]))
        elif isinstance(payload.get("frame"), dict):
            self.update(conv, str(payload.get("agent_id") or ""), payload["frame"])


class WorkingNotices:
    """One timer per running turn that asks for a working notice (see the module docstring).

    ``write(turn_id)`` is called once the timer fires, as a task; it must be fenced by the
    turn's lease (``Store.add_notice`` with ``turn``). ``cancel`` when the turn ends: a write
    already under way finishes (its fence then refuses it if the reply came first).
    """

    def __init__(self, write: Callable[[int], Awaitable[None]]) -> None:
        self._write = write
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, turn_id: int, after: float) -> None:
        loop = asyncio.get_running_loop()
        self.cancel(turn_id)
        self._timers[turn_id] = loop.call_later(max(0.0, after), self._fire, turn_id)

    def _fire(self, turn_id: int) -> None:
        self._timers.pop(turn_id, None)
        task = asyncio.create_task(self._run(turn_id), name=f"working-notice-{turn_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, turn_id: int) -> None:
        try:
            await self._write(turn_id)
        except Exception as exc:  # a notice is not worth a retry: the reply is what matters
            log.warning("turn t_%s: working notice not written: %s", turn_id, exc)

    def cancel(self, turn_id: int) -> None:
        timer = self._timers.pop(turn_id, None)
        if timer is not None:
            timer.cancel()

    @property
    def waiting(self) -> int:
        """Timers not yet fired (tests, metrics)."""
        return len(self._timers)

    async def stop(self) -> None:
        """Cancel every timer and wait for the writes under way."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
