"""A fresh, empty database for each run: a SQLite file in the run's directory, or a PostgreSQL
database ``chatbridge_bench_<random>`` created on the server and dropped afterwards.

The PostgreSQL server is ``CHATBRIDGE_BENCH_PG_DSN`` (an asyncpg DSN of a database the user
may ``CREATE DATABASE`` from), by default ``postgresql://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

DATABASES = ("sqlite", "postgresql")
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_admin_dsn() -> str:
    return os.environ.get("CHATBRIDGE_BENCH_PG_DSN", DEFAULT_PG_DSN)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_admin_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def postgresql_available() -> str | None:
    """``None`` if the PostgreSQL server answers, else why not."""
    try:
        await _pg_admin("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@asynccontextmanager
async def fresh_database(kind: str, workdir: Path) -> AsyncIterator[str]:
    """Yield the SQLAlchemy URL of a new empty database of ``kind``; remove it afterwards.

    Raises:
        ValueError: ``kind`` is not ``sqlite`` or ``postgresql``.
    """
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - local, tiny
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database {kind!r}; choose from {DATABASES}")
    name = f"chatbridge_bench_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    base = pg_admin_dsn().rsplit("/", 1)[0].split("://", 1)[1]
    try:
        yield f"postgresql+asyncpg://{base}/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
