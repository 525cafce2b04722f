"""The claim loop: the one shape of every worker that takes leased work from the store.

The store's queues are tables (see ``turns``): work is *claimed* (leased, fenced) by one
statement and finished, retried or given back by fenced updates (``leases``). A worker is
this loop around two functions — ``claim(n)``, which leases up to ``n`` items, and
``run(item)`` — used for agent turns and channel deliveries (``pipeline``) and for call
transcriptions (``crm.transcription``).

The loop wakes on an in-process event (set when new work is written) or every
``poll_interval`` (work written by another process, retries coming due), claims as much as
its free concurrency allows, and runs each item as its own task. While claiming fails (the
database is away) it backs off instead of hammering the store. ``run_until_idle`` is the
drain-and-return mode tests use (arq's ``burst=True``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from chatbridge.store.outage import is_outage

# the workers' logger: the loop's lines read as they did when it lived in ``pipeline.workers``
log = logging.getLogger("chatbridge.workers")

T = TypeVar("T")


class ClaimLoop(Generic[T]):
    """Claims items of type ``T`` with ``claim`` and runs each with ``run``, at most
    ``concurrency`` at a time, claiming at most ``batch`` per statement.

    ``run`` handles its own failures (retry, dead-letter, give back); an exception that
    escapes it is logged and the item's lease left to run out.
    """

    def __init__(
        self,
        name: str,
        *,
        claim: Callable[[int], Awaitable[list[T]]],
        run: Callable[[T], Awaitable[None]],
        concurrency: int,
        poll_interval: float,
        batch: int = 100,
        coalesce: float = 0.001,
    ) -> None:
        self.name = name
        self._claim = claim
        self._run = run
        self._concurrency = concurrency
        self._poll = poll_interval
        self._batch = batch
        self._coalesce = coalesce
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots_free = asyncio.Event()
        self._slots_free.set()
        self.running = False
        self.claim_failures = 0  # in a row; the loop backs off while the store is away

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _claim_once(self) -> int:
        free = self._concurrency - len(self._tasks)
        if free <= 0:
            return 0
        try:
            items = await self._claim(min(free, self._batch))
        except Exception as exc:
            self.claim_failures += 1
            if self.claim_failures == 1 or self.claim_failures % 20 == 0:
                log.warning(
                    "%s: claim failed (%d in a row): %s: %s",
                    self.name,
                    self.claim_failures,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                    exc_info=not is_outage(exc),
                )
            return 0
        self.claim_failures = 0
        for item in items:
            task = asyncio.create_task(self._guarded(item))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        if len(self._tasks) >= self._concurrency:
            self._slots_free.clear()
        return len(items)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots_free.set()
        self._wake.set()

    async def _guarded(self, item: T) -> None:
        try:
            await self._run(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: unexpected error", self.name)

    async def run(self) -> None:
        """Claim whenever woken (or every ``poll_interval``).

        Wake-ups are coalesced: under load every finished item and every new message wakes
        the loop, and one claim a millisecond serves them all far cheaper than one claim each.
        """
        self.running = True
        try:
            while True:
                self._wake.clear()
                claimed = await self._claim_once()
                if claimed >= self._batch and len(self._tasks) < self._concurrency:
                    continue  # a full batch: there may be more waiting
                if len(self._tasks) >= self._concurrency:
                    await self._slots_free.wait()
                    continue
                if self.claim_failures:
                    # the store is away: wake-ups would only hammer it; try again in a while
                    await asyncio.sleep(min(5.0, self._poll * 2 ** min(self.claim_failures, 6)))
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                except TimeoutError:
                    continue
                await asyncio.sleep(self._coalesce)
        finally:
            self.running = False

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for in-flight items, then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def run_until_idle(self) -> int:
        """Claim and finish everything due now; return how many items ran (tests, burst)."""
        total = 0
        while True:
            n = await self._claim_once()
            total += n
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            elif n == 0:
                return total
