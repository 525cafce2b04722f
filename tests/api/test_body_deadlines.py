"""``BodySizeLimit``'s arrival deadline, watched by one timer for all the reads that wait.

The app here is a plain ASGI function and the client a queue of messages, so each test says
exactly when body bytes arrive. Ending at all is what a test checks (a read past its deadline
would otherwise wait forever); no test bounds how long it takes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from chatbridge.api.bodies import BodySizeLimit, BodyTimedOut
from tests.e2e.drain import within

TIMEOUT = 0.05


def scope() -> Scope:
    return {"type": "http", "method": "POST", "path": "/x", "headers": []}


class Client:
    """The client's side of one request: the messages it sends, and the answer it gets."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.answer: list[Message] = []

    def sends(self, body: bytes, more: bool) -> None:
        self.messages.put_nowait({"type": "http.request", "body": body, "more_body": more})

    async def receive(self) -> Message:
        return await self.messages.get()

    async def send(self, message: Message) -> None:
        self.answer.append(message)

    @property
    def status(self) -> int:
        return int(self.answer[0]["status"])

    @property
    def error(self) -> str:
        return str(json.loads(self.answer[1]["body"])["error"]["code"])


async def read_all(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body and answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def test_a_body_that_stops_arriving_gets_408() -> None:
    limit = BodySizeLimit(read_all, max_bytes=1000, timeout=TIMEOUT)
    client = Client()
    client.sends(b"{", more=True)  # and nothing more
    await within(30, limit(scope(), client.receive, client.send))
    assert (client.status, client.error) == (408, "request_timeout")


async def test_a_body_that_keeps_arriving_is_read_whole() -> None:
    """Reads that wait for their bytes, and get them, are left alone."""
    limit = BodySizeLimit(read_all, max_bytes=1000, timeout=3600)
    client = Client()
    request = asyncio.create_task(limit(scope(), client.receive, client.send))
    for chunk in (b"ab", b"cd"):
        await asyncio.sleep(0)  # let the app read and wait
        client.sends(chunk, more=True)
    client.sends(b"e", more=False)
    await within(30, request)
    assert (client.status, client.answer[1]["body"]) == (200, b"5")


async def test_a_read_after_the_timeout_does_not_wait() -> None:
    """An app that catches the timeout and reads again is told again at once."""
    seen: list[str] = []

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the "{"
        for _ in range(2):
            try:
                await receive()
            except BodyTimedOut:
                seen.append("timed out")
        raise BodyTimedOut

    limit = BodySizeLimit(stubborn, max_bytes=1000, timeout=TIMEOUT)
    client = Client()
    client.sends(b"{", more=True)
    request = asyncio.create_task(limit(scope(), client.receive, client.send))
    try:
        await within(30, asyncio.shield(request))  # shielded: a hang fails, not cancelled
    finally:
        request.cancel()
    assert seen == ["timed out", "timed out"]
    assert client.status == 408


async def test_another_cancellation_is_not_taken_for_a_timeout() -> None:
    """A request cancelled from outside while it reads (a shutdown) is cancelled, not 408."""
    started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await receive()

    limit = BodySizeLimit(app, max_bytes=1000, timeout=3600)
    client = Client()
    request = asyncio.create_task(limit(scope(), client.receive, client.send))
    await started.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert client.answer == []


def test_the_watch_works_in_each_event_loop_in_turn() -> None:
    """One app served by one loop after another (tests do): the timer left armed in a loop
    that has ended does not keep a later loop's bodies from timing out."""
    limit = BodySizeLimit(read_all, max_bytes=1000, timeout=TIMEOUT)

    async def one_request() -> Any:
        client = Client()
        client.sends(b"{", more=True)
        await within(30, limit(scope(), client.receive, client.send))
        # a read still waits as the loop ends, so the watch's timer is armed
        pending = Client()
        asyncio.get_running_loop().create_task(limit(scope(), pending.receive, pending.send))
        await asyncio.sleep(0)
        return client.status

    assert [asyncio.run(one_request()) for _ in range(2)] == [408, 408]
