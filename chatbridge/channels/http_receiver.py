"""A fake app for the ``http`` channel: the callback end, as a small ASGI app.

It does what the channel's documentation asks of a real receiver: it verifies every POST's
signature with the channel's own ``verify`` (401 otherwise), and it dedupes on the
idempotency key (a repeated key is answered 200 and not recorded again). A test scripts
failures with ``fail_next`` (statuses to answer before accepting) and waits for callbacks with
``wait_for`` instead of sleeping. Used by the channel's tests; serve it with
``chatbridge.testing.servers.serve_app``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatbridge.channels.http import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from chatbridge.errors import BadSignature

Callback = dict[str, Any]


class CallbackReceiver:
    """Records the verified, deduplicated callbacks it receives at any path.

    Attributes:
        received: each callback's JSON body, once per idempotency key, in arrival order.
        attempts: every POST that reached it, refused or not.
        refused: the reason of every 401 it answered.
        fail_next: statuses (with an optional ``Retry-After``) to answer, one per POST, before
            accepting again.
    """

    def __init__(self, secret: str, *, max_age: float | None = 300.0) -> None:
        self.secret = secret
        self.max_age = max_age
        self.received: list[Callback] = []
        self.attempts = 0
        self.refused: list[str] = []
        self.fail_next: list[tuple[int, str | None]] = []
        self._keys: set[str] = set()
        self._changed = asyncio.Condition()
        self.app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        headers = request.headers
        async with self._changed:
            self.attempts += 1
            self._changed.notify_all()
            try:
                verify(
                    self.secret,
                    body,
                    headers.get(TIMESTAMP_HEADER),
                    headers.get(SIGNATURE_HEADER),
                    max_age=self.max_age,
                )
            except BadSignature as exc:
                self.refused.append(exc.message)
                return JSONResponse({"error": exc.message}, status_code=401)
            if self.fail_next:
                status, retry_after = self.fail_next.pop(0)
                extra = {"Retry-After": retry_after} if retry_after is not None else None
                return JSONResponse({"error": "scripted"}, status_code=status, headers=extra)
            payload = json.loads(body)
            key = headers.get(IDEMPOTENCY_HEADER)
            if key is None or key != payload.get("idempotency_key"):
                return JSONResponse({"error": "idempotency key mismatch"}, status_code=400)
            if key not in self._keys:
                self._keys.add(key)
                self.received.append(payload)
            return JSONResponse({"message_id": f"app-{len(self.received)}"})

    def of_type(self, kind: str, conversation_id: str | None = None) -> list[Callback]:
        """The callbacks of ``kind`` (``message``, ``typing``, ``handoff``, ``note``),
        optionally of one conversation."""
        return [
            c
            for c in self.received
            if c["type"] == kind
            and (conversation_id is None or c["conversation_id"] == conversation_id)
        ]

    async def wait_for(self, check: Callable[[CallbackReceiver], bool]) -> None:
        """Return once ``check(self)`` holds (checked at each POST); no timeout of its own:
        wrap it in the test's ``within``."""
        async with self._changed:
            await self._changed.wait_for(lambda: check(self))
