"""A route's named agents through the management API: saved, shown, validated."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.harness import Stack, running_stack


def body(stack: Stack, agents: list[dict[str, Any]], inbox_id: int = 2) -> dict[str, Any]:
    return {
        "inbox_id": inbox_id,
        "agent_config": {
            "agent_id": "agent1",
            "websocket_url": f"ws://127.0.0.1:{stack.agent_port}",
            "timeout_seconds": 5,
        },
        "agents": agents,
    }


INVALID = {
    "agent twice": (
        [{"agent_id": "a2", "role": "billing"}, {"agent_id": "a2", "role": "shipping"}],
        "agent 'a2' is listed twice",
    ),
    "role twice (any case)": (
        [{"agent_id": "a2", "role": "billing"}, {"agent_id": "a3", "role": "Billing"}],
        "role 'Billing' is given to two agents",
    ),
    "another default": (
        [{"agent_id": "a2", "role": "billing", "default": True}],
        "the default agent is agent_config's ('agent1'), not 'a2'",
    ),
    "role 'default' taken": (
        [{"agent_id": "a2", "role": "default"}],
        "role 'default' it would get is taken",
    ),
    "empty role": ([{"agent_id": "a2", "role": ""}], "agents.0.role"),
    "no role": ([{"agent_id": "a2"}], "agents.0.role"),
    "too many": ([{"agent_id": f"a{i}", "role": f"r{i}"} for i in range(21)], "agents"),
}


@pytest.mark.parametrize("case", INVALID)
async def test_invalid_agents_are_refused_naming_the_problem(sqlite_url: str, case: str) -> None:
    agents, words = INVALID[case]
    async with running_stack(sqlite_url) as s:
        r = await s.http.post("/config/mappings", json=body(s, agents))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_request" and words in error["message"], error
        # nothing was written
        assert [r.inbox_id for r in await s.bridge.store.list_routes()] == [1]


async def test_agents_are_saved_shown_and_cleared(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        r = await s.http.post(
            "/config/mappings", json=body(s, [{"agent_id": "billing-bot", "role": "billing"}])
        )
        assert r.status_code == 201, r.text
        expected = [
            # agent_config's agent joins as the default
            {"agent_id": "agent1", "role": "default", "default": True},
            {"agent_id": "billing-bot", "role": "billing", "default": False},
        ]
        assert r.json()["mapping"]["agents"] == expected
        listed = (await s.http.get("/config/mappings")).json()["mappings"]
        assert [m["agents"] for m in listed] == [[], expected]
        assert s.bridge.route_for("chatwoot", 2).names("billing-bot")  # type: ignore[union-attr]

        named = [
            {"agent_id": "billing-bot", "role": "billing"},
            {"agent_id": "agent1", "role": "guide"},
        ]
        r = await s.http.put("/config/mappings/2", json=body(s, named))
        assert r.status_code == 200, r.text
        assert r.json()["mapping"]["agents"] == [
            {"agent_id": "billing-bot", "role": "billing", "default": False},
            {"agent_id": "agent1", "role": "guide", "default": True},
        ]
        r = await s.http.put("/config/mappings/2", json=body(s, []))
        assert r.status_code == 200 and r.json()["mapping"]["agents"] == []
