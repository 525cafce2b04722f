"""A clock a test moves by hand (``chatbridge.clock``'s fake).

    with FakeClock().installed() as clock:
        ...                 # the store and the workers read clock.now()
        clock.advance(30)   # a retry due in 30 s is due now; a 15 s lease has run out

It starts at the real time, so rows written before it was installed stay in the past, and
it only moves forward.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from chatbridge import clock


class FakeClock:
    """A wall clock that stands still until ``advance`` is called."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._tick = asyncio.Event()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward and wake whoever waits in ``advanced``."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def advanced(self) -> None:
        """Return at the next ``advance`` (for fakes that wait for time to pass)."""
        await self._tick.wait()

    @contextmanager
    def installed(self) -> Iterator[FakeClock]:
        """Make ``chatbridge.clock.now`` read this clock inside the ``with`` block."""
        previous = clock.use(self.now)
        try:
            yield self
        finally:
            clock.use(previous)
