"""``TcpBalancer``: an asyncio TCP proxy in front of a list of backends, ``round_robin`` or
``failover`` (the first backend that accepts). It pipes bytes both ways, so HTTP and
WebSocket go through it alike; a backend that refuses the connection is skipped."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from chatbridge.testing.servers import bind_socket

__all__ = ["Backend", "BalancerMode", "TcpBalancer"]

Backend = tuple[str, int]
BalancerMode = Literal["round_robin", "failover"]


@dataclass(eq=False)
class _Piped:
    """One client connection and the backend connection it is piped to."""

    backend: Backend
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # the client sent bytes that got no answer yet (HTTP/1.1 without pipelining: a request
    # in flight); used by ``when_down`` when the backend dies before answering
    awaiting: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpBalancer:
    """A TCP proxy on ``127.0.0.1`` in front of ``backends``.

    Each accepted connection is connected to one backend and the bytes are piped both ways
    (half-closes passed on), so HTTP, long-polls and WebSockets work through it unchanged.
    Which backend:

    - ``round_robin``: the next one in turn, skipping those that refuse the connection;
    - ``failover``: the first one, in list order, that accepts the connection (so clients
      land on the first backend while it is up, and on the next one while it is down).

    A connection no backend accepts is closed at once. When a backend dies, the connections
    piped to it are closed on the client side too (a SIGKILLed replica looks the same through
    the balancer as without it).

    Args:
        backends: ``(host, port)`` pairs; ``backends`` may be changed while running.
        mode: ``"round_robin"`` or ``"failover"``.
        host / port: where to listen (``port=0``: a free port, known after ``start()``).
        connect_timeout: seconds to wait for one backend before trying the next.
        when_down: an HTTP status to answer (after reading the request's head) when no
            backend accepts, instead of closing the connection — what a reverse proxy
            configured to answer e.g. 500 for an unreachable upstream does. Chatwoot's
            agent-bot job retries 429 and 500 (not a refused connection), so such a proxy
            keeps its webhooks coming while a single bridge restarts.
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        mode: BalancerMode = "round_robin",
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
        when_down: int | None = None,
    ) -> None:
        if mode not in ("round_robin", "failover"):
            raise ValueError(f"unknown balancer mode {mode!r}")
        self.backends: list[Backend] = list(backends)
        self.mode: BalancerMode = mode
        self.host = host
        self.connect_timeout = connect_timeout
        self.when_down = when_down
        self.connections: Counter[Backend] = Counter()
        """How many client connections each backend got, over the balancer's life."""
        self.refused = 0
        """Client connections closed because no backend accepted them."""
        self._port = port
        self._next = 0
        self._server: asyncio.Server | None = None
        self._open: set[_Piped] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` (use ``ws://`` with the same address for WebSockets)."""
        return f"http://{self.host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self._port}"

    def active(self) -> list[Backend]:
        """The backend of every connection open now (one entry per connection)."""
        return [p.backend for p in self._open]

    def drop(self, backend: Backend | None = None) -> int:
        """Abort the open connections (to ``backend`` only, if given): a network cut.
        Returns how many."""
        doomed = [p for p in self._open if backend is None or p.backend == backend]
        for piped in doomed:
            piped.abort()
        return len(doomed)

    def _candidates(self) -> list[Backend]:
        backends = list(self.backends)
        if self.mode == "failover" or not backends:
            return backends
        start = self._next % len(backends)
        self._next = start + 1
        return backends[start:] + backends[:start]

    async def start(self) -> None:
        """Listen; ``port`` is the bound port afterwards."""
        if self._server is not None:
            return
        sock = bind_socket(self.host, self._port)
        self._port = int(sock.getsockname()[1])
        self._server = await asyncio.start_server(self._accept, sock=sock)

    async def stop(self) -> None:
        """Stop listening and abort every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = [task for piped in self._open for task in piped.tasks]
        self.drop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _connect(self) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for backend in self._candidates():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*backend), self.connect_timeout
                )
            except (OSError, TimeoutError):
                continue
            return backend, reader, writer
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connected = await self._connect() if self._server is not None else None
        if connected is None:
            self.refused += 1
            if self.when_down is not None and self._server is not None:
                await self._answer_down(reader, writer, self.when_down)
            else:
                writer.transport.abort()
            return
        backend, up_reader, up_writer = connected
        if self._server is None:  # stopped while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.connections[backend] += 1
        piped = _Piped(backend, writer, up_writer)
        piped.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, piped, upward=True)),
            asyncio.create_task(self._pipe(up_reader, writer, piped, upward=False)),
        ]
        self._open.add(piped)
        try:
            await asyncio.gather(*piped.tasks, return_exceptions=True)
        finally:
            self._open.discard(piped)
            for w in (writer, up_writer):
                w.close()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    @staticmethod
    async def _answer_down(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> None:
        """Answer one request with ``status`` and close, as a proxy whose upstream is down."""
        with contextlib.suppress(Exception):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if 0 < length <= 10 * 1024 * 1024:
                await asyncio.wait_for(reader.readexactly(length), 5)
            body = b'{"error":"upstream_unavailable"}'
            writer.write(
                b"HTTP/1.1 %d Upstream Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(body), body)
            )
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        piped: _Piped,
        *,
        upward: bool,
    ) -> None:
        """Copy ``source`` to ``sink`` until EOF, then pass the EOF on (half-close). A broken
        side aborts both, so a reset reaches the other peer as a reset — except that with
        ``when_down``, a backend that dies while a request waits for its answer gets that
        status sent to the client instead (as a proxy answers for a dead upstream)."""
        try:
            while data := await source.read(65536):
                piped.awaiting = upward
                sink.write(data)
                await sink.drain()
            if not upward and piped.awaiting and self.when_down is not None:
                await self._answer_for_dead_upstream(piped)
                return
            if sink.can_write_eof() and not sink.is_closing():
                sink.write_eof()
        except (OSError, RuntimeError):  # ConnectionResetError, BrokenPipe, closed transport
            if self.when_down is not None and piped.awaiting:
                if not upward:
                    await self._answer_for_dead_upstream(piped)
                # upward: the backend died under a request; the other direction answers
                return
            piped.abort()

    async def _answer_for_dead_upstream(self, piped: _Piped) -> None:
        assert self.when_down is not None
        piped.upstream.transport.abort()
        body = b'{"error":"upstream_unavailable"}'
        with contextlib.suppress(Exception):
            piped.client.write(
                b"HTTP/1.1 %d Upstream Unavailable\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (self.when_down, len(body), body)
            )
            await piped.client.drain()
        piped.client.close()
        for task in piped.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def __aenter__(self) -> TcpBalancer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
