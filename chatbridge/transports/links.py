"""``Link``: one open WebSocket to one agent, whatever library carries it, and its upkeep.

The hub runs every connection, dial-out or dial-in, as a ``Link``: ``send()`` one frame at a
time, ``close()`` once. ``heartbeat()`` pings a link every interval and drops it after
``DEAD_AFTER_INTERVALS`` silent ones; ``frame_too_large()`` decides whether an incoming frame
is over the size limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING

from chatbridge.models import JsonObject
from chatbridge.protocol import DEAD_AFTER_INTERVALS, dumps, utc_now_iso
from chatbridge.transports.log import log_event

if TYPE_CHECKING:
    from chatbridge.config import Settings


def close_timeout(settings: Settings) -> float:
    """How long a closing handshake may take before the TCP connection is dropped."""
    return min(5.0, settings.heartbeat_interval)


class LinkClosed(Exception):
    """The connection is gone; the frame was not sent."""


class Link:
    """One open WebSocket to one agent, whatever library carries it.

    ``link_id`` is the name a dial-in agent gave this connection in its ``hello``
    (``metadata.link_id``): the agent re-opening a connection under the same name replaces
    the old one. None for a dial-out link and for an agent that names none.
    """

    def __init__(
        self,
        agent_id: str,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        *,
        close_timeout: float,
        link_id: str | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.link_id = link_id
        self.closed = asyncio.Event()
        self.last_rx = time.monotonic()
        self._send = send
        self._close = close
        self._close_timeout = close_timeout
        self._close_started = False
        self._lock = asyncio.Lock()

    async def send(self, frame: JsonObject) -> None:
        """Send one frame.

        Raises:
            LinkClosed: the link is closed or the send failed (the link is then closed too).
        """
        if self.closed.is_set():
            raise LinkClosed
        text = dumps(frame)
        async with self._lock:
            try:
                await self._send(text)
            except Exception as exc:
                self.closed.set()
                raise LinkClosed from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (once; later calls return at once), bounded in time."""
        self.closed.set()
        if self._close_started:
            return
        self._close_started = True
        with suppress(Exception):
            async with asyncio.timeout(self._close_timeout):
                await self._close(code, reason)


def frame_too_large(data: str | bytes, limit: int) -> bool:
    """Whether a frame is over ``limit`` bytes (UTF-8 for text) without encoding small ones."""
    if len(data) > limit:
        return True
    if isinstance(data, str) and len(data) * 4 > limit:
        return len(data.encode("utf-8", "surrogatepass")) > limit
    return False


async def heartbeat(link: Link, agent_id: str, interval: float) -> None:
    """Ping ``link`` every ``interval`` seconds; close it (1011) when it stays silent too long.

    Silent too long is ``DEAD_AFTER_INTERVALS`` intervals without a frame from the agent.
    Returns once the link is closed, whoever closed it.
    """
    while not link.closed.is_set():
        await asyncio.sleep(interval)
        if time.monotonic() - link.last_rx > DEAD_AFTER_INTERVALS * interval:
            log_event(
                logging.WARNING,
                "no traffic for 3 heartbeats, dropping connection",
                agent_id,
            )
            await link.close(1011, "heartbeat timeout")
            return
        try:
            await link.send({"type": "ping", "timestamp": utc_now_iso()})
        except LinkClosed:
            return
