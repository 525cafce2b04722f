"""Rate limits: 429 with Retry-After and the error envelope; normal use never hits them."""

from __future__ import annotations

import os
import uuid

import pytest

from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.ratelimit import RateLimited, RateLimiter
from tests.e2e.harness import running_stack

REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_too_many_messages_from_one_session_get_429_with_retry_after(
    sqlite_url: str,
) -> None:
    async with running_stack(
        sqlite_url, webchat=True, delay=0, rate_limit_messages_session="3/minute"
    ) as s:
        sid = (await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})).json()[
            "session_id"
        ]
        path = f"/api/webchat/sessions/{sid}/messages"
        codes = [(await s.http.post(path, json={"text": f"m{i}"})).status_code for i in range(4)]
        assert codes == [202, 202, 202, 429]
        r = await s.http.post(path, json={"text": "again"})
        assert r.status_code == 429
        retry_after = int(r.headers["retry-after"])
        assert 1 <= retry_after <= 60
        error = r.json()["error"]
        assert error["code"] == "rate_limited"
        assert error["details"] == {"scope": "webchat_message_session", "retry_after": retry_after}
        # another visitor is not affected
        other = (await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})).json()
        r = await s.http.post(
            f"/api/webchat/sessions/{other['session_id']}/messages", json={"text": "hi"}
        )
        assert r.status_code == 202


async def test_messages_are_limited_per_ip_across_sessions(sqlite_url: str) -> None:
    """One address opening a new session for every message is still limited: the per-IP
    budget counts them all, whatever the session."""
    async with running_stack(
        sqlite_url,
        webchat=True,
        delay=0,
        rate_limit_messages_ip="3/minute",
        rate_limit_messages_session="100/minute",
    ) as s:
        codes = []
        for i in range(4):
            sid = (await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})).json()[
                "session_id"
            ]
            r = await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": f"m{i}"})
            codes.append(r.status_code)
        assert codes == [202, 202, 202, 429]
        assert r.json()["error"]["details"]["scope"] == "webchat_message_ip"


async def test_session_creation_is_limited_per_ip(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, webchat=True, rate_limit_session_create="2/minute") as s:
        codes = [
            (await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]


async def test_pull_agents_are_limited_per_agent_counting_only_their_own_polls(
    sqlite_url: str,
) -> None:
    token = "puller-token-0123456"
    async with running_stack(sqlite_url, transport="ws-dial-in", rate_limit_agent="2/minute") as s:
        puller = AgentConfig(agent_id="puller", transport="http-pull", token=token)
        await s.bridge.save_mapping(InboxMapping(inbox_id=1, agent_config=puller))

        async def poll(with_token: str) -> int:
            headers = {"Authorization": f"Bearer {with_token}", "X-Agent-Id": "puller"}
            r = await s.http.get("/api/agent/turns", params={"wait": 0}, headers=headers)
            return r.status_code

        # A stranger naming the agent is refused and spends nothing of the agent's budget
        # (its wrong tokens spend its own address's budget: test_auth_limits) …
        assert [await poll("not-the-token-at-all") for _ in range(3)] == [401, 401, 401]
        # … so the agent still gets its two polls a minute, and only then 429.
        assert [await poll(token) for _ in range(3)] == [200, 200, 429]


async def test_default_limits_never_block_normal_use() -> None:
    """A minute of each: a 5-second poller with a busy reply stream, a visitor typing fast,
    a widget long-polling and reloading. Sliding windows: a steady rate that passes for one
    minute passes for every minute after it."""
    s = Settings()
    limiter = RateLimiter(s)
    # the poller: 12 polls a minute, and up to 50 replies per poll
    for _ in range(12 * 51):
        await limiter.hit("agent", s.rate_limit_agent, "web_chat")
    # a visitor sending a message every 2 seconds for a minute
    for _ in range(30):
        await limiter.hit("webchat_message_session", s.rate_limit_messages_session, "sess")
        await limiter.hit("webchat_message_ip", s.rate_limit_messages_ip, "10.0.0.1")
    # a widget that reconnects and long-polls (25 s waits) plus page reloads
    for _ in range(20):
        await limiter.hit("webchat_history", s.rate_limit_history, "10.0.0.1")
        await limiter.hit("webchat_session", s.rate_limit_session_create, "10.0.0.1")


async def test_limits_are_shared_through_redis() -> None:
    """Two replicas (two limiters) on one Redis count together."""
    if os.environ.get("CI") != "true":
        import redis

        probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            probe.ping()
        except redis.RedisError:
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        finally:
            probe.close()
    settings = Settings(redis_url=REDIS_URL)
    a, b = RateLimiter(settings), RateLimiter(settings)
    key = uuid.uuid4().hex
    try:
        await a.hit("t", "3/minute", key)
        await b.hit("t", "3/minute", key)
        await a.hit("t", "3/minute", key)
        with pytest.raises(RateLimited) as refused:
            await b.hit("t", "3/minute", key)
        assert 1 <= refused.value.retry_after <= 60
    finally:
        await a.aclose()
        await b.aclose()
    # A request still running on a replica that is shutting down passes uncounted (counting
    # it would reopen a Redis connection nobody closes) and /ready stops claiming Redis.
    await a.hit("t", "3/minute", key)
    assert not await a.ping()


async def test_ready_reports_redis_when_it_is_configured(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, redis_url=REDIS_URL) as s:
        body = (await s.http.get("/ready")).json()
        if os.environ.get("CI") != "true" and body.get("redis") is False:
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        body.pop("backlog")
        assert body == {
            "status": "ready",
            "store": True,
            "workers": True,
            "redis": True,
            "replica": "e2e",
            "replicas": 1,
        }
    # a Redis that does not answer is reported, and the bridge stays ready (limits fail open,
    # the cluster layer falls back to polling)
    async with running_stack(sqlite_url, redis_url="redis://127.0.0.1:1/0") as s:
        r = await s.http.get("/ready")
        assert r.status_code == 200 and r.json()["redis"] is False
    async with running_stack(sqlite_url) as s:
        assert "redis" not in (await s.http.get("/ready")).json()
