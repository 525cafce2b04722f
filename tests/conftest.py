"""Shared fixtures: a fresh store on SQLite and on PostgreSQL (the real server).

PostgreSQL tests skip when no server answers, except in CI (``CI=true``) where a missing
server is a failure: the suite must prove the PostgreSQL path, not quietly pass without it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

# Recordings uploaded by tests (including schemathesis' generated ones) go to a temporary
# folder, never into the working tree.
os.environ.setdefault(
    "CHATBRIDGE_COMMS_RECORDINGS_DIR",
    str(Path(os.environ.get("TMPDIR", "/tmp")) / f"chatbridge-test-recordings-{os.getpid()}"),
)

PG_ADMIN_DSN = os.environ.get(
    "CHATBRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread.

    Works from sync fixtures and from fixtures requested inside a running test loop alike.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _pg_dsn_for(db: str) -> str:
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{db}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of our own for this test session, dropped at the end."""
    name = f"chatbridge_test_{uuid.uuid4().hex[:10]}"
    try:
        _run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield name
    _run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_pg_schema(db: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn_for(db), timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture
def database_url_pg(pg_database: str) -> str:
    """The URL of an empty PostgreSQL database (schema reset for each test)."""
    _run(_reset_pg_schema(pg_database))
    return f"postgresql+asyncpg://{_pg_dsn_for(pg_database).split('://', 1)[1]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'chatbridge.db'}"
    return str(request.getfixturevalue("database_url_pg"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[object]:
    from chatbridge.store import Store

    s = Store(database_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for tests that need one database only."""
    return f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"


# The fast core target (`./scripts/test -m core`): the tests of the promise itself — store
# contract, pipeline decisions and workers, crash and two-bridge tests, the core guards — for
# anyone changing the store or the workers to run on every step. The chaos suite
# (`-m chaos`) is the slower, broader net.
CORE_TESTS = (
    "tests/store/",
    "tests/pipeline/",
    "tests/e2e/test_store_faults.py",
    "tests/e2e/test_core_guards.py",
    "tests/e2e/test_echo_memory.py",
    "tests/e2e/test_crash_restart.py",
    "tests/e2e/test_replicas_in_process.py",
    "tests/e2e/test_chatwoot_flow.py",
    # the limits that keep one address from flooding the pipeline
    "tests/api/test_ratelimit.py::test_messages_are_limited",
    "tests/api/test_ratelimit.py::test_too_many_messages",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path)).relative_to(root).as_posix()
        _, sep, rest = item.nodeid.partition("::")
        name = path + sep + rest  # "tests/x.py::test_name[param]", whatever the rootdir
        if name.startswith(CORE_TESTS):
            item.add_marker(pytest.mark.core)
