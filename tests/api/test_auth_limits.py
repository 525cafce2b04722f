"""Failed-authentication limits: every credential the bridge checks has a budget of wrong
tries per client address; over it, 429 with ``Retry-After`` — even for the right credential,
so guessing past the limit is worthless — while correct credentials never spend it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from chatbridge.api import create_app
from chatbridge.api.auth_limits import AuthFailures, address_key
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.ratelimit import RateLimited, RateLimiter
from tests.e2e.harness import Stack, running_stack

ADMIN_KEY = "limits-admin-key-0123"
TOKEN = "limits-agent-token-0123"
BUDGET = "3/minute"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_429(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 60
    return retry_after


async def test_wrong_admin_keys_are_limited_and_right_ones_never_spend(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, admin_key=ADMIN_KEY, auth_failure_limit=BUDGET) as s:
        # the right key, many times: the budget is for failures only
        for _ in range(10):
            assert (await s.http.get("/agents/status", headers=bearer(ADMIN_KEY))).is_success
        # no key at all is no guess: it spends nothing either
        for _ in range(5):
            assert (await s.http.get("/agents/status")).status_code == 401
        for _ in range(3):
            r = await s.http.get("/config/mappings", headers=bearer("a-wrong-admin-key-0"))
            assert r.status_code == 401
        r = await s.http.get("/config/mappings", headers=bearer("a-wrong-admin-key-1"))
        assert_429(r)
        assert r.json()["error"]["code"] == "rate_limited"
        # over the budget even the right key is refused (a right guess is worth nothing) …
        assert_429(await s.http.get("/agents/status", headers=bearer(ADMIN_KEY)))
        # … on the comms API and at the console's login too: it is the same secret
        assert_429(await s.http.get("/api/comms/threads", headers=bearer(ADMIN_KEY)))
        r = await s.http.post("/console/login", json={"key": ADMIN_KEY})
        assert_429(r)
        assert "chatbridge_console" not in r.cookies
        # another address has its own budget
        app = create_app(bridge=s.bridge)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as other:
            assert (await other.get("/agents/status", headers=bearer(ADMIN_KEY))).is_success


async def test_console_login_form_is_limited_with_a_page(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, admin_key=ADMIN_KEY, auth_failure_limit=BUDGET) as s:
        for _ in range(3):
            r = await s.http.post("/console/login", data={"key": "wrong"})
            assert r.status_code == 401
        r = await s.http.post("/console/login", data={"key": ADMIN_KEY})
        assert_429(r)
        assert "Too many wrong keys" in r.text
        assert "chatbridge_console" not in r.cookies


async def pull_stack(s: Stack) -> None:
    agent = AgentConfig(agent_id="puller", transport="http-pull", token=TOKEN)
    await s.bridge.save_mapping(InboxMapping(inbox_id=1, agent_config=agent))


async def test_wrong_pull_tokens_are_limited(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, transport="ws-dial-in", auth_failure_limit=BUDGET) as s:
        await pull_stack(s)

        async def poll(token: str, agent: str = "puller") -> httpx.Response:
            headers = {**bearer(token), "X-Agent-Id": agent}
            return await s.http.get("/api/agent/turns", params={"wait": 0}, headers=headers)

        assert (await poll(TOKEN)).status_code == 200
        codes = [(await poll("guess-number-0000000", agent)).status_code for agent in "abc"]
        assert codes == [401, 401, 401]
        assert_429(await poll(TOKEN))
        r = await s.http.post(
            "/api/agent/turns/t_1/reply",
            json={"type": "agent_message", "content": "x"},
            headers={**bearer(TOKEN), "X-Agent-Id": "puller"},
        )
        assert_429(r)


async def dial(url: str, token: str) -> dict[str, Any]:
    """One raw dial-in: the bridge's answer to ``hello``."""
    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "hello", "agent_id": "agent1", "token": token}))
        answer: dict[str, Any] = json.loads(await ws.recv())
        return answer


async def test_wrong_dial_in_tokens_are_limited_before_the_upgrade(sqlite_url: str) -> None:
    async with running_stack(
        sqlite_url, transport="ws-dial-in", route_token=TOKEN, auth_failure_limit="2/minute"
    ) as s:
        for _ in range(2):
            answer = await dial(s.ws_url, "guessed-token-00000")
            assert answer["type"] == "hello_error" and answer["error_code"] == "unauthorized"
        # over the budget: the upgrade itself is refused, right token or not
        with pytest.raises(InvalidStatus) as refused:
            await dial(s.ws_url, TOKEN)
        response = refused.value.response
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert not s.bridge.hub.is_connected("agent1")


async def test_wrong_action_api_keys_are_limited_in_the_apis_envelope(sqlite_url: str) -> None:
    api_key, admin_key = "limits-api-key-0123", "limits-wc-admin-key-0123"
    async with running_stack(
        sqlite_url,
        web_chat_api_key=api_key,
        web_chat_admin_key=admin_key,
        auth_failure_limit=BUDGET,
    ) as s:

        async def call(action: str, key: str) -> httpx.Response:
            return await s.http.get("/api/v1/", params={"action": action}, headers=bearer(key))

        assert (await call("inbox", api_key)).status_code == 200
        assert (await call("inbox", "guess-0000000000000")).status_code == 401
        assert (await call("sessions", "guess-0000000000001")).status_code == 401
        assert (await call("sessions", "free0ps")).status_code == 401
        r = await call("inbox", api_key)
        assert_429(r)
        body = r.json()
        assert body["success"] is False and body["code"] == 429
        assert body["error"] == "Too many failed authentication attempts"
        assert (await call("sessions", admin_key)).status_code == 429


async def test_budget_is_per_address_and_per_ipv6_block() -> None:
    assert address_key("203.0.113.5") == "203.0.113.5"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:203.0.113.5") == "203.0.113.5"

    settings = Settings(auth_failure_limit="2/minute", rate_limit_enabled=False)
    failures = AuthFailures(RateLimiter(settings), settings)
    for _ in range(2):
        await failures.guard("admin", "203.0.113.5")
        await failures.failed("admin", "203.0.113.5")
    with pytest.raises(RateLimited):
        await failures.guard("admin", "203.0.113.5")  # even with request limits switched off
    await failures.guard("admin", "203.0.113.6")  # another address
    await failures.guard("pull", "203.0.113.5")  # another credential
