"""ws-dial-out: the bridge keeps a WebSocket open to an agent's ``websocket_url``.

``DialOutTransport`` is the agent's ``AgentTransport``: from ``start()`` it keeps a task
running ``dial_out_forever``, and runs the protocol on each open connection as a link
(``ws.LinkedTransport``). Every replica dials: the agent takes several connections, and the
replicas share its turns through the database.

``dial_out_forever`` owns the connect / reconnect cycle for one agent and nothing else: each
open connection is handed to a ``serve`` coroutine that runs the protocol on it and returns
when the connection ends. Between connections it waits with exponential backoff and full
jitter, reset after a connection that stayed up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from chatbridge.config import Settings
from chatbridge.models import JsonObject
from chatbridge.protocol import reconnect_delay
from chatbridge.transports.base import Capabilities
from chatbridge.transports.context import TransportContext
from chatbridge.transports.links import Link, close_timeout
from chatbridge.transports.registry import spec
from chatbridge.transports.ws import SHUTDOWN, LinkedTransport

__all__ = ["OPEN_TIMEOUT", "DialOutTransport", "close_timeout", "dial_out_forever"]

log = logging.getLogger("chatbridge.transports")

OPEN_TIMEOUT = 10.0
"""Seconds allowed for TCP + TLS + the WebSocket handshake."""


async def dial_out_forever(
    agent_id: str,
    url: str,
    settings: Settings,
    serve: Callable[[ClientConnection], Awaitable[None]],
) -> None:
    """Connect to ``url`` and keep reconnecting until cancelled.

    Args:
        agent_id: for log lines.
        url: the agent's ``ws://`` or ``wss://`` address.
        settings: frame limit, heartbeat and backoff settings.
        serve: runs the protocol on one open connection; returns when it is over.
    """
    attempt = 0
    while True:
        up_since: float | None = None
        try:
            async with connect(
                url,
                max_size=settings.ws_max_frame_bytes,
                open_timeout=OPEN_TIMEOUT,
                close_timeout=close_timeout(settings),
                user_agent_header="chatbridge",
                # No permessage-deflate: frames are small JSON, and compressing and
                # inflating every one cost more CPU (both ends) than it saved on the wire.
                compression=None,
            ) as ws:
                up_since = time.monotonic()
                log.info(
                    "connected to agent agent_id=%s url=%s",
                    agent_id,
                    url,
                    extra={"agent_id": agent_id},
                )
                await serve(ws)
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, WebSocketException) as exc:
            log.warning(
                "agent connection failed agent_id=%s url=%s error=%s: %s",
                agent_id,
                url,
                type(exc).__name__,
                exc,
                extra={"agent_id": agent_id},
            )
        except Exception:
            log.exception(
                "agent connection crashed agent_id=%s", agent_id, extra={"agent_id": agent_id}
            )
        if up_since is not None and time.monotonic() - up_since >= settings.heartbeat_interval:
            attempt = 0  # it stayed up: the next failure starts the backoff over
        delay = reconnect_delay(
            attempt, settings.reconnect_initial_delay, settings.reconnect_max_delay
        )
        attempt += 1
        log.debug(
            "reconnecting to agent agent_id=%s in %.2fs",
            agent_id,
            delay,
            extra={"agent_id": agent_id},
        )
        await asyncio.sleep(delay)


class DialOutTransport(LinkedTransport):
    """An agent the bridge dials at ``url`` (``ws://`` or ``wss://``)."""

    spec = spec("ws-dial-out")
    capabilities = Capabilities()

    def __init__(
        self,
        agent_id: str,
        url: str | None,
        options: JsonObject,
        context: TransportContext,
    ) -> None:
        super().__init__(agent_id, url, options, context)
        self._dialing: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.closed or (self._dialing is not None and not self._dialing.done()):
            return
        self._dialing = self._spawn(
            dial_out_forever(self.agent_id, self.url or "", self.context.settings, self._serve)
        )

    async def _serve(self, ws: ClientConnection) -> None:
        timeout = close_timeout(self.context.settings)
        link = Link(self.agent_id, ws.send, ws.close, close_timeout=timeout)
        await self.serve_link(link, ws, None)

    async def aclose(self, reason: str = SHUTDOWN) -> None:
        if self._dialing is not None:
            self._dialing.cancel()
            self._dialing = None
        await super().aclose(reason)
