"""ws-dial-in: an agent opens a WebSocket to ``GET /api/ws/agent`` and says ``hello``.

The pieces here know Starlette's ``WebSocket`` and the handshake: ``handshake()`` accepts the
upgrade, reads ``hello`` and checks the agent's token, and ``refuse()`` answers a refused agent.
Once the agent is known (``AgentHub.handle_dial_in``), its ``DialInTransport.serve()`` answers
``hello_ok`` (with the negotiated revision and features, protocol 1.3) and runs the protocol on
the connection as a link (``ws.LinkedTransport``).

Wrong tokens spend the caller's failed-authentication budget (an ``AuthBudget``); an address
that has spent it gets its upgrade refused with HTTP 429 and ``Retry-After`` before any
WebSocket is opened, whatever token it would have sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Literal, Protocol

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from chatbridge.protocol import (
    PROTOCOL,
    Hello,
    ProtocolError,
    dumps,
    negotiate,
    parse_agent_frame,
)
from chatbridge.transports.base import Capabilities
from chatbridge.transports.links import Link, LinkClosed, close_timeout
from chatbridge.transports.log import log_event
from chatbridge.transports.registry import spec
from chatbridge.transports.ws import LinkedTransport

HELLO_TIMEOUT = 10.0
"""Seconds an agent has, after the upgrade, to send its ``hello``."""
LINK_ID_MAX = 100
"""Longest ``metadata.link_id`` taken from a ``hello``; a longer one is ignored."""


class PeerGone(Exception):
    """The agent disconnected before the handshake finished."""


class AuthBudget(Protocol):
    """Failed-authentication budgets per client address (``chatbridge.api.auth_limits``)."""

    async def retry_after(self, credential: Literal["dial_in"], address: str) -> int | None:
        """Seconds until ``address`` may try again; None if it may now."""

    async def failed(self, credential: Literal["dial_in"], address: str) -> None:
        """Count one wrong token from ``address``."""


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class PendingGate(Protocol):
    """Counts sockets that are open but not yet past their ``hello``, up to a limit."""

    def enter(self) -> bool: ...

    def leave(self) -> None: ...


async def receive_hello(websocket: WebSocket, *, timeout: float, max_bytes: int) -> Hello:
    """Wait for the first frame and read it as ``hello``.

    Raises:
        ProtocolError: ``bad_hello`` when it is late, not JSON, too big or not a ``hello``.
        PeerGone: the agent went away first.
    """
    try:
        async with asyncio.timeout(timeout):
            message = await websocket.receive()
    except TimeoutError:
        raise ProtocolError("bad_hello", f"no hello within {timeout:g} s") from None
    except (WebSocketDisconnect, RuntimeError) as exc:
        raise PeerGone from exc
    if message["type"] == "websocket.disconnect":
        raise PeerGone
    data: str | bytes | None = message.get("text")
    if data is None:
        data = message.get("bytes") or b""
    if len(data) > max_bytes:
        raise ProtocolError("bad_hello", "hello frame too large")
    try:
        frame = parse_agent_frame(data)
    except ProtocolError as exc:
        raise ProtocolError("bad_hello", f"first frame must be hello: {exc.message}") from exc
    if not isinstance(frame, Hello):
        raise ProtocolError("bad_hello", f"first frame must be hello, not {frame.type}")
    return frame


async def handshake(
    websocket: WebSocket,
    *,
    max_bytes: int,
    verify_token: Callable[[str, str], Awaitable[bool]],
    failures: AuthBudget | None = None,
    pending: PendingGate | None = None,
) -> Hello | None:
    """Accept the upgrade, read the agent's ``hello`` and check its token.

    The token comes from ``hello`` or from the ``Authorization: Bearer`` header of the upgrade.
    With ``failures``, a wrong token is counted against the caller's address, and an address
    over its budget is turned away before the upgrade (``deny``).

    Returns:
        The ``hello`` of an agent whose token ``verify_token`` accepts; None when the agent
        went away first or was refused (it got ``hello_error`` and close code 1008, or 429).
    """
    address = websocket.client.host if websocket.client else "unknown"
    if failures is not None:
        wait = await failures.retry_after("dial_in", address)
        if wait is not None:
            log_event(logging.WARNING, "dial-in refused", "?", reason="too many wrong tokens")
            await deny(websocket, wait)
            return None
    await websocket.accept()
    if pending is not None and not pending.enter():
        # Anyone may open a socket here: those not past their hello are capped.
        await websocket.close(1013, "too many connections being set up; try again")
        return None
    header_token = bearer_token(websocket.headers)
    try:
        hello = await receive_hello(websocket, timeout=HELLO_TIMEOUT, max_bytes=max_bytes)
    except PeerGone:
        return None
    except ProtocolError as exc:
        await refuse(websocket, "bad_hello", exc.message)
        return None
    finally:
        if pending is not None:
            pending.leave()
    agent_id = hello.agent_id
    if not await authorised(verify_token, hello, hello.token or header_token):
        log_event(logging.WARNING, "dial-in refused", agent_id)
        if failures is not None:
            await failures.failed("dial_in", address)
        await refuse(websocket, "unauthorized", "unknown agent or bad token")
        return None
    return hello


def link_id(hello: Hello) -> str | None:
    """The name the agent gave this connection (``hello`` ``metadata.link_id``), if any.

    An agent that keeps several connections (to several replicas behind a load balancer)
    names each; when it re-opens one, the bridge closes the old connection of that name
    wherever it still looks open. Without a name, a new connection to the same replica
    replaces the agent's older unnamed one there.
    """
    value = (hello.metadata or {}).get("link_id")
    if isinstance(value, str) and 0 < len(value) <= LINK_ID_MAX:
        return value
    return None


async def authorised(
    verify_token: Callable[[str, str], Awaitable[bool]], hello: Hello, token: str | None
) -> bool:
    """Whether ``verify_token`` accepts ``token`` for the agent; False when it raises, too."""
    if not token:
        return False
    try:
        return bool(await verify_token(hello.agent_id, token))
    except Exception:
        log_event(logging.ERROR, "token check failed", hello.agent_id, exc_info=True)
        return False


async def deny(websocket: WebSocket, retry_after: int) -> None:
    """Turn the upgrade down with 429 and ``Retry-After`` (the app's error body); a server
    without the denial-response extension answers 403 instead."""
    body = {
        "error": {
            "code": "rate_limited",
            "message": f"too many failed authentications; retry in {retry_after}s",
        }
    }
    response = JSONResponse(body, status_code=429, headers={"Retry-After": str(retry_after)})
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(1008, "too many failed authentications")


async def refuse(websocket: WebSocket, code: str, message: str) -> None:
    """Send ``hello_error`` with ``code`` and close with 1008; the agent may be gone already."""
    with suppress(Exception):
        await websocket.send_text(
            dumps({"type": "hello_error", "error_code": code, "message": message})
        )
    with suppress(Exception):
        await websocket.close(1008, code)


async def frames(websocket: WebSocket) -> AsyncIterator[str | bytes]:
    """The agent's frames as they arrive, until it disconnects."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            yield text
        else:
            yield message.get("bytes") or b""


class DialInTransport(LinkedTransport):
    """An agent that connects to the bridge (``GET /api/ws/agent``), perhaps several times.

    Its ``features`` are the ones negotiated with its latest ``hello`` (protocol 1.3): what it
    announced in ``features`` or ``capabilities`` that the bridge knows. Before any ``hello``
    it has none, whatever its config says: the agent speaks for itself.
    """

    spec = spec("ws-dial-in")
    capabilities = Capabilities()
    _negotiated: frozenset[str] = frozenset()

    @property
    def features(self) -> frozenset[str]:
        return self._negotiated

    async def serve(self, websocket: WebSocket, hello: Hello) -> None:
        """Answer ``hello_ok`` on an accepted connection (``handshake()``), then run the
        protocol on it until it ends."""
        settings = self.context.settings
        link = Link(
            self.agent_id,
            websocket.send_text,
            lambda code, reason: websocket.close(code, reason),
            close_timeout=close_timeout(settings),
            link_id=link_id(hello),
        )
        version, features = negotiate(hello.version, [*hello.features, *hello.capabilities])
        try:
            await link.send(
                {
                    "type": "hello_ok",
                    "agent_id": self.agent_id,
                    "protocol": PROTOCOL,
                    "heartbeat_interval": settings.heartbeat_interval,
                    "version": version,
                    "features": sorted(features),
                }
            )
        except LinkClosed:
            return
        self._negotiated = features
        log_event(
            logging.INFO,
            "agent dialed in",
            self.agent_id,
            resume_from=hello.resume_from,
            version=version,
            features=",".join(sorted(features)),
        )
        await self.serve_link(link, frames(websocket), hello.resume_from)
