"""SIGKILL the bridge process again and again under load: nothing lost, nothing doubled.

The bridge runs as a real child process (``python -m chatbridge serve``); the mock Chatwoot and
the mock agent run in the test. A load generator writes in several conversations (each message
only after the previous one of its conversation was acknowledged, as a customer would); a
killer SIGKILLs the bridge at random moments and starts it again. A webhook that got no
answer (the process was dead or died mid-request) is sent again with the same delivery id,
as Chatwoot's agent-bot retries do. At the end every acknowledged message must have exactly
one reply at the mock Chatwoot, in order per conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path

import httpx
import pytest

from chatbridge.store import Store
from chatbridge.testing.mock_agent import build_mock_agent
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import free_port, wait_until

CONVERSATIONS = 6
MESSAGES_EACH = 12
KILLS = 4


class BridgeProcess:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = env
        self.port = port
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        env = {**self.env, "CHATBRIDGE_INSTANCE_ID": f"crash-{self.starts}"}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chatbridge",
                "serve",
                "--port",
                str(self.port),
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                assert self.proc is not None and self.proc.returncode is None, self.log.read_text()
                try:
                    r = await http.get(f"http://127.0.0.1:{self.port}/ready", timeout=1)
                except httpx.HTTPError:
                    return False
                return r.status_code == 200

            await wait_until(ready, timeout=30)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _customer(mock: MockChatwoot, conv: int, acked: list[str]) -> None:
    for n in range(MESSAGES_EACH):
        spec = TriggerRequest(conversation_id=conv, inbox_id=1, content=f"c{conv}-m{n}")
        result = await mock.trigger("message_created", spec)
        delivery = result["delivery_id"]
        while result["status_code"] != 200:
            await asyncio.sleep(0.05)
            result = await mock.trigger(
                "message_created", TriggerRequest(delivery_id=delivery, conversation_id=conv)
            )
        assert result["response"]["status"] in ("accepted", "duplicate"), result
        acked.append(f"c{conv}-m{n}")
        await asyncio.sleep(random.uniform(0, 0.05))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_sigkill_under_load_loses_and_doubles_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    else:
        db_url = request.getfixturevalue("database_url_pg")
    rng = random.Random(20261121)
    agent = build_mock_agent("echo", agent_id="agent1")
    # A *user* token here (it may list messages; our replies' echoes come from a "user"):
    # the bot-token case, where only echoes through a proxy can serve as receipts, is
    # tests/chaos/test_sigkill.py.
    mock_app = create_mock_chatwoot(api_token="tok", webhook_timeout=5, token_kind="user")
    mock: MockChatwoot = mock_app.state.mock
    async with agent.serving("127.0.0.1", 0) as agent_port, serve_app(mock_app) as chatwoot_url:
        port = free_port()
        mock.webhook_url = f"http://127.0.0.1:{port}/webhook/chatwoot"
        mapping = [
            {
                "inbox_id": 1,
                "agent_config": {
                    "agent_id": "agent1",
                    "websocket_url": f"ws://127.0.0.1:{agent_port}",
                    "timeout_seconds": 30,
                },
            }
        ]
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("CHATBRIDGE_", "CHATWOOT_"))
            },
            "CHATBRIDGE_DATABASE_URL": db_url,
            "CHATWOOT_BASE_URL": chatwoot_url,
            "CHATWOOT_API_ACCESS_TOKEN": "tok",
            "INBOX_AGENT_MAPPINGS": json.dumps(mapping),
            "CHATBRIDGE_LEASE_SECONDS": "1",
            "CHATBRIDGE_POLL_INTERVAL": "0.05",
            "CHATBRIDGE_RETRY_BASE_SECONDS": "0.02",
            "CHATBRIDGE_RETRY_MAX_SECONDS": "0.5",
            "CHATBRIDGE_RECONNECT_INITIAL_DELAY": "0.05",
            "CHATBRIDGE_LOG_LEVEL": "WARNING",
        }
        bridge = BridgeProcess(env, port, tmp_path / "bridge.log")
        await bridge.start()
        acked: list[str] = []
        load = asyncio.gather(*(_customer(mock, c, acked) for c in range(1, CONVERSATIONS + 1)))
        try:
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                await bridge.kill()
                await asyncio.sleep(rng.uniform(0, 0.3))
                await bridge.start()
            await asyncio.wait_for(load, 120)

            def replies(conv: int) -> list[str]:
                return [
                    m["content"] for m in mock.received_messages if m["conversation_id"] == conv
                ]

            total = CONVERSATIONS * MESSAGES_EACH
            await wait_until(lambda: len(mock.received_messages) >= total, timeout=60)
            # longer than a lease: an orphaned lease would have been taken over by now
            await asyncio.sleep(1.5)
        finally:
            load.cancel()
            await bridge.stop()
        store = Store(db_url)
        try:
            counts = await store.counts()
        finally:
            await store.close()
        assert counts["turns"] == {"done": CONVERSATIONS * MESSAGES_EACH}, counts
        assert set(counts["deliveries"]) <= {"done", "dropped", "skipped"}, counts
        assert len(acked) == CONVERSATIONS * MESSAGES_EACH
        for conv in range(1, CONVERSATIONS + 1):
            expected = [f"Echo: c{conv}-m{n}" for n in range(MESSAGES_EACH)]
            assert replies(conv) == expected, f"conversation {conv}"
        assert bridge.starts == KILLS + 1
