"""A bridge with a Chatwoot thread, and operators logged in to its console as a browser would
(session cookie plus CSRF token)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.e2e.harness import Stack, running_stack

ADMIN_KEY = "test-admin-key-0123"
ADA = {
    "email": "ada@example.com",
    "name": "Ada Admin",
    "role": "admin",
    "password": "ada-pass-0123",
}
BOB = {
    "email": "bob@example.com",
    "name": "Bob Agent",
    "role": "agent",
    "password": "bob-pass-0123",
}


@asynccontextmanager
async def operators_stack(url: str, **kw: Any) -> AsyncIterator[Stack]:
    async with running_stack(url, admin_key=ADMIN_KEY, delay=0, **kw) as s:
        s.http.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield s


async def create(s: Stack, who: dict[str, str]) -> dict[str, Any]:
    r = await s.http.post("/api/operators", json=who)
    assert r.status_code == 201, r.text
    operator: dict[str, Any] = r.json()["operator"]
    return operator


async def login(s: Stack, email: str, password: str) -> httpx.AsyncClient:
    """A console session of the operator: the cookie, and the CSRF token on every request."""
    c = httpx.AsyncClient(base_url=s.url, timeout=30)
    s.exits.push_async_callback(c.aclose)
    r = await c.post("/console/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


async def chatwoot_thread(s: Stack, text: str = "hello", conv: int = 1) -> str:
    """A customer writes on Chatwoot and the bot answers: the thread's id."""
    await s.say(text, conv=conv)
    await s.wait_replies(1, conv)
    threads = (await s.http.get("/api/comms/threads", params={"channel": "chatwoot"})).json()
    return str(next(t["id"] for t in threads["threads"] if t["channel_key"].endswith(f":{conv}")))
