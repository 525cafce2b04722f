"""Live events for web chat visitors: which sockets and long-polls wait on which session.

In-process publish/subscribe keyed by the session's ``uid`` (the conversation's channel key).
Nothing here is durable: every message is in the database first, and a subscriber that
missed an event catches up from the history (``resume`` / ``after``). ``news`` says "the
history of this conversation grew"; the other events (streamed chunks, typing, system
notices) are passed through as frames.

With several replicas a visitor's socket may be on another replica than the agent's turn:
``relay`` (set by the bridge when it has a cluster) passes every published frame on to the
other replicas, which publish it to their own listeners with ``relay=False``. ``resync``
tells every listener here to re-read its history, for when relayed frames may have been lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Frame = dict[str, Any]
NEWS: Frame = {"type": "_news"}


@dataclass(eq=False, slots=True)
class Subscriber:
    uid: str
    queue: asyncio.Queue[Frame] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    close: Callable[[int, str], Awaitable[None]] | None = None


class LiveHub:
    """Who is listening to which web chat session, in this process."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscriber]] = {}
        self._news: dict[str, asyncio.Event] = {}
        self._typing: set[str] = set()
        self.stopping = False
        self.relay: Callable[[str, Frame], None] | None = None

    def subscribe(
        self, uid: str, close: Callable[[int, str], Awaitable[None]] | None = None
    ) -> Subscriber:
        sub = Subscriber(uid, close=close)
        self._subs.setdefault(uid, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.uid)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.uid]

    def publish(self, uid: str, frame: Frame, *, relay: bool = True) -> int:
        """Queue ``frame`` for every subscriber of ``uid`` (and, unless ``relay`` is False,
        pass it to the other replicas); returns how many here got it."""
        if relay and self.relay is not None:
            self.relay(uid, frame)
        kind = frame.get("type")
        if kind == "typing":
            if frame.get("on"):
                self._typing.add(uid)
            else:
                self._typing.discard(uid)
        if kind in ("_news", "typing"):  # long-polls answer both
            event = self._news.pop(uid, None)
            if event is not None:
                event.set()
        n = 0
        for sub in list(self._subs.get(uid, ())):
            try:
                sub.queue.put_nowait(frame)
                n += 1
            except asyncio.QueueFull:  # a stuck socket: it will catch up from history
                pass
        return n

    def news(self, uid: str) -> None:
        self.publish(uid, NEWS)

    def news_event(self, uid: str) -> asyncio.Event:
        """An event set by the next ``news(uid)``. Take it *before* reading the history, then
        wait on it: news that lands in between is not missed (long-poll)."""
        event = self._news.get(uid)
        if event is None:
            event = self._news[uid] = asyncio.Event()
            if self.stopping:
                event.set()
        return event

    def resync(self) -> None:
        """Every socket and long-poll here re-reads its history (news may have been lost)."""
        for uid in set(self._subs) | set(self._news):
            self.publish(uid, NEWS, relay=False)

    def typing(self, uid: str) -> bool:
        """Whether the agent is working on a reply in session ``uid`` (for long-polls)."""
        return uid in self._typing

    async def stop(self) -> None:
        """Shutting down: end every long-poll now and close every socket (1012: restart)."""
        self.stopping = True
        for event in self._news.values():
            event.set()
        self._news.clear()
        await self.close_all(1012, "server restarting")

    def listeners(self, uid: str) -> int:
        return len(self._subs.get(uid, ()))

    async def close_all(
        self, code: int = 1012, reason: str = "server dropped the connection"
    ) -> int:
        """Close every live socket (tests; a graceful restart). Returns how many."""
        subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            if sub.close is not None:
                await sub.close(code, reason)
        return len(subs)
