"""The server's edge: how ``chatbridge serve`` (and the embedded test servers) configure uvicorn.

uvicorn bounds some things (``limit_concurrency``: 503 over N connections and tasks;
``timeout_keep_alive``: idle connections close) but its httptools protocol, the fast one,
accepts request heads of any size and waits forever for one to finish: a 64 MiB header is
parsed (quadratically, stalling every other request), and a connection that sends nothing, or
a head one byte at a time, holds its slot for good. ``EdgeHttpProtocol`` adds the two missing
limits:

* **head size**: request line plus headers over ``max_header_bytes`` → ``431`` and close;
  the head is fed to the parser in slices, so the check happens before a huge one is parsed;
* **head time**: a head not complete within ``header_timeout`` seconds of the connection (or
  of the request's first byte, on a kept-alive connection) → ``408`` and close.

Bodies are bounded in the app (``BodySizeLimit``: size, and the time a body may take to
arrive), so a client trickling a body cannot hold a worker either.
"""

from __future__ import annotations

import asyncio
import http
from typing import Any

from chatbridge.config import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - no httptools (e.g. PyPy): h11 and its own limit
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def _refusal(status: int, text: str) -> bytes:
    phrase = http.HTTPStatus(status).phrase
    body = text.encode("ascii")
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + body


if HttpToolsProtocol is not None:

    class EdgeHttpProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a bound on request-head size and time."""

        max_header_bytes = 64 * 1024
        header_timeout = 10.0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._head_timer: asyncio.TimerHandle | None = None
            self._slice = min(16 * 1024, self.max_header_bytes)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            while data:
                if not self._in_head:
                    super().data_received(data)
                    return
                piece, data = data[: self._slice], data[self._slice :]
                self._head_bytes += len(piece)
                super().data_received(piece)
                if self.transport.is_closing() or self.transport.get_protocol() is not self:
                    return  # refused by the parser, or upgraded to a WebSocket
                if self._in_head and self._head_bytes > self.max_header_bytes:
                    self._refuse(431, "Request header fields too large.")
                    return

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_timer is None:
                self._arm_head_timer()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._cancel_head_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True

        def _arm_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self._head_bytes:
                self._refuse(408, "Request header not received in time.")
            else:
                self.transport.close()  # never said anything: nobody to answer

        def _refuse(self, status: int, text: str) -> None:
            self._cancel_head_timer()
            self.logger.warning("refused a request from %s: %s", self.client, text)
            if not self.transport.is_closing():
                self.transport.write(_refusal(status, text))
                self.transport.close()


def http_protocol(settings: Settings) -> Any:
    """The HTTP protocol class for uvicorn, bound to ``settings``' head limits ("h11" with
    its own head-size limit when httptools is not installed)."""
    if HttpToolsProtocol is None:  # pragma: no cover
        return "h11"
    return type(
        "EdgeHttpProtocol",
        (EdgeHttpProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout": settings.header_timeout_seconds,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments for the bridge's limits and proxy trust."""
    return {
        "http": http_protocol(settings),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "proxy_headers": settings.proxy_headers,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "ws_max_size": settings.ws_max_frame_bytes + 1024,
    }
