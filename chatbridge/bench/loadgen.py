"""The load generator: open loop at ``rate``, or closed loop with at most ``max_in_flight``.

Both modes keep each conversation sequential, as a customer types: a conversation's next
message is sent only after its previous one was acknowledged. They differ in what paces the
load:

* **open loop** (``Load.rate``): messages are due at a fixed total rate, round-robin over the
  conversations, whatever the target does. A message whose conversation is still waiting for
  an acknowledgement waits too (its ``intended_at`` is kept, so schedule lag shows); messages
  still waiting when the time is up are not sent and are counted as ``backlog``.
* **closed loop** (``Load.max_in_flight``): at most that many messages are *incomplete* at a
  time — not yet replied (or, for a target without replies, not yet acknowledged). A
  completed message frees its slot at once; a message that never completes gives its slot
  back after ``Load.complete_timeout`` so one lost reply cannot stall the run.

HTTP goes through one aiohttp session with keep-alive connections; request bodies are built
by the scenario from prebuilt templates. An unacknowledged webhook (connection error, 5xx,
429) is sent again with the same body and delivery id, as Chatwoot retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from chatbridge.bench.accounting import MessageKey, Reply, Sent, parse_marker
from chatbridge.bench.scenarios.base import Request, Stack

MAX_ATTEMPTS = 5
_TICK = 0.002


@dataclass(frozen=True)
class Load:
    """How hard and how long to push."""

    conversations: int
    duration: float
    rate: float | None = None
    max_in_flight: int | None = None
    complete_timeout: float = 30.0

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.max_in_flight is None):
            raise ValueError("give exactly one of rate (open loop) or max_in_flight (closed loop)")
        if self.conversations < 1 or self.duration <= 0:
            raise ValueError("conversations must be >= 1 and duration > 0")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    def describe(self) -> str:
        """``open 20/s`` or ``closed max 50``."""
        if self.rate is not None:
            return f"open {self.rate:g}/s"
        return f"closed max {self.max_in_flight}"

    def connection_limit(self) -> int:
        """Concurrent connections the generator may open (each conversation needs at most 1)."""
        cap = self.max_in_flight if self.max_in_flight is not None else 1000
        return max(1, min(self.conversations, cap))


class LoadGenerator:
    """Sends the load to a started ``Stack`` and records every message (``sent``)."""

    def __init__(self, stack: Stack, load: Load, http: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.load = load
        self.http = http
        self.sent: list[Sent] = []
        self.acknowledged = 0
        self.completed = 0
        self.backlog = 0
        self._by_key: dict[MessageKey, Sent] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(load.max_in_flight or 1)
        self._holding: dict[MessageKey, asyncio.TimerHandle | None] = {}
        self._replied_early: set[MessageKey] = set()
        self._stopping = False

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Push load for ``duration`` seconds, then wait (bounded) for in-flight requests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.load.duration
        try:
            if self.load.rate is not None:
                await self._open_loop(deadline, self.load.rate)
            else:
                await self._closed_loop(deadline)
            self._stopping = True
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=60)
        finally:
            self._stopping = True
            for task in list(self._tasks):
                task.cancel()
            for handle in self._holding.values():
                if handle is not None:
                    handle.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_loop(self, deadline: float, rate: float) -> None:
        loop = asyncio.get_running_loop()
        started, wall = loop.time(), time.time()
        tails: dict[int, asyncio.Future[None]] = {}
        seqs = [0] * (self.load.conversations + 1)
        index = 0
        while True:
            now = loop.time()
            if now >= deadline:
                return
            due = int((now - started) * rate) + 1
            while index < due:
                intended = started + index / rate
                if intended >= deadline:
                    return
                conversation = index % self.load.conversations + 1
                seq = seqs[conversation]
                seqs[conversation] += 1
                previous = tails.get(conversation)
                mine: asyncio.Future[None] = loop.create_future()
                tails[conversation] = mine
                self._spawn(
                    self._open_message(
                        conversation, seq, wall + (intended - started), previous, mine
                    )
                )
                index += 1
            await asyncio.sleep(min(_TICK, max(0.0, started + index / rate - loop.time())))

    async def _open_message(
        self,
        conversation: int,
        seq: int,
        intended_at: float,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        try:
            if previous is not None:
                await previous
            if self._stopping:
                self.backlog += 1
                return
            await self._send(conversation, seq, intended_at)
        finally:
            if not mine.done():
                mine.set_result(None)

    async def _closed_loop(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[int] = asyncio.Queue()
        for conversation in range(1, self.load.conversations + 1):
            ready.put_nowait(conversation)
        seqs = [0] * (self.load.conversations + 1)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._slots.acquire()
            except TimeoutError:
                return
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    conversation = await ready.get()
            except TimeoutError:
                self._slots.release()
                return
            seq = seqs[conversation]
            seqs[conversation] += 1
            self._spawn(self._closed_message(conversation, seq, ready))

    async def _closed_message(self, conversation: int, seq: int, ready: asyncio.Queue[int]) -> None:
        message: Sent | None = None
        try:
            message = await self._send(conversation, seq, None)
        finally:
            ready.put_nowait(conversation)
            if message is None or not message.acknowledged or not self.stack.expects_replies:
                self._complete_slot()
            elif message.key in self._replied_early:
                self._complete_slot()
            else:
                handle = asyncio.get_running_loop().call_later(
                    self.load.complete_timeout, self._give_back, message.key
                )
                self._holding[message.key] = handle

    def _complete_slot(self) -> None:
        self.completed += 1
        self._slots.release()

    def _give_back(self, key: MessageKey) -> None:
        if key in self._holding:
            del self._holding[key]
            self._slots.release()

    def on_reply(self, key: MessageKey) -> None:
        """A reply for ``key`` arrived at the channel: its closed-loop slot is free."""
        if key in self._holding:
            handle = self._holding.pop(key)
            if handle is not None:
                handle.cancel()
            self._complete_slot()
        elif key in self._by_key and not self._by_key[key].acknowledged:
            # replied before the acknowledgement reached us: free the slot on acknowledgement
            self._replied_early.add(key)

    # --- one message --------------------------------------------------------------------

    async def _send(self, conversation: int, seq: int, intended_at: float | None) -> Sent:
        request: Request = self.stack.request(conversation, seq)
        message = Sent(conversation=conversation, seq=seq, sent_at=time.time())
        message.intended_at = intended_at
        self.sent.append(message)
        self._by_key[message.key] = message
        started = time.perf_counter()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            message.attempts = attempt
            try:
                async with self.http.post(
                    request.url, data=request.body, headers=request.headers
                ) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                message.error = f"{type(exc).__name__}: {exc}"
            else:
                if self.stack.acknowledged(status, body):
                    message.ack_latency = time.perf_counter() - started
                    message.acked_at = time.time()
                    message.ack_order = self.acknowledged
                    message.error = None
                    self.acknowledged += 1
                    return message
                message.error = f"HTTP {status}: {body[:200].decode(errors='replace')}"
                if 400 <= status < 500 and status not in (408, 429):
                    return message  # refused for good: sending it again changes nothing
            if attempt < MAX_ATTEMPTS and not self._stopping:
                await asyncio.sleep(0.05 * attempt)
        return message


class ReplyFeed:
    """Follows the replies the channel receives while the run goes on (long polling)."""

    def __init__(
        self,
        stack: Stack,
        http: aiohttp.ClientSession,
        generator: LoadGenerator | None = None,
        *,
        wait: float = 1.0,
        min_interval: float = 0.01,
    ) -> None:
        self.stack = stack
        self.http = http
        self.generator = generator
        self.wait = wait
        self.min_interval = min_interval
        self.replies: list[Reply] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def poll(self, wait: float = 0.0) -> int:
        """Fetch the replies that arrived since the last poll; returns how many."""
        fresh = await self.stack.replies_after(self.http, len(self.replies), wait)
        self.replies.extend(fresh)
        if self.generator is not None:
            for reply in fresh:
                key = parse_marker(reply.content)
                if key is not None:
                    self.generator.on_reply(key)
        return len(fresh)

    async def _run(self) -> None:
        # At most one poll per ``min_interval``: at thousands of replies a second, a poll per
        # reply would load the mock channel more than the bridge does.
        while True:
            started = time.monotonic()
            try:
                await self.poll(self.wait)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                self.failures += 1
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(0.0, self.min_interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, *, last_look: bool = True) -> None:
        """Stop following, then (by default) take one last look."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if last_look:
            await self.poll()
