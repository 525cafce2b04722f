"""Fixtures of the HTTP-surface tests: a live stack shared by a module, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.live import Live, live_stack
from tests.conftest import _pg_dsn_for, _reset_pg_schema, _run

SECRET = "webhook-secret-0123"
ADMIN_KEY = "test-admin-key-0123"


def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """An empty database for a whole module: a SQLite file, or the session's PostgreSQL
    database with a fresh schema (no other test uses it while the module runs)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('api') / 'chatbridge.db'}"
    name = str(request.getfixturevalue("pg_database"))
    _run(_reset_pg_schema(name))
    return f"postgresql+asyncpg://{_pg_dsn_for(name).split('://', 1)[1]}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A stack with a webhook secret and an admin key, shared by the tests of a module."""
    url = module_database_url(request, tmp_path_factory)
    with live_stack(url, secret=SECRET, admin_key=ADMIN_KEY) as stack:
        yield stack


# A new connection per request: the harness's listening socket lacks TCP_NODELAY, so on a
# kept-alive connection every response waits ~40 ms for a delayed ACK (Nagle). A fresh
# connection is still in quick-ACK mode. Harmless once the socket gets TCP_NODELAY.
NO_KEEPALIVE = {"Connection": "close"}


@pytest.fixture(scope="module")
def client(live: Live) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", **NO_KEEPALIVE}
    with httpx.Client(base_url=live.url, timeout=30, headers=headers) as c:
        yield c
