"""The debounce window is durable and shared: a SIGKILL inside it, or a burst spread over
two replicas, still makes exactly one turn and one reply, with nothing lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chatbridge.agent import Agent, Turn
from chatbridge.policies import RoutePolicies
from chatbridge.testing.mock_chatwoot import MockChatwoot, TriggerRequest, create_mock_chatwoot
from chatbridge.testing.servers import bind_socket, serve_app
from tests.e2e.harness import agent_ws_url, dialing_in, wait_until
from tests.e2e.test_crash_restart import BridgeProcess, bridge_env
from tests.e2e.test_replicas_in_process import AGENT_TOKEN, cluster, dial_in_config, held_by


def recording_agent() -> tuple[Agent, list[list[str]]]:
    agent = Agent("agent1", reconnect_initial_delay=0.02, reconnect_max_delay=0.2)
    turns: list[list[str]] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        texts = [str(m["content"]) for m in turn.messages]
        turns.append(texts)
        return "R:" + " | ".join(texts)

    return agent, turns


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_sigkill_inside_a_debounce_window_still_gives_one_turn(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'window.db'}"
    else:
        db_url = request.getfixturevalue("database_url_pg")
    agent, turns = recording_agent()
    mock_app = create_mock_chatwoot(api_token="tok", webhook_timeout=60)
    mock: MockChatwoot = mock_app.state.mock
    listener = bind_socket()
    listener.listen(128)
    texts = ["hello", "my parcel", "has not arrived", "order 42"]
    with listener:
        async with agent.serving("127.0.0.1", 0) as agent_port, serve_app(mock_app) as cw_url:
            port = int(listener.getsockname()[1])
            mock.webhook_url = f"http://127.0.0.1:{port}/webhook/chatwoot"
            mapping = [
                {
                    "inbox_id": 1,
                    "agent_config": {
                        "agent_id": "agent1",
                        "websocket_url": f"ws://127.0.0.1:{agent_port}",
                        "timeout_seconds": 30,
                    },
                    # a window far longer than a restart takes on a loaded machine (the
                    # test checks it did not close before the burst went on)
                    "policies": RoutePolicies(debounce_ms=20_000, max_wait_ms=60_000).stored(),
                }
            ]
            env = bridge_env(
                db_url,
                cw_url,
                mapping,
                CHATBRIDGE_POLL_INTERVAL="0.1",
                CHATBRIDGE_RECONNECT_INITIAL_DELAY="0.05",
            )
            bridge = BridgeProcess(env, listener, tmp_path / "bridge.log")
            await bridge.start()
            try:
                for text in texts[:2]:
                    sent = await mock.trigger(
                        "message_created", TriggerRequest(conversation_id=1, content=text)
                    )
                    assert sent["status_code"] == 200, sent
                await bridge.kill()  # inside the window: the turn has not run
                assert turns == []
                killed_at = time.monotonic()
                await bridge.start()
                for text in texts[2:]:  # the burst goes on into the same window
                    sent = await mock.trigger(
                        "message_created", TriggerRequest(conversation_id=1, content=text)
                    )
                    assert sent["status_code"] == 200, sent
                    assert sent["response"]["status"] == "accepted", sent
                assert time.monotonic() - killed_at < 15, "the restart outlasted the window"
                await wait_until(lambda: mock.received_messages, timeout=60)
                await wait_until(lambda: turns, timeout=10)
            finally:
                await bridge.stop()
    assert turns == [texts], (turns, (tmp_path / "bridge.log").read_text()[-3000:])
    assert [m["content"] for m in mock.received_messages] == ["R:" + " | ".join(texts)]


async def test_a_burst_spread_over_two_replicas_is_one_turn(database_url_pg: str) -> None:
    agent, turns = recording_agent()
    policies = RoutePolicies(debounce_ms=3000, max_wait_ms=30_000)
    async with cluster(
        database_url_pg, dial_in_config(), n=2, policies=policies, poll_interval=0.2
    ) as c:
        async with dialing_in(agent, agent_ws_url(c.replicas[0].url), AGENT_TOKEN):
            await held_by(c, "agent1", "r0")
            texts = [f"part {n}" for n in range(5)]
            acks = []
            for n, text in enumerate(texts):
                sent = await c.say(n % 2, conv=21, text=text)  # r0, r1, r0, …
                assert sent["status_code"] == 200, sent
                acks.append(sent["response"])
            assert len({a["turn_id"] for a in acks}) == 1, acks
            await wait_until(lambda: c.replies(21), timeout=30)
            counts = await c.replicas[1].bridge.store.counts()
    assert counts["turns"] == {"done": 1}, counts
    assert turns == [texts]
    assert c.replies(21) == ["R:" + " | ".join(texts)]
