"""Telling a database outage from a bug, and holding on to a result through an outage.

A worker that has an agent's answer, or knows a send went out, holds something that cannot
be had again for free: asking the agent again costs a model call, sending again may double a
reply. When the database is away (restarted, failed over, its connections cut, the SQLite
file locked or unwritable) such a worker keeps trying to write the result, with backoff,
instead of dropping it; every write is fenced by the lease, so a result that arrives after
another process took the work over is refused, never applied twice.

SQLAlchemy invalidates its whole pool when it sees a disconnect, so the next attempt opens
fresh connections: the store reconnects by itself once the server answers again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from chatbridge.errors import StoreError

# Jitter from a generator of our own: the global ``random`` state belongs to the application
# (and to test tools such as Hypothesis, which treat a change to it as a bug).
_JITTER = random.Random()

log = logging.getLogger("chatbridge.store")

T = TypeVar("T")

# Errors that say "the data is wrong", not "the database is away": retrying cannot help.
_PERMANENT: tuple[type[BaseException], ...] = (
    sa_exc.IntegrityError,
    sa_exc.DataError,
    sa_exc.ProgrammingError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
)
# The hot path's raw drivers (``hot``): SQLite's "locked / unwritable / I/O error", and
# asyncpg's lost connections, server shutdowns and refused connects.
_DRIVER_OUTAGES: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
try:
    import asyncpg

    _PERMANENT += (
        asyncpg.IntegrityConstraintViolationError,
        asyncpg.DataError,
        asyncpg.SyntaxOrAccessError,
    )
    _DRIVER_OUTAGES += (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,  # ConnectionDoesNotExistError: the connection was closed
        asyncpg.CannotConnectNowError,
        asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown
        asyncpg.InsufficientResourcesError,  # too many connections
    )
except ImportError:  # pragma: no cover - asyncpg is a dependency
    pass


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not be reached or used right now."""
    if isinstance(exc, _PERMANENT):
        return False
    return isinstance(
        exc,
        (
            sa_exc.DBAPIError,  # OperationalError, InterfaceError, driver errors
            sa_exc.TimeoutError,  # pool exhausted while connections hang
            sa_exc.DisconnectionError,
            StoreError,
            OSError,  # ConnectionRefusedError and friends from the driver's connect
            TimeoutError,
            ConnectionError,
            *_DRIVER_OUTAGES,
        ),
    )


async def hold_on(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    give_up_after: float,
    base: float = 0.2,
    cap: float = 5.0,
) -> T:
    """Run ``op`` until it succeeds, retrying database outages with jittered backoff.

    Anything that is not an outage is raised at once; so is the last outage error once
    ``give_up_after`` seconds have passed.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return await op()
        except Exception as exc:
            if not is_outage(exc) or time.monotonic() - started >= give_up_after:
                raise
            attempt += 1
            delay = _JITTER.uniform(base / 2, min(cap, base * 2 ** min(attempt, 16)))
            if attempt == 1 or attempt % 10 == 0:
                log.warning(
                    "%s: database unavailable (%s: %s); retrying (attempt %d)",
                    what,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                    attempt,
                )
            await asyncio.sleep(delay)
