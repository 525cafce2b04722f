"""A whole stack (``running_stack``) served from a background thread, for synchronous tests.

Hypothesis and schemathesis drive a test synchronously, one example at a time, so the stack
they talk to runs in a thread with its own event loop: started once per test (or module),
reached over real loopback sockets, stopped and joined at the end. ``Live.call`` runs a
coroutine in that loop, for looking into the store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select

from chatbridge.channels.signatures import sign_chatwoot
from chatbridge.store import Store
from chatbridge.store.tables import metadata
from chatbridge.testing.mock_chatwoot import TriggerRequest
from tests.e2e.harness import Stack, running_stack

T = TypeVar("T")


@dataclass
class Live:
    stack: Stack
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    secret: str | None

    @property
    def url(self) -> str:
        return self.stack.url

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` in the stack's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def snapshot(self) -> dict[str, Any]:
        """Every table's row count and the turn/delivery states, once nothing is in flight."""
        return self.call(snapshot(self.stack))

    def message_created(self, **spec: Any) -> dict[str, Any]:
        """A realistic ``message_created`` payload from the mock Chatwoot (inbox 1)."""

        async def build() -> dict[str, Any]:
            payload, _ = self.stack.mock.build_event(
                "message_created", TriggerRequest(inbox_id=1, **spec)
            )
            return payload

        return self.call(build())

    def webhook(
        self,
        client: httpx.Client,
        body: bytes | Any,
        *,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``body`` (bytes as they are, anything else as JSON) to the webhook, signed
        with the stack's secret unless ``sign`` is false."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        sent = {"Content-Type": "application/json"}
        if sign and self.secret:
            sent.update(sign_chatwoot(self.secret, body, int(time.time())))
        sent.update(headers or {})
        return client.post("/webhook/chatwoot", content=body, headers=sent, params=params)


async def row_counts(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        return {
            table.name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            for table in metadata.sorted_tables
        }


async def snapshot(stack: Stack) -> dict[str, Any]:
    states = await stack.idle()
    return {"rows": await row_counts(stack.bridge.store), "states": states}


@contextmanager
def live_stack(database_url: str, **options: Any) -> Iterator[Live]:
    """Run ``running_stack(database_url, **options)`` in a thread until the block ends."""
    started: concurrent.futures.Future[Live] = concurrent.futures.Future()
    failure: list[BaseException] = []

    async def main() -> None:
        stop = asyncio.Event()
        async with running_stack(database_url, **options) as stack:
            started.set_result(Live(stack, asyncio.get_running_loop(), stop, options.get("secret")))
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                failure.append(exc)

    thread = threading.Thread(target=run, name="live-stack")
    thread.start()
    try:
        live = started.result(timeout=60)
    except BaseException:
        thread.join(60)
        raise
    try:
        yield live
    finally:
        live.loop.call_soon_threadsafe(live.stop.set)
        thread.join(60)
    assert not thread.is_alive(), "the live stack did not stop"
    if failure:
        raise failure[0]
