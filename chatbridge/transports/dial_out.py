"""ws-dial-out: the bridge keeps a WebSocket open to an agent's ``websocket_url``.

``dial_out_forever`` owns the connect / reconnect cycle for one agent and nothing else: each
open connection is handed to a ``serve`` coroutine (the ``AgentHub``) that runs the protocol on
it and returns when the connection ends. Between connections it waits with exponential backoff
and full jitter, reset after a connection that stayed up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from chatbridge.config import Settings
from chatbridge.protocol import reconnect_delay

log = logging.getLogger("chatbridge.transports")

OPEN_TIMEOUT = 10.0
"""Seconds allowed for TCP + TLS + the WebSocket handshake."""


def close_timeout(settings: Settings) -> float:
    """How long a closing handshake may take before the TCP connection is dropped."""
    return min(5.0, settings.heartbeat_interval)


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
