"""A route's named agents through the management API: saved, shown, validated."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.harness import Stack, running_stack, wait_until


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
    "config of another agent": (
        [{"agent_id": "a2", "role": "billing", "agent_config": {"agent_id": "a3"}}],
        "agent_config.agent_id 'a3' is not 'a2'",
    ),
    "the default's config twice": (
        [{"agent_id": "agent1", "role": "guide", "agent_config": {"agent_id": "agent1"}}],
        "'agent1' is configured by the route's agent_config",
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


async def test_a_named_agent_with_its_own_config_is_saved_and_reached(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        helper = {
            "agent_id": "helper",
            "role": "billing",
            "agent_config": {
                "agent_id": "helper",
                "websocket_url": f"ws://127.0.0.1:{s.agent_port}",
                "timeout_seconds": 7,
            },
        }
        # a refused save (the route exists) writes no agent row either
        r = await s.http.post("/config/mappings", json=body(s, [helper], inbox_id=1))
        assert r.status_code == 409, r.text
        assert await s.bridge.store.get_agent("helper") is None

        r = await s.http.post("/config/mappings", json=body(s, [helper]))
        assert r.status_code == 201, r.text
        stored = await s.bridge.store.get_agent("helper")
        assert stored is not None and stored.url == f"ws://127.0.0.1:{s.agent_port}"
        await wait_until(lambda: s.bridge.hub.is_connected("helper"))
        [_, two] = (await s.http.get("/config/mappings")).json()["mappings"]
        shown = {a["agent_id"]: a.get("agent_config") for a in two["agents"]}
        assert shown["agent1"] is None  # the default's config is the route's agent_config
        assert shown["helper"] is not None
        assert shown["helper"]["websocket_url"] == f"ws://127.0.0.1:{s.agent_port}"
        assert shown["helper"]["timeout_seconds"] == 7
