"""``chatbridge check`` against real servers on 127.0.0.1, and against closed ports.

The command runs as a subprocess, as an operator runs it; the servers it reaches run in the
test's event loop: PostgreSQL (the suite's own database), a private ``redis-server``, the mock
Chatwoot, an SDK agent serving a WebSocket for dial-out and another answering webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chatbridge.agent import Agent
from chatbridge.store import Store
from chatbridge.testing.mock_chatwoot import create_mock_chatwoot
from chatbridge.testing.redis_server import RedisServer
from chatbridge.testing.servers import serve_app

TOKEN = "chatwoot-bot-token-0123"
DIAL_IN_TOKEN = "dial-in-token-0123456789"


async def chatbridge_check(cwd: Path, env: dict[str, str]) -> tuple[int, list[str], str]:
    """(exit code, stdout lines, stderr) of ``chatbridge check`` with only ``env`` set."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatbridge",
        "check",
        cwd=cwd,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI but not installed")
        pytest.skip("redis-server is not installed")
    async with RedisServer(workdir=tmp_path) as server:
        yield server.url


def newest_revision() -> str:
    from chatbridge.store.migrations import versions

    return max(p.name.split("_")[0] for p in Path(versions.__path__[0]).glob("0*.py"))


def mappings(*agents: dict[str, object]) -> str:
    return json.dumps(
        [{"inbox_id": n, "agent_config": agent} for n, agent in enumerate(agents, start=1)]
    )


async def test_every_check_passes_against_live_servers(
    tmp_path: Path, database_url_pg: str, redis_url: str
) -> None:
    ws_agent = Agent("ws-bot")
    hook_agent = Agent("hook-bot")
    chatwoot = create_mock_chatwoot(api_token=TOKEN, account_id=7)
    async with (
        ws_agent.serving() as ws_port,
        serve_app(hook_agent.webhook_app(None)) as hook_url,
        serve_app(chatwoot) as chatwoot_url,
    ):
        code, lines, err = await chatbridge_check(
            tmp_path,
            {
                "CHATBRIDGE_DATABASE_URL": database_url_pg,
                "CHATBRIDGE_REDIS_URL": redis_url,
                "CHATWOOT_BASE_URL": chatwoot_url,
                "CHATWOOT_API_ACCESS_TOKEN": TOKEN,
                "CHATWOOT_ACCOUNT_ID": "7",
                "CHATWOOT_WEBHOOK_SECRET": "chatwoot-webhook-secret-0123",
                "INBOX_AGENT_MAPPINGS": mappings(
                    {"agent_id": "ws-bot", "websocket_url": f"ws://127.0.0.1:{ws_port}"},
                    {"agent_id": "hook-bot", "webhook_url": f"{hook_url}/"},
                    {"agent_id": "pull-bot", "transport": "http-pull", "token": DIAL_IN_TOKEN},
                ),
                "CHATBRIDGE_AGENT_TOKENS": json.dumps({"dial-bot": DIAL_IN_TOKEN}),
            },
        )
    assert code == 0, (lines, err)
    where = database_url_pg.replace("postgresql+asyncpg://", "")
    assert lines == [
        "ok    configuration: valid (3 routes in the environment)",
        f"ok    database: postgresql+asyncpg://{where}: no schema yet (serve or migrate makes it)",
        "ok    redis: answers PING",
        f"ok    chatwoot: {chatwoot_url} accepts the access token",
        "ok    webhooks: every channel in use authenticates its webhooks",
        f"ok    agent ws-bot (ws-dial-out): ws://127.0.0.1:{ws_port} answers the WebSocket "
        "handshake",
        f"ok    agent hook-bot (http-webhook): {hook_url}/ answers HTTP (405 to a GET)",
        "ok    agent pull-bot (http-pull): waits for the agent to connect",
        "ok    agent dial-bot (ws-dial-in): waits for the agent to connect",
    ]


async def test_a_migrated_database_shows_its_revision_and_stored_agents(tmp_path: Path) -> None:
    """Agents stored through the console or the API are checked too (an environment route's
    agent, stored when the bridge started, only once)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    store = Store(url)
    try:
        await store.migrate()
        await store.upsert_agent(
            "env-bot", transport="ws-dial-out", url="ws://x", timeout_seconds=5
        )
        await store.upsert_agent("old-bot", transport="ws-dial-in", url=None, timeout_seconds=5)
        await store.upsert_agent(
            "off-bot", transport="ws-dial-out", url="ws://x", timeout_seconds=5, enabled=False
        )
    finally:
        await store.close()
    with closed_port() as port:
        code, lines, err = await chatbridge_check(
            tmp_path,
            {
                "CHATBRIDGE_DATABASE_URL": url,
                "INBOX_AGENT_MAPPINGS": mappings(
                    {"agent_id": "env-bot", "transport": "http-pull", "token": DIAL_IN_TOKEN}
                ),
                "CHATWOOT_BASE_URL": f"http://127.0.0.1:{port}",
            },
        )
    assert code == 1, (lines, err)  # Chatwoot (a route's channel) cannot be reached
    assert lines[1:] == [
        f"ok    database: {url}: schema revision {newest_revision()}",
        f"FAIL  chatwoot: cannot reach http://127.0.0.1:{port}",
        "ok    webhooks: Chatwoot not authenticated (allowed on 127.0.0.1 only)",
        "ok    agent env-bot (http-pull): waits for the agent to connect",
        "ok    stored agent old-bot (ws-dial-in): waits for the agent to connect",
    ]


async def test_closed_ports_are_fail_lines_and_exit_1(tmp_path: Path) -> None:
    with closed_port() as port:
        code, lines, err = await chatbridge_check(
            tmp_path,
            {
                "CHATBRIDGE_DATABASE_URL": f"postgresql+asyncpg://postgres:pw@127.0.0.1:{port}/x",
                "CHATBRIDGE_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "CHATWOOT_BASE_URL": f"http://127.0.0.1:{port}",
                "CHATWOOT_API_ACCESS_TOKEN": TOKEN,
                "INBOX_AGENT_MAPPINGS": mappings(
                    {"agent_id": "ws-bot", "websocket_url": f"ws://127.0.0.1:{port}"},
                    {"agent_id": "hook-bot", "webhook_url": f"http://127.0.0.1:{port}/turn"},
                ),
            },
        )
    assert code == 1, (lines, err)
    assert lines == [
        "ok    configuration: valid (2 routes in the environment)",
        f"FAIL  database: postgresql+asyncpg://postgres:***@127.0.0.1:{port}/x: connection refused",
        f"FAIL  redis: redis://127.0.0.1:{port}/0: connection refused",
        f"FAIL  chatwoot: cannot reach http://127.0.0.1:{port}",
        "ok    webhooks: Chatwoot not authenticated (allowed on 127.0.0.1 only)",
        f"FAIL  agent ws-bot (ws-dial-out): ws://127.0.0.1:{port}: connection refused",
        f"FAIL  agent hook-bot (http-webhook): http://127.0.0.1:{port}/turn: connection refused",
    ]
    assert "pw" not in "\n".join(lines)


async def test_a_refused_chatwoot_token_fails(tmp_path: Path) -> None:
    async with serve_app(create_mock_chatwoot(api_token=TOKEN)) as chatwoot_url:
        code, lines, _ = await chatbridge_check(
            tmp_path,
            {"CHATWOOT_BASE_URL": chatwoot_url, "CHATWOOT_API_ACCESS_TOKEN": "not-the-token"},
        )
    assert code == 1
    assert lines[2] == (
        f"FAIL  chatwoot: {chatwoot_url} refused the access token (HTTP 401): check "
        "CHATWOOT_API_ACCESS_TOKEN and CHATWOOT_ACCOUNT_ID"
    )


async def test_sqlite_in_a_missing_folder_fails_and_nothing_is_created(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nowhere/bridge.db"
    code, lines, _ = await chatbridge_check(tmp_path, {"CHATBRIDGE_DATABASE_URL": url})
    assert code == 1
    assert lines == [
        "ok    configuration: valid (0 routes in the environment)",
        f"FAIL  database: {url}: the folder {tmp_path}/nowhere does not exist",
        "ok    webhooks: every channel in use authenticates its webhooks",
    ]
    assert not (tmp_path / "nowhere").exists()


async def test_a_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, lines, err = await chatbridge_check(tmp_path, {"CHATBRIDGE_PORT": "http"})
    assert (code, lines) == (2, [])
    assert err.splitlines() == [
        "CHATBRIDGE_PORT: 'http' is not a whole number; example: CHATBRIDGE_PORT=8000"
    ]


async def test_a_public_host_with_unsigned_webhooks_fails_as_serve_would(tmp_path: Path) -> None:
    code, lines, _ = await chatbridge_check(
        tmp_path,
        {
            "CHATBRIDGE_HOST": "0.0.0.0",
            "INBOX_AGENT_MAPPINGS": mappings(
                {"agent_id": "pull-bot", "transport": "http-pull", "token": DIAL_IN_TOKEN}
            ),
            "CHATWOOT_BASE_URL": "http://127.0.0.1:9",
        },
    )
    assert code == 1
    assert (
        "FAIL  webhooks: refusing to serve on 0.0.0.0: the webhooks of Chatwoot are "
        "unauthenticated. Set their secrets, bind to 127.0.0.1, or set "
        "CHATBRIDGE_ALLOW_UNSIGNED_WEBHOOKS=true if something in front authenticates them."
    ) in lines
