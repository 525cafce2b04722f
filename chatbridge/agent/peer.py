"""``Peer``: one open WebSocket between an agent and a bridge, whichever side dialed."""

from __future__ import annotations

import time
from contextlib import suppress

from websockets.asyncio.connection import Connection

from chatbridge.models import JsonObject
from chatbridge.protocol import dumps


class Peer:
    """A bridge connection as the agent sees it.

    ``dial_in`` tells whether the agent opened it (and so owns reconnecting); ``link_id`` is
    the name of the agent's connection it is (one per ``dial_in`` connection, kept across its
    reconnects; None for a connection the bridge dialed). ``send`` never
    raises: a failed send marks the peer closed and returns False, because an agent's answer
    that cannot go out now is kept and sent again later, never lost in an exception.
    """

    def __init__(
        self,
        ws: Connection,
        *,
        dial_in: bool,
        heartbeat_interval: float,
        link_id: str | None = None,
        bridge_version: str | None = None,
    ) -> None:
        self.ws = ws
        self.bridge_version = bridge_version
        """The revision the bridge's ``hello_ok`` named (protocol 1.3); None when the bridge
        dialed (no handshake) — it then takes whatever it does not know as ``unknown_type``."""
        self.dial_in = dial_in
        self.link_id = link_id
        self.heartbeat_interval = heartbeat_interval
        self.open = True
        self.last_rx = time.monotonic()
        self.closed_at: float | None = None

    async def send(self, frame: JsonObject) -> bool:
        """Send one frame; False if the connection is closed or the send failed."""
        if not self.open:
            return False
        try:
            await self.ws.send(dumps(frame))
        except Exception:
            self.mark_closed()
            return False
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection; the close handshake is bounded by the connection's timeout."""
        self.mark_closed()
        with suppress(Exception):
            await self.ws.close(code, reason)

    def mark_closed(self) -> None:
        """Remember that the connection is gone, and when."""
        if self.open:
            self.open = False
            self.closed_at = time.monotonic()
