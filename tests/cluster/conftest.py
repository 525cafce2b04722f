"""Fixtures of the multi-replica tests: a private Redis server per test.

``redis-server`` missing skips these tests, except in CI (``CI=true``) where it is a failure,
as a missing PostgreSQL is (``pg_database``). Select them with ``-m cluster``.
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
        "markers", "cluster: several bridge processes on PostgreSQL and Redis (tests/cluster)"
    )


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A private, empty ``redis-server`` on a free 127.0.0.1 port, stopped after the test."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI but not installed")
        pytest.skip("redis-server is not installed")
    async with RedisServer(workdir=tmp_path) as server:
        yield server
