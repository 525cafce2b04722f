"""A scripted HTTP origin for the channel tests: a real TCP server on 127.0.0.1 that records
each request's raw bytes and answers with the raw bytes a test scripts."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"id": 17}\n'

# An answer: raw bytes to write, None to write nothing (the request hangs), or a callable
# that gets the connection's writer to misbehave as it likes.
Answer = bytes | None | Callable[[asyncio.StreamWriter], None]


class Origin:
    """Counts connections, records requests, answers each with ``answer(index)``."""

    def __init__(self, answer: Callable[[int], Answer] = lambda _: OK) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.arrived = asyncio.Event()  # set at every request
        self.connections = 0
        self.closed = 0
        self.url = ""
        self.tls: ssl.SSLContext | None = None
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Origin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        self._handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                self.arrived.set()
                answer = self.answer(len(self.requests) - 1)
                if callable(answer):
                    answer(writer)
                elif answer is not None:
                    writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()
