"""A small HTTP/1.1 client for one origin: how ``ChatwootAdapter`` reaches Chatwoot's API.

Every delivery is one API call, so the client's own CPU is paid per message. aiohttp spends
about 0.14 ms of CPU on one keep-alive POST on loopback (request and response objects,
multidicts, payload registry, timers, stream readers); this client spends about 0.03 ms
for the same bytes on the wire: the request is one pre-assembled ``bytes`` written in one
call, and the response is parsed by ``httptools`` (llhttp, the parser uvicorn uses) straight
into a ``Response``.

What it does:

* keep-alive connections to one ``http://`` or ``https://`` origin (TLS verified against
  the system's CA store, as aiohttp does by default), at most ``limit`` open at once; a
  connection idle for ``keepalive`` seconds or more is closed instead of reused;
* one total ``timeout`` per request, covering the wait for a free connection, connecting,
  sending and the whole response;
* responses framed by ``Content-Length``, by chunked encoding, or by the server closing the
  connection; interim ``1xx`` responses are skipped.

What it does not do: redirects (a ``3xx`` is returned like any other status), proxies,
compression (it asks for ``identity``), pipelining, request bodies other than JSON bytes.

Errors: ``TimeoutError`` when the timeout runs out (``ConnectTimeout`` if that was before the
request was written: the origin cannot have it); ``OSError`` (``ConnectionError``,
``ssl.SSLError``, refused, reset) when the connection fails before a full response;
``BadResponse``, also a ``ConnectionError``, when the bytes are not an HTTP/1.x response.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from typing import cast

import httptools
from yarl import URL

__all__ = ["BadResponse", "Http1Pool", "Response"]


class ConnectTimeout(TimeoutError):
    """The timeout ran out before the request was written (waiting for a free connection, or
    connecting): the origin cannot have it. A plain ``TimeoutError`` means it ran out while
    waiting for the response, when the origin may have the request."""


class BadResponse(ConnectionError):
    """The server's bytes are not an HTTP/1.x response (or came unasked); the connection is
    dropped."""


class Response:
    """Status, raw header lines and the body read in full."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), decoded as Latin-1; None if absent."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter of ``Content-Type``, if any."""
        content_type = self.header("Content-Type") or ""
        for param in content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                return value.strip().strip('"') or None
        return None


def _close_delimited(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a response's body runs until the connection closes (no length, not chunked)."""
    return not any(key.lower() in (b"content-length", b"transfer-encoding") for key, _ in headers)


class _Connection(asyncio.Protocol):
    """One socket: writes a request, turns the bytes that come back into a ``Response``."""

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._headers_done = False
        self.reusable = False
        """A full response came and the server keeps the connection open."""
        self.idle_since = 0.0

    # -- used by the pool --------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Response]:
        """Write ``request``; the future resolves with its response."""
        self.reusable = False
        self._waiter = waiter = self._pool.loop.create_future()
        self._transport.write(request)  # type: ignore[union-attr]  # set once connected
        return waiter

    def time_out(self) -> None:
        """The request's time is up: fail it and drop the connection."""
        self._fail(TimeoutError())

    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(BadResponse(f"not an HTTP/1.x response ({exc})"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._pool.forget(self)
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if (
            exc is None
            and self._headers_done
            and self._parser.get_status_code() >= 200
            and _close_delimited(self._headers)
        ):
            # The body of a response without a length ends where the connection does.
            waiter.set_result(
                Response(self._parser.get_status_code(), self._headers, b"".join(self._body))
            )
            return
        error = ConnectionError("the server closed the connection before a full response")
        if exc is not None:
            error.__cause__ = exc
        waiter.set_exception(error)

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            raise BadResponse("response to no request")  # surfaces as HttpParserCallbackError
        self._headers = []
        self._body = []
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # 1xx: the real response follows on the same connection
        waiter, self._waiter = self._waiter, None
        self.reusable = self._parser.should_keep_alive()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, self._headers, body))


def _header_block(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            raise ValueError(f"header {name!r} has a character HTTP does not allow there")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one origin, used from one event loop.

    Create it inside the running loop (its connections and waiters belong to that loop).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        limit: int = 100,
        keepalive: float = 5.0,
    ) -> None:
        """
        Args:
            base_url: ``http(s)://host[:port][/prefix]``; request paths are appended to it.
            headers: sent with every request, after ``Host``.
            timeout: total seconds per request (waiting for a connection, connecting,
                sending, reading the response).
            limit: connections open at most; further requests wait for one.
            keepalive: an idle connection is not reused after this many seconds.

        Raises:
            ValueError: ``base_url`` is not an absolute http(s) URL, or a header value
                contains CR, LF or NUL.
        """
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ValueError(f"not an http(s) URL with a host: {base_url!r}")
        self.loop = asyncio.get_running_loop()
        self._host = url.raw_host
        self._tls = url.scheme == "https"
        self._port: int = url.port or (443 if self._tls else 80)
        self._ssl: ssl.SSLContext | None = None
        self._prefix = url.raw_path.rstrip("/").encode("ascii")
        self._fixed = (
            _header_block({"Host": url.host_port_subcomponent or self._host})
            + _header_block(headers)
            + b"Accept-Encoding: identity\r\n"
        )
        self._timeout = timeout
        self._keepalive = keepalive
        self._limit = limit
        self._in_use = 0  # requests holding one of the ``limit`` slots
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._closed = False

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, timeout: float | None = None
    ) -> Response:
        """Send ``method path`` (``body``, if any, as ``application/json``); the response.

        ``timeout`` replaces the pool's for this request.

        Raises:
            TimeoutError, OSError, BadResponse: see the module docstring.
            RuntimeError: the pool is closed.
        """
        if self._closed:
            raise RuntimeError("the HTTP pool is closed")
        start = b"%s %s%s HTTP/1.1\r\n" % (method.encode("ascii"), self._prefix, path.encode())
        if body is None:
            request = b"".join((start, self._fixed, b"\r\n"))
        else:
            length = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            request = b"".join((start, self._fixed, length, body))
        loop = self.loop
        deadline = loop.time() + (self._timeout if timeout is None else timeout)
        if self._in_use < self._limit and not self._slot_waiters:
            self._in_use += 1  # the usual case: no await, no timer
        else:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wait_for_slot()
            except TimeoutError:
                raise ConnectTimeout("no free connection before the timeout") from None
        try:
            conn = self._idle_connection()
            if conn is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        conn = await self._connect()
                except TimeoutError:
                    raise ConnectTimeout("not connected before the timeout") from None
            waiter = conn.send(request)
            # One timer on the response instead of a cancel scope around the whole call.
            timer = loop.call_at(deadline, conn.time_out)
            try:
                response = await waiter
            except BaseException:
                conn.close()  # a request in flight: the connection cannot be reused
                raise
            finally:
                timer.cancel()
            self._release(conn)
            return response
        finally:
            self._release_slot()

    async def _wait_for_slot(self) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter  # ``_release_slot`` hands its slot over: ``_in_use`` stays
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot, then cancelled before taking it
            raise

    def _release_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled one (timed out) is skipped
                waiter.set_result(None)
                return
        self._in_use -= 1

    def _idle_connection(self) -> _Connection | None:
        idle = self._idle
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out
            if conn.usable() and now - conn.idle_since < self._keepalive:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        if self._tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, conn = await self.loop.create_connection(
            lambda: _Connection(self),
            self._host,
            self._port,
            ssl=self._ssl if self._tls else None,
        )
        self._open.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if not conn.reusable or self._closed or not conn.usable():
            conn.close()
            return
        now = self.loop.time()
        conn.idle_since = now
        idle = self._idle
        if idle and now - idle[0].idle_since >= self._keepalive:
            idle.pop(0).close()  # the longest idle one has timed out: drop it
        idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        """Called by a connection once its socket is gone."""
        self._open.discard(conn)

    async def aclose(self) -> None:
        """Close every connection; requests in flight fail, later ones raise RuntimeError."""
        self._closed = True
        self._idle.clear()
        for conn in list(self._open):
            conn.close()
