"""The wall clock the store and the workers decide by: due times, lease expiry, retry
schedules, receipt waits.

``now()`` is ``time.time`` itself unless a test puts a fake in its place
(``chatbridge.testing.clock.FakeClock``), so a test can move time forward instead of waiting
for it. Callers write ``clock.now()`` after ``from chatbridge import clock`` — never
``from chatbridge.clock import now``, which would keep the clock of import time. That is one
module attribute lookup and a call, the same as ``time.time()``: nothing more on the hot path.

Asyncio's own loop time is not affected: timeouts and sleeps stay real.
"""

from __future__ import annotations

import time
from collections.abc import Callable

now: Callable[[], float] = time.time


def use(source: Callable[[], float]) -> Callable[[], float]:
    """Make ``now`` read ``source`` from here on; returns the source it replaced (tests put
    it back when they are done)."""
    global now
    previous, now = now, source
    return previous
