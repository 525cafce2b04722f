"""Rate limits for the public web chat endpoints and the agent pull endpoints.

The ``limits`` library does the counting (sliding-window counters, in memory by default,
in Redis when ``CHATBRIDGE_REDIS_URL`` is set so every replica shares them). Limits are
strings in its notation (``"30/minute"``), one setting each; the defaults let a visitor
chat at typing speed and a 5-second poller poll forever.

The same storage also keeps the failed-authentication budgets (``chatbridge.api.auth_limits``)
and the console's revoked sessions (``chatbridge.api.console_auth``): short-lived counters that
every replica must see.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.requests import HTTPConnection

from chatbridge.config import Settings
from chatbridge.errors import ChatbridgeError

log = logging.getLogger("chatbridge.ratelimit")


class RateLimited(ChatbridgeError):
    """Too many requests; ``retry_after`` is whole seconds until one more is allowed."""

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded for {scope}; retry in {retry_after}s")
        self.scope = scope
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        storage: Storage
        if settings.redis_url:
            uri = settings.redis_url.replace("redis://", "async+redis://", 1).replace(
                "rediss://", "async+rediss://", 1
            )
            prefix = f"{settings.redis_prefix}-rl"
            storage = RedisStorage(uri, implementation="redispy", key_prefix=prefix)
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._parsed: dict[str, object] = {}
        self._closed = False

    async def aclose(self) -> None:
        """Close the Redis connections, if any (the memory storage holds none). A request
        still running afterwards (shutting down) is let through uncounted: counting it would
        open a new connection nobody closes."""
        self.enabled = False
        self._closed = True
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()

    @property
    def uses_redis(self) -> bool:
        return isinstance(self.storage, RedisStorage)

    async def ping(self) -> bool:
        """Whether the limiter's storage answers (always true in memory)."""
        if self._closed:
            return False
        try:
            return bool(await self.storage.check())
        except Exception:
            return False

    async def hit(self, scope: str, limit: str, key: str) -> None:
        """Count one request of ``key`` against ``limit``; raise ``RateLimited`` if over."""
        if not self.enabled:
            return
        item = parse(limit)
        try:
            allowed = await self._limiter.hit(item, scope, key)
            if allowed:
                return
            stats = await self._limiter.get_window_stats(item, scope, key)
        except Exception:  # a limiter outage must not take the chat down
            log.exception("rate limiter unavailable; letting the request through")
            return
        raise RateLimited(scope, max(1, math.ceil(stats.reset_time - time.time())))

    async def exhausted(self, scope: str, limit: str, key: str) -> int | None:
        """Seconds until ``key`` may spend again under ``limit`` when its budget is spent,
        else None. Counts nothing, and works whether or not request rate limits are enabled
        (budgets that guard credentials are not switched off with them)."""
        if self._closed:
            return None
        item = parse(limit)
        try:
            if await self._limiter.test(item, scope, key):
                return None
            stats = await self._limiter.get_window_stats(item, scope, key)
        except Exception:
            log.exception("rate limiter unavailable; not enforcing %s", scope)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def spend(self, scope: str, limit: str, key: str) -> None:
        """Count one against ``key``'s budget under ``limit`` (see ``exhausted``)."""
        if self._closed:
            return
        try:
            await self._limiter.hit(parse(limit), scope, key)
        except Exception:
            log.exception("rate limiter unavailable; %s not counted", scope)


def client_ip(conn: HTTPConnection) -> str:
    """The caller's address as the server saw it (put a trusted proxy's header in front of
    this when running behind one)."""
    return conn.client.host if conn.client else "unknown"
