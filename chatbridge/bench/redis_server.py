"""Redis for a run with several bridge replicas: the one the user named, or a private server.

The replicas share Redis for cross-replica wake-ups and the agent dial lease. Without
``--redis-url`` (or ``CHATBRIDGE_REDIS_URL``) the benchmark starts ``redis-server`` as a child
of the run (``Stack.start_redis``): on a free port, bound to 127.0.0.1, keeping nothing on disk
(``--save "" --appendonly no``), stopped with the run. Each run so starts from an empty Redis,
and its CPU and memory are measured like any other process's.
"""

from __future__ import annotations

import shutil

from yarl import URL

PROGRAM = "redis-server"


def redis_server_program() -> str | None:
    """The path of ``redis-server``, or ``None`` when it is not on ``PATH``."""
    return shutil.which(PROGRAM)


def redis_server_args(port: int) -> list[str]:
    """A private, disk-less server on ``127.0.0.1:port`` (its log goes to stdout)."""
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


async def redis_ping(url: str, *, timeout: float = 2.0) -> bool:
    """True if the Redis at ``url`` answers ``PING``."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def redis_available(url: str) -> str | None:
    """``None`` if the Redis at ``url`` answers, else why not."""
    try:
        if await redis_ping(url):
            return None
        return "PING was not answered"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def display_url(url: str) -> str:
    """``url`` fit to print: its password (if any) replaced by ``***``."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url
