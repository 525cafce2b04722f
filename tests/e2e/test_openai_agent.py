"""End to end over real sockets with an openai agent: mock Chatwoot → bridge → the fake
OpenAI-compatible model (``chatbridge.testing.fake_openai``) → reply in Chatwoot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from chatbridge.config import AgentConfig
from chatbridge.testing.fake_openai import Answer, FakeOpenAI, create_fake_openai
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import assert_typing_paired, running_stack, wait_until

MODEL = "gpt-test"
KEY = "sk-route-secret-4711"
PROMPT = "You are the shop's assistant. Answer in one sentence."
FALLBACK = "Sorry, our assistant is unavailable; a colleague will answer soon."


@dataclass
class Model:
    fake: FakeOpenAI
    base_url: str

    def bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self.fake.completions()]


@asynccontextmanager
async def serve_model(**options: Any) -> AsyncIterator[Model]:
    app = create_fake_openai(**options)
    async with serve_app(app) as url:
        yield Model(app.state.fake, f"{url}/v1")


@pytest.fixture
async def model() -> AsyncIterator[Model]:
    async with serve_model() as m:
        yield m


@pytest.fixture
async def keyed_model() -> AsyncIterator[Model]:
    """A model server that wants ``Authorization: Bearer sk-right``."""
    async with serve_model(api_key="sk-right") as m:
        yield m


def openai_agent(model: Model, **kw: Any) -> AgentConfig:
    fields: dict[str, Any] = {
        "agent_id": "agent1",
        "transport": "openai",
        "base_url": model.base_url,
        "model": MODEL,
        "api_key": KEY,
        "system_prompt": PROMPT,
        "timeout_seconds": 5,
        **kw,
    }
    return AgentConfig(**{k: v for k, v in fields.items() if v is not None})


async def test_messages_are_answered_by_the_model_with_history(
    database_url: str, model: Model
) -> None:
    async with running_stack(database_url, agent_config=openai_agent(model)) as s:
        await s.say("Hello model, where is order 4711?", conv=1)
        assert await s.wait_replies(1, conv=1) == ["echo: Hello model, where is order 4711?"]
        await s.idle()
        assert s.actions(1, kinds=("message",)) == ["message"]
        assert_typing_paired(s.actions(1))

        await s.say("And when will it arrive?", conv=1)
        assert await s.wait_replies(2, conv=1) == [
            "echo: Hello model, where is order 4711?",
            "echo: And when will it arrive?",
        ]
        await s.idle()
        assert s.actions(1, kinds=("message",)) == ["message", "message"]
        assert_typing_paired(s.actions(1))

        first, second = model.fake.completions()
        assert first.json == {
            "model": MODEL,
            "stream": True,
            "messages": [
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": "Hello model, where is order 4711?"},
            ],
        }
        assert second.json["messages"] == [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": "Hello model, where is order 4711?"},
            {"role": "assistant", "content": "echo: Hello model, where is order 4711?"},
            {"role": "user", "content": "And when will it arrive?"},
        ]
        assert {r.headers["authorization"] for r in (first, second)} == {f"Bearer {KEY}"}
        assert (await s.bridge.store.counts())["turns"] == {"done": 2}
        status = await s.agent_status()
        assert (status["transport"], status["connected"]) == ("openai", True)
        assert status["turns_answered"] == 2
        assert status["last_seen"] is not None


async def test_conversations_do_not_share_history(sqlite_url: str, model: Model) -> None:
    async with running_stack(sqlite_url, agent_config=openai_agent(model)) as s:
        await s.say("first conversation", conv=1)
        await s.wait_replies(1, conv=1)
        await s.say("second conversation", conv=2)
        assert await s.wait_replies(1, conv=2) == ["echo: second conversation"]
        await s.idle()
        assert model.bodies()[1]["messages"] == [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": "second conversation"},
        ]


async def test_the_settings_key_is_used_when_the_route_has_none(
    sqlite_url: str, model: Model
) -> None:
    agent = openai_agent(model, api_key=None, system_prompt=None)
    async with running_stack(sqlite_url, agent_config=agent, openai_api_key="sk-from-env") as s:
        await s.say("hi")
        assert await s.wait_replies(1) == ["echo: hi"]
        [request] = model.fake.completions()
        assert request.headers["authorization"] == "Bearer sk-from-env"
        assert request.json["messages"] == [{"role": "user", "content": "hi"}]


async def test_a_model_refusing_the_key_gives_the_routes_fallback(
    sqlite_url: str, keyed_model: Model
) -> None:
    agent = openai_agent(keyed_model, api_key="sk-wrong")
    async with running_stack(
        sqlite_url, agent_config=agent, mapping={"fallback_text": FALLBACK}
    ) as s:
        await s.say("Is anybody there?")
        assert await s.wait_replies(1) == [FALLBACK]
        await s.idle()
        assert s.replies() == [FALLBACK]
        assert s.actions(1, kinds=("message",)) == ["message"]
        [request] = keyed_model.fake.completions()  # a 401 is not retried
        assert request.headers["authorization"] == "Bearer sk-wrong"
        status = await s.agent_status()
        assert status["transport"] == "openai"
        assert status["connected"] is False  # its last call failed
        assert status["consecutive_failures"] == 1
        assert status["inboxes"] == [{"channel": "chatwoot", "inbox_id": 1}]


async def test_the_agent_recovers_after_a_refused_call(sqlite_url: str, model: Model) -> None:
    model.fake.plan(Answer.unauthorized("Your key was revoked."))
    async with running_stack(
        sqlite_url, agent_config=openai_agent(model), mapping={"fallback_text": FALLBACK}
    ) as s:
        await s.say("first try", conv=1)
        assert await s.wait_replies(1, conv=1) == [FALLBACK]
        await wait_until(lambda: not s.bridge.hub.is_connected("agent1"))
        await s.say("second try", conv=2)
        assert await s.wait_replies(1, conv=2) == ["echo: second try"]
        await s.idle()
        status = await s.agent_status()
        assert (status["connected"], status["consecutive_failures"]) == (True, 0)
        assert status["last_seen"] is not None


async def test_a_429_is_retried_and_answered_once(sqlite_url: str, model: Model) -> None:
    model.fake.plan(Answer.rate_limited(1), Answer.server_error(503))
    async with running_stack(sqlite_url, agent_config=openai_agent(model)) as s:
        await s.say("busy model")
        assert await s.wait_replies(1) == ["echo: busy model"]
        await s.idle()
        assert s.replies() == ["echo: busy model"]
        assert len(model.fake.completions()) == 3


async def test_mappings_show_that_a_key_is_set_but_never_the_key(
    sqlite_url: str, model: Model
) -> None:
    agent = openai_agent(model, temperature=0.3, max_tokens=200, max_history=5)
    async with running_stack(sqlite_url, agent_config=agent) as s:
        r = await s.http.get("/config/mappings")
        assert r.status_code == 200, r.text
        assert KEY not in r.text
        [mapping] = r.json()["mappings"]
        config = mapping["agent_config"]
        assert config["agent_id"] == "agent1"
        assert config["transport"] == "openai"
        assert config["base_url"] == model.base_url
        assert (config["model"], config["system_prompt"]) == (MODEL, PROMPT)
        assert (config["temperature"], config["max_tokens"], config["max_history"]) == (
            0.3,
            200,
            5,
        )
        assert config["api_key_set"] is True
        assert "api_key" not in config
        assert config["websocket_url"] is None
        r = await s.http.get("/agents/status")
        assert KEY not in r.text


async def test_a_mapping_without_model_is_refused_and_nothing_stored(
    sqlite_url: str, model: Model
) -> None:
    async with running_stack(sqlite_url, agent_config=openai_agent(model)) as s:
        before = (await s.http.get("/config/mappings")).json()
        agents_before = [a.id for a in await s.bridge.store.list_agents()]
        assert agents_before == ["agent1"]
        body = {
            "inbox_id": 2,
            "agent_config": {
                "agent_id": "agent2",
                "transport": "openai",
                "base_url": model.base_url,
                "api_key": "sk-never-stored",
            },
        }
        r = await s.http.post("/config/mappings", json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/json")
        error = r.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["message"].startswith("agent_config: ")
        assert error["message"].endswith("openai needs base_url and model")
        assert [d["loc"] for d in error["details"]] == [["body", "agent_config"]]
        assert "sk-never-stored" not in r.text
        assert (await s.http.get("/config/mappings")).json() == before
        assert [a.id for a in await s.bridge.store.list_agents()] == agents_before
        assert "agent2" not in {
            a["agent_id"] for a in (await s.http.get("/agents/status")).json()["agents"]
        }


async def test_a_mapping_added_at_runtime_answers_with_its_own_prompt(
    sqlite_url: str, model: Model
) -> None:
    # openai_api_key=None: whatever CHATBRIDGE_OPENAI_API_KEY the environment has
    async with running_stack(
        sqlite_url, agent_config=openai_agent(model), openai_api_key=None
    ) as s:
        body = {
            "inbox_id": 2,
            "agent_config": {
                "agent_id": "agent2",
                "transport": "openai",
                "base_url": model.base_url,
                "model": "other-model",
                "system_prompt": "You answer inbox two.",
            },
        }
        r = await s.http.post("/config/mappings", json=body)
        assert r.status_code == 201, r.text
        await s.say("hello inbox two", conv=7, inbox_id=2)
        assert await s.wait_replies(1, conv=7) == ["echo: hello inbox two"]
        [request] = model.fake.completions()
        assert request.json["model"] == "other-model"
        assert request.json["messages"][0] == {"role": "system", "content": "You answer inbox two."}
        assert "authorization" not in request.headers  # no key on the route, none in settings
