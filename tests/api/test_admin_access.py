"""Who gets admin access: no-key mode only for a direct local client (no proxy headers),
console sessions revoked on the server at logout (across replicas sharing Redis), and the
session cookie ``Secure`` whenever the browser's request was https."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from chatbridge.api import create_app
from chatbridge.api.console_auth import (
    COOKIE,
    issue_session,
    revoke_session,
    session_nonce,
)
from chatbridge.config import Settings
from chatbridge.ratelimit import RateLimiter
from tests.e2e.harness import Stack, running_stack

ADMIN_KEY = "access-admin-key-0123"
REDIS_URL = "redis://127.0.0.1:6379/0"
PROXY_HEADERS = [
    {"X-Forwarded-For": "203.0.113.9"},
    {"Forwarded": "for=203.0.113.9;proto=https"},
    {"X-Real-IP": "203.0.113.9"},
    {"X-Forwarded-Host": "bridge.example.com"},
    {"X-Forwarded-Proto": "https"},
    {"Via": "1.1 proxy"},
]


@asynccontextmanager
async def seen_from(
    s: Stack, host: str, base_url: str = "http://bridge"
) -> AsyncIterator[httpx.AsyncClient]:
    """The stack's bridge as a client at ``host`` reaches it (no second lifespan)."""
    transport = httpx.ASGITransport(app=create_app(bridge=s.bridge), client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


async def test_without_a_key_only_a_direct_local_client_is_admin(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        for host in ("127.0.0.1", "::1"):
            async with seen_from(s, host) as local:
                assert (await local.get("/agents/status")).status_code == 200
                assert (await local.get("/api/comms/threads")).status_code == 200
        # a same-host proxy makes every visitor 127.0.0.1: its headers give it away
        async with seen_from(s, "127.0.0.1") as via_proxy:
            for headers in PROXY_HEADERS:
                for path in ("/agents/status", "/config/mappings", "/api/comms/threads"):
                    r = await via_proxy.get(path, headers=headers)
                    assert r.status_code == 403, (headers, path, r.text)
                    assert "CHATBRIDGE_ADMIN_KEY" in r.json()["error"]["message"]
                r = await via_proxy.post("/console/login", json={"key": ""}, headers=headers)
                assert r.status_code == 401, headers
                assert COOKIE not in r.cookies
        async with seen_from(s, "203.0.113.9") as remote:
            assert (await remote.get("/agents/status")).status_code == 403


async def login(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    r = await client.post("/console/login", json={"key": ADMIN_KEY}, headers=headers)
    assert r.status_code == 200, r.text
    return r


async def test_logout_revokes_the_session_on_the_server(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, admin_key=ADMIN_KEY) as s:
        async with seen_from(s, "127.0.0.1") as browser:
            r = await login(browser)
            cookie = r.cookies[COOKIE]
            csrf = r.json()["csrf_token"]
            assert (await browser.get("/agents/status")).status_code == 200
            r = await browser.post(
                "/console/logout",
                headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
            )
            assert r.status_code == 200
        # someone kept a copy of the cookie: it is refused everywhere now
        async with seen_from(s, "127.0.0.1") as replay:
            replay.cookies.set(COOKIE, cookie)
            r = await replay.get("/agents/status")
            assert r.status_code == 401
            r = await replay.get("/api/comms/threads")
            assert r.status_code == 401
            r = await replay.get("/console")
            assert r.status_code == 303 and r.headers["location"] == "/console/login"
        # a new login works again
        async with seen_from(s, "127.0.0.1") as browser:
            await login(browser)
            assert (await browser.get("/agents/status")).status_code == 200


async def test_a_logout_on_one_replica_holds_on_another_through_redis() -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(admin_key=ADMIN_KEY, redis_url=REDIS_URL, redis_prefix=prefix)
    here, there = RateLimiter(settings), RateLimiter(settings)
    try:
        if not await here.ping():
            if os.environ.get("CI") == "true":
                pytest.fail("Redis is required in CI but not reachable")
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        cookie, _ = issue_session(settings)
        assert await session_nonce(settings, there, cookie) is not None
        assert await revoke_session(settings, here, cookie)
        assert await session_nonce(settings, there, cookie) is None
        other, _ = issue_session(settings)  # other sessions are untouched
        assert await session_nonce(settings, there, other) is not None
    finally:
        await here.aclose()
        await there.aclose()


async def test_an_unreadable_revocation_list_refuses_sessions() -> None:
    settings = Settings(admin_key=ADMIN_KEY)
    limiter = RateLimiter(settings)
    cookie, _ = issue_session(settings)
    assert await session_nonce(settings, limiter, cookie) is not None

    async def broken(_key: str) -> int:
        raise ConnectionError("storage down")

    limiter.storage.get = broken  # type: ignore[method-assign]
    assert await session_nonce(settings, limiter, cookie) is None


@pytest.mark.parametrize(
    ("base_url", "headers", "secure"),
    [
        ("http://bridge", {}, False),
        ("https://bridge", {}, True),
        ("http://bridge", {"X-Forwarded-Proto": "https"}, True),
        ("http://bridge", {"Forwarded": "for=198.51.100.1;proto=https"}, True),
    ],
)
async def test_the_cookie_is_secure_when_the_browser_used_https(
    sqlite_url: str, base_url: str, headers: dict[str, str], secure: bool
) -> None:
    app = create_app(Settings(database_url=sqlite_url, admin_key=ADMIN_KEY))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        r = await login(client, **headers)
        set_cookie = r.headers["set-cookie"].lower()
        assert set_cookie.startswith(f"{COOKIE}=")
        assert ("; secure" in set_cookie) is secure, set_cookie
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
