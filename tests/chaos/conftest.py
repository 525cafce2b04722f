"""Fixtures of the chaos suite: a private Redis server per test.

PostgreSQL databases are made per test by ``harness.fresh_pg_database`` (created, then
dropped), since a case cuts its database off and must not disturb any other. A missing
PostgreSQL or ``redis-server`` skips, except in CI (``CI=true``) where it fails.
Select the suite with ``-m chaos``; it runs in the normal test command.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatbridge.testing.cluster import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: faults injected under load; every reply counted (tests/chaos)"
    )


@pytest.fixture
async def chaos_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A private, empty ``redis-server`` on a free 127.0.0.1 port, stopped after the test."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI but not installed")
        pytest.skip("redis-server is not installed")
    async with RedisServer(workdir=tmp_path) as server:
        yield server
