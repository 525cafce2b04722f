"""Protocol 1.3 features from an agent's config (every transport without a ``hello``): the
mapping API takes them (an unknown name refused), the agent's transport gets them, and the
hub sends a gated frame only to an agent whose config announced its feature."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from chatbridge.agent import Agent, Session
from chatbridge.config import AgentConfig
from tests.e2e.harness import running_stack

ADMIN = "test-admin-key-0123"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
EXPIRED = {"type": "session_expired", "session_id": "s_1", "reason": "idle", "data": {}}


def test_agent_config_features_are_checked_and_kept_in_the_options() -> None:
    config = AgentConfig(
        agent_id="a", websocket_url="ws://127.0.0.1:9", features=["sessions", "notices", "sessions"]
    )
    assert config.options()["features"] == ["notices", "sessions"]
    assert "features" not in AgentConfig(agent_id="a", websocket_url="ws://x:9").options()
    with pytest.raises(ValidationError, match="unknown features \\['sesions'\\]"):
        AgentConfig(agent_id="a", websocket_url="ws://127.0.0.1:9", features=["sesions"])


async def test_a_dialed_agent_gets_session_frames_once_its_mapping_announces_them(
    sqlite_url: str,
) -> None:
    agent = Agent("agent1")
    sessions: asyncio.Queue[Session] = asyncio.Queue()
    agent.on_session(sessions.put)
    async with running_stack(sqlite_url, agent=agent, admin_key=ADMIN) as s:
        hub = s.bridge.hub
        assert await hub.send_event("agent1", EXPIRED) is False  # announced nothing yet

        body: dict[str, Any] = {
            "inbox_id": 1,
            "agent_config": {
                "agent_id": "agent1",
                "websocket_url": f"ws://127.0.0.1:{s.agent_port}",
                "timeout_seconds": 5,
                "features": ["sessions", "teleport"],
            },
        }
        refused = await s.http.put("/config/mappings/1", headers=AUTH, json=body)
        assert refused.status_code == 422, refused.text
        assert "teleport" in refused.text
        transport = hub.transport("agent1")
        assert transport is not None and transport.features == frozenset()  # nothing changed

        body["agent_config"]["features"] = ["sessions"]
        changed = await s.http.put("/config/mappings/1", headers=AUTH, json=body)
        assert changed.status_code == 200, changed.text
        listed = (await s.http.get("/config/mappings", headers=AUTH)).json()["mappings"]
        assert listed[0]["agent_config"]["features"] == ["sessions"]
        assert hub.transport("agent1").features == {"sessions"}  # type: ignore[union-attr]
        await s.agent_connected()
        assert await hub.send_event("agent1", EXPIRED) is True
        async with asyncio.timeout(5):
            session = await sessions.get()
        assert (session.kind, session.reason) == ("expired", "idle")
