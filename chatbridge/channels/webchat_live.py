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
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Frame = dict[str, Any]
NEWS: Frame = {"type": "_news"}
MAX_PENDING = 1000
"""Frames a subscriber may have waiting; past that it is stuck, and catches up from history."""


class Subscriber:
    """One live socket's frames, waiting for its writer. A deque and, while the writer waits,
    one future: a socket that stays open for hours should cost the collector few objects
    (an ``asyncio.Queue`` is six: three deques, an event and its deque)."""

    __slots__ = ("_waiter", "close", "closed", "frames", "uid")

    def __init__(
        self, uid: str, close: Callable[[int, str], Awaitable[None]] | None = None
    ) -> None:
        self.uid = uid
        self.close = close
        self.frames: deque[Frame] = deque()
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, frame: Frame) -> bool:
        """Queue ``frame``; False when the subscriber is stuck (``MAX_PENDING`` waiting)."""
        if len(self.frames) >= MAX_PENDING:
            return False
        self.frames.append(frame)
        self._wake()
        return True

    async def get(self) -> Frame | None:
        """The next frame, waiting for one; None once the subscriber is closed."""
        while not self.frames:
            if self.closed:
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self.frames.popleft()

    def end(self) -> None:
        """No more frames: a waiting ``get`` returns None (after what is queued)."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


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
        sub.end()
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
            if sub.put(frame):  # else a stuck socket: it will catch up from history
                n += 1
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
