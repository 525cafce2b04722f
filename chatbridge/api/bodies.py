"""Request bodies: bounded in size and in the time they may take to arrive.

``BodySizeLimit`` refuses a body over its limit with ``413`` before it is read into memory,
and a body that does not arrive within ``timeout`` seconds with ``408``. Either refusal is
answered *on the wire*: a server that replies and closes while the client is still sending
makes the client's kernel see a reset, and the client reports a network error instead of the
413. So the rest of an oversized body is read and dropped, up to ``discard_bytes`` more; past
that bound the answer says ``Connection: close`` and the connection ends (the client may then
see a reset, but never hangs).

The arrival time is watched by one timer per ``BodySizeLimit``, not one per read: a read that
is still waiting when the timer looks past its body's deadline is cancelled. The timer looks
every ``timeout / 8`` seconds (at most every second) while any read waits, so a body times
out at most that much after its deadline. An ``asyncio.timeout`` around every read cost each
webhook more CPU than its signature check.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbridge.api.errors import BodyTooLarge, error_response
from chatbridge.errors import BadInput

FRAMING_BYTES = 64 * 1024
"""Room past a file's cap for what wraps it (multipart boundaries and headers)."""


def file_upload_limit(path: str, max_body_bytes: int, file_max_bytes: int) -> dict[str, int]:
    """``path_limits`` entry of an upload endpoint: a whole file up to its cap (and its
    framing), never less than the default body limit."""
    return {path: max(max_body_bytes, file_max_bytes + FRAMING_BYTES)}


def declared_file_type(content_type: str | None) -> str | None:
    """The type of a file sent as the request body itself (``Content-Type``); None when none
    is given (the media store then recognises it by its bytes).

    Raises:
        BadInput: ``invalid_upload`` for a form or JSON body instead of the file.
    """
    mime = (content_type or "").strip() or None
    if mime is not None and mime.split(";", 1)[0].strip().lower() in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/json",
    ):
        raise BadInput(
            "invalid_upload", "send the file itself as the body, with its own Content-Type"
        )
    return mime


class BodyTimedOut(Exception):
    """Raised into the app by ``BodySizeLimit`` when a body is not complete in time."""


class BodySizeLimit:
    """Bound every HTTP request body by size (``max_bytes``, or ``path_limits[path]``) and by
    arrival time (``timeout`` seconds from the first read).

    Args:
        app: the ASGI app.
        max_bytes: the default limit.
        path_limits: single paths with a limit of their own (call recording uploads).
        timeout: seconds within which a whole body must arrive (a client trickling a body
            would otherwise hold the request forever).
        discard_bytes: how much past its limit an oversized body is read and dropped so that
            the client gets the 413.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        path_limits: dict[str, int] | None = None,
        *,
        timeout: float = 60.0,
        discard_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}
        self.timeout = timeout
        self.discard_bytes = discard_bytes
        self.watch = _ArrivalWatch(tick=min(1.0, timeout / 8))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(self, scope, receive, send)
        declared = body.declared_length()
        if declared is not None and declared > body.limit:
            await body.refuse_oversized(already_read=0, more=True)
            return
        try:
            await self.app(scope, body.receive, body.send)
        except (BodyTooLarge, BodyTimedOut):
            await body.answer_refusal()


class _ArrivalWatch:
    """The reads of one ``BodySizeLimit`` now waiting for body bytes, and the one timer that
    cancels those whose body is past its deadline (see the module docstring)."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._waiting: dict[asyncio.Task[object], _Body] = {}  # by the task that waits
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    async def read(self, body: _Body, receive: Receive) -> Message:
        """``receive()``, or ``BodyTimedOut`` once ``body``'s deadline has passed while this
        read waited (or before it began).

        Raises:
            BodyTimedOut: the body is past its deadline.
        """
        if body.timed_out:
            raise BodyTimedOut
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._waiting[task] = body
        loop = asyncio.get_running_loop()
        if self._timer is None or self._timer_loop is not loop:
            self._timer = loop.call_at(loop.time() + self.tick, self._look)
            self._timer_loop = loop
        try:
            return await receive()
        except asyncio.CancelledError:
            # Ours only if the body timed out and no one else cancelled the task too (as
            # asyncio.timeout tells its own cancellation from another's).
            if body.timed_out and task.uncancel() <= cancelling:
                raise BodyTimedOut from None
            raise
        finally:
            del self._waiting[task]

    def _look(self) -> None:
        """Cancel the waiting reads whose body is past its deadline; look again in a tick
        while any read waits."""
        self._timer = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, body in self._waiting.items():
            if not body.timed_out and body.deadline is not None and body.deadline <= now:
                body.timed_out = True
                task.cancel()
        self._timer = loop.call_at(now + self.tick, self._look)


class _Body:
    """One request's body as the app reads it, and the refusal that replaces its answer."""

    def __init__(self, limits: BodySizeLimit, scope: Scope, receive: Receive, send: Send):
        self.limits = limits
        self.scope = scope
        self._receive = receive
        self._send = send
        self.limit = limits.path_limits.get(scope["path"], limits.max_bytes)
        self.seen = 0
        self.more = True  # the client has more body to send
        self.deadline: float | None = None
        self.timed_out = False  # the watch saw the deadline pass while a read waited
        self.refusal: type[Exception] | None = None
        self.started = False

    def declared_length(self) -> int | None:
        for name, value in self.scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def receive(self) -> Message:
        if not self.more:
            return await self._receive()  # after the body: disconnect notices, unbounded
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.limits.timeout
        try:
            message = await self.limits.watch.read(self, self._receive)
        except BodyTimedOut:
            self.refusal = BodyTimedOut
            raise
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.more = bool(message.get("more_body", False))
            if self.seen > self.limit:
                self.refusal = BodyTooLarge
                raise BodyTooLarge
        else:
            self.more = False
        return message

    async def send(self, message: Message) -> None:
        if self.refusal is not None:
            # The app answered a body we cut off (some endpoints turn any read error into a
            # 400): our refusal goes out instead.
            if message["type"] == "http.response.start":
                await self.answer_refusal()
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def answer_refusal(self) -> None:
        if self.started:
            return
        if self.refusal is BodyTimedOut:
            self.started = True
            timeout = self.limits.timeout
            await self._respond(
                408, "request_timeout", f"request body not received within {timeout:g} s", True
            )
        else:
            await self.refuse_oversized(already_read=self.seen, more=self.more)

    async def refuse_oversized(self, *, already_read: int, more: bool) -> None:
        """Read and drop the rest of the body (up to the discard bound, in time), then 413."""
        self.started = True
        self.seen, self.more = already_read, more
        bound = self.limit + self.limits.discard_bytes
        complete = not more
        if more:
            try:
                complete = await self._discard(bound)
            except BodyTimedOut:
                complete = False
        message = f"request body over {self.limit} bytes"
        await self._respond(413, "payload_too_large", message, close=not complete)

    async def _discard(self, bound: int) -> bool:
        """Whether the whole body was read (and dropped) within ``bound`` bytes."""
        declared = self.declared_length()
        if declared is not None and declared > bound:
            return False
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.limits.timeout
        while self.seen <= bound:
            message = await self.limits.watch.read(self, self._receive)
            if message["type"] != "http.request":
                return False
            self.seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return self.seen <= bound
        return False

    async def _respond(self, status: int, code: str, message: str, close: bool) -> None:
        payload = bytes(error_response(status, code, message).body)
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": payload})
