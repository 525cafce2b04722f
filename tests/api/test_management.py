"""The management API over real sockets: probes, the admin key, agent status, routes (CRUD,
taking effect, surviving a restart), dead letters, metrics and the published schemas."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema.validators import validator_for
from prometheus_client.parser import text_string_to_metric_families

from chatbridge.api import create_app
from chatbridge.protocol import AGENT_TYPES, BRIDGE_TYPES
from chatbridge.testing.mock_chatwoot import TriggerRequest
from tests.api.conftest import NO_KEEPALIVE
from tests.e2e.harness import Stack, running_stack, wait_until

AUTH = {"Authorization": "Bearer test-admin-key-0123", **NO_KEEPALIVE}
PROTECTED = [
    ("GET", "/agents/status"),
    ("GET", "/config/mappings"),
    ("POST", "/config/mappings"),
    ("PUT", "/config/mappings/2"),
    ("DELETE", "/config/mappings/1"),
    ("GET", "/dead-letters"),
    ("POST", "/dead-letters/1/retry"),
    ("POST", "/dead-letters/1/discard"),
    ("GET", "/metrics"),
]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


def mapping(inbox_id: int, stack: Stack, **extra: Any) -> dict[str, Any]:
    """A mapping body for ``inbox_id`` answered by the stack's agent."""
    return {
        "inbox_id": inbox_id,
        "agent_config": {
            "agent_id": "agent1",
            "websocket_url": f"ws://127.0.0.1:{stack.agent_port}",
            "timeout_seconds": 5,
        },
        **extra,
    }


# --------------------------------------------------------------------------- probes and the key


async def test_probes_are_open_and_the_admin_key_guards_everything_else(sqlite_url: str) -> None:
    # many wrong keys on purpose: the failed-key budget is raised (test_auth_limits proves it)
    async with running_stack(
        sqlite_url, admin_key="test-admin-key-0123", auth_failure_limit="1000/minute"
    ) as s:
        health = await s.http.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await s.http.get("/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert set(body.pop("backlog")) <= {"turns", "deliveries"}  # filled by housekeeping
        assert body == {"status": "ready", "store": True, "workers": True}

        for method, path in PROTECTED:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "Bearer k2"},
                {"Authorization": "Basic k"},
                {"Authorization": "test-admin-key-0123"},
            ):
                r = await s.http.request(
                    method, path, headers={**headers, **NO_KEEPALIVE}, json=mapping(2, s)
                )
                error = error_of(r, 401, "unauthorized")
                assert "admin key" in error["message"]
        # nothing was done by the refused writes
        assert [
            m["inbox_id"]
            for m in (await s.http.get("/config/mappings", headers=AUTH)).json()["mappings"]
        ] == [1]
        for path in ("/agents/status", "/config/mappings", "/dead-letters", "/metrics"):
            assert (await s.http.get(path, headers=AUTH)).status_code == 200, path


async def test_without_a_key_only_loopback_clients_are_let_in(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        assert (await s.http.get("/agents/status")).status_code == 200  # we are 127.0.0.1
        # The same bridge seen from another host (the app shares it; its lifespan is not run).
        app = create_app(bridge=s.bridge)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as remote:
            error = error_of(await remote.get("/config/mappings"), 403, "forbidden")
            assert "CHATBRIDGE_ADMIN_KEY" in error["message"]
            assert (await remote.get("/health")).status_code == 200


# --------------------------------------------------------------------------- agents


async def test_agents_status_reports_the_connection_the_breaker_and_latency(
    sqlite_url: str,
) -> None:
    async with running_stack(sqlite_url, admin_key="test-admin-key-0123", delay=0.0) as s:
        await s.say("hello")
        await s.wait_replies(1)
        await s.idle()
        r = await s.http.get("/agents/status", headers=AUTH)
        assert r.status_code == 200
        [agent] = r.json()["agents"]
        assert agent["agent_id"] == "agent1"
        assert agent["transport"] == "ws-dial-out"
        assert agent["connected"] is True
        assert agent["last_seen"] == pytest.approx(time.time(), abs=30)
        assert agent["in_flight_turns"] == 0
        assert agent["turns_answered"] == 1
        assert agent["breaker"] == "closed" and agent["consecutive_failures"] == 0
        assert agent["latency_ms_p50"] >= 0 and agent["latency_ms_p95"] >= agent["latency_ms_p50"]
        assert agent["inboxes"] == [{"channel": "chatwoot", "inbox_id": 1}]


# --------------------------------------------------------------------------- mappings

INVALID_MAPPINGS: dict[str, tuple[Any, str]] = {
    "no agent_config": ({"inbox_id": 5}, "agent_config"),
    "inbox_id a string": ({"inbox_id": "five", "agent_config": {"agent_id": "a"}}, "inbox_id"),
    "negative inbox_id": ({"inbox_id": -1, "agent_config": {"agent_id": "a"}}, "inbox_id"),
    "inbox_id over int32": ({"inbox_id": 2**31, "agent_config": {"agent_id": "a"}}, "inbox_id"),
    "empty agent_id": ({"inbox_id": 5, "agent_config": {"agent_id": ""}}, "agent_id"),
    "http url": (
        {"inbox_id": 5, "agent_config": {"agent_id": "a", "websocket_url": "http://x"}},
        "scheme isn't ws or wss",
    ),
    "url with a NUL": (
        {"inbox_id": 5, "agent_config": {"agent_id": "a", "websocket_url": "ws://a\x00b"}},
        "websocket_url",
    ),
    "url with a bad port": (
        {"inbox_id": 5, "agent_config": {"agent_id": "a", "websocket_url": "ws://a:99999"}},
        "websocket_url",
    ),
    "zero timeout": (
        {"inbox_id": 5, "agent_config": {"agent_id": "a", "timeout_seconds": 0}},
        "timeout_seconds",
    ),
    "unknown reply_mode": (
        {"inbox_id": 5, "reply_mode": "later", "agent_config": {"agent_id": "a"}},
        "reply_mode",
    ),
    "fallback_text with a NUL": (
        {"inbox_id": 5, "fallback_text": "\x00", "agent_config": {"agent_id": "a"}},
        "fallback_text",
    ),
    "a JSON array": ([1, 2], "body"),
}


async def test_mappings_can_be_listed_created_changed_and_deleted(database_url: str) -> None:
    async with running_stack(database_url, admin_key="test-admin-key-0123") as s:
        listed = (await s.http.get("/config/mappings", headers=AUTH)).json()["mappings"]
        assert [(m["inbox_id"], m["agent_id"]) for m in listed] == [(1, "agent1")]
        assert listed[0]["agent_config"]["websocket_url"] == f"ws://127.0.0.1:{s.agent_port}"

        created = await s.http.post("/config/mappings", headers=AUTH, json=mapping(2, s))
        assert created.status_code == 201, created.text
        assert created.json()["mapping"]["inbox_id"] == 2

        again = await s.http.post("/config/mappings", headers=AUTH, json=mapping(2, s))
        assert "already mapped" in error_of(again, 409, "mapping_exists")["message"]

        # Another process maps inbox 9; this one's route cache does not know it yet. A POST is
        # still a 409, and changes nothing: not the route, not the agent it names.
        await s.bridge.store.save_route(
            channel="chatwoot",
            inbox_id=9,
            agent_id="agent1",
            reply_mode="async",
            timeout_seconds=5,
            fallback_text="theirs",
            on_failure="fallback",
            agent_bot_mode=False,
        )
        ours = mapping(9, s, fallback_text="ours")
        ours["agent_config"]["websocket_url"] = "ws://127.0.0.1:9"
        error_of(
            await s.http.post("/config/mappings", headers=AUTH, json=ours), 409, "mapping_exists"
        )
        [nine] = [r for r in await s.bridge.store.list_routes() if r.inbox_id == 9]
        assert nine.fallback_text == "theirs"
        agent = await s.bridge.store.get_agent("agent1")
        assert agent is not None and agent.url == f"ws://127.0.0.1:{s.agent_port}"
        assert s.bridge.hub.is_connected("agent1")
        assert (await s.http.delete("/config/mappings/9", headers=AUTH)).status_code == 200

        for body, words in INVALID_MAPPINGS.values():
            r = await s.http.post("/config/mappings", headers=AUTH, json=body)
            error = error_of(r, 422, "invalid_request")
            assert words in error["message"] + json.dumps(error["details"]), (body, error)
        r = await s.http.post(
            "/config/mappings",
            headers={**AUTH, "Content-Type": "application/json"},
            content=b'{"inbox_id": 5,',
        )
        error_of(r, 422, "invalid_request")
        r = await s.http.post("/config/mappings", headers=AUTH, json=mapping(5, s, channel="sms"))
        assert "'sms'" in error_of(r, 422, "unknown_channel")["message"]

        updated = await s.http.put(
            "/config/mappings/2", headers=AUTH, json=mapping(2, s, fallback_text="Back soon")
        )
        assert updated.status_code == 200 and updated.json()["created"] is False
        assert updated.json()["mapping"]["fallback_text"] == "Back soon"
        put_new = await s.http.put("/config/mappings/3", headers=AUTH, json=mapping(3, s))
        assert put_new.status_code == 201 and put_new.json()["created"] is True
        mismatch = await s.http.put("/config/mappings/4", headers=AUTH, json=mapping(3, s))
        error_of(mismatch, 400, "inbox_mismatch")
        too_big = await s.http.put("/config/mappings/4294967296", headers=AUTH, json=mapping(3, s))
        error_of(too_big, 422, "invalid_request")

        assert (await s.http.delete("/config/mappings/3", headers=AUTH)).json() == {
            "deleted": True,
            "inbox_id": 3,
            "channel": "chatwoot",
        }
        missing = await s.http.delete("/config/mappings/3", headers=AUTH)
        assert "inbox 3" in error_of(missing, 404, "not_found")["message"]
        bad_channel = await s.http.delete("/config/mappings/1?channel=%00", headers=AUTH)
        error_of(bad_channel, 422, "invalid_request")

        listed = (await s.http.get("/config/mappings", headers=AUTH)).json()["mappings"]
        assert [m["inbox_id"] for m in listed] == [1, 2]

        # the new route takes effect at once: inbox 2 gets a turn and a reply
        sent = await s.say("new inbox here", conv=20, inbox_id=2)
        assert sent["status_code"] == 200 and sent["response"]["turn_id"]
        assert await s.wait_replies(1, conv=20) == ["Echo: new inbox here"]
        # and a deleted one stops at once
        gone = await s.say("anyone?", conv=30, inbox_id=3)
        assert gone["status_code"] == 404 and gone["response"]["error"]["code"] == "unknown_inbox"
        await s.idle()

    # the routes live in the database: a new process on it has them
    async with running_stack(database_url, admin_key="test-admin-key-0123") as s:
        listed = (await s.http.get("/config/mappings", headers=AUTH)).json()["mappings"]
        assert [(m["inbox_id"], m["fallback_text"]) for m in listed] == [
            (1, None),
            (2, "Back soon"),
        ]
        # (a fresh mock Chatwoot counts message ids from 1 again: pick an unused one)
        await s.say("still routed?", conv=21, inbox_id=2, message_id=5000)
        assert await s.wait_replies(1, conv=21) == ["Echo: still routed?"]


# --------------------------------------------------------------------------- dead letters


async def test_a_dead_letter_is_listed_and_retried(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, admin_key="test-admin-key-0123", delay=0.0) as s:
        # Chatwoot answers 404 for the conversation (a permanent error): the reply dead-letters.
        payload, _ = s.mock.build_event(
            "message_created", TriggerRequest(conversation_id=7, content="lost", inbox_id=1)
        )
        conversation = s.mock.conversations.pop(7)
        r = await s.http.post("/webhook/chatwoot", json=payload)
        assert r.status_code == 200, r.text

        async def dead_letters() -> list[dict[str, Any]]:
            r = await s.http.get("/dead-letters", headers=AUTH)
            return r.json()["dead_letters"]

        [dead] = await wait_until(dead_letters)
        assert dead["kind"] == "message" and dead["text"] == "Echo: lost"
        assert dead["channel"] == "chatwoot" and dead["channel_key"] == "1:7"
        assert "404" in dead["last_error"] and dead["turn_id"].startswith("t_")

        s.mock.conversations[7] = conversation  # Chatwoot is fixed
        r = await s.http.post(f"/dead-letters/{dead['id']}/retry", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"retried": True, "id": dead["id"]}
        assert await s.wait_replies(1, conv=7) == ["Echo: lost"]
        await s.idle()
        assert await dead_letters() == []
        again = await s.http.post(f"/dead-letters/{dead['id']}/retry", headers=AUTH)
        error_of(again, 404, "not_found")
        for bad in ("0", "-1", "x", str(2**63)):
            error_of(
                await s.http.post(f"/dead-letters/{bad}/retry", headers=AUTH),
                422,
                "invalid_request",
            )
        error_of(await s.http.get("/dead-letters?limit=0", headers=AUTH), 422, "invalid_request")


# --------------------------------------------------------------------------- metrics and documents


async def test_metrics_are_prometheus_text(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, admin_key="test-admin-key-0123", delay=0.0) as s:
        await s.say("count me")
        await s.wait_replies(1)
        await s.idle()
        r = await s.http.get("/metrics", headers=AUTH)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        ours = {name for name in families if name.startswith("chatbridge_")}
        assert {"chatbridge_webhooks", "chatbridge_turns"} <= ours, sorted(families)
        webhooks = {
            s.labels["result"]: s.value
            for s in families["chatbridge_webhooks"].samples
            if s.name == "chatbridge_webhooks_total"
        }
        assert webhooks["accepted"] == 1


async def test_the_protocol_schema_is_a_json_schema_naming_every_message_type(
    sqlite_url: str,
) -> None:
    async with running_stack(sqlite_url) as s:
        r = await s.http.get("/api/protocol/schema.json")
        assert r.status_code == 200
        schema = r.json()
        validator = validator_for(schema)
        validator.check_schema(schema)
        named: set[str] = set()
        for definition in schema["$defs"].values():
            kind = definition.get("properties", {}).get("type", {})
            named.update([kind["const"]] if "const" in kind else kind.get("enum", []))
        assert named >= BRIDGE_TYPES | AGENT_TYPES, sorted((BRIDGE_TYPES | AGENT_TYPES) - named)
        check = validator(schema)
        assert check.is_valid({"type": "ping"}) or check.is_valid({"type": "ping", "ts": 1})
        assert not check.is_valid({"type": "no_such_type"})


async def test_the_openapi_document_describes_the_api_and_nothing_else(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        r = await s.http.get("/openapi.json")
        assert r.status_code == 200
        doc = r.json()
        assert doc["openapi"].startswith("3.")
        assert {
            "/webhook/chatwoot",
            "/health",
            "/ready",
            "/agents/status",
            "/config/mappings",
            "/config/mappings/{inbox_id}",
            "/dead-letters",
            "/dead-letters/{delivery_id}/retry",
            "/metrics",
            "/api/protocol/schema.json",
        } <= set(doc["paths"])
        # refusals are documented with the body the API really sends
        error = {"$ref": "#/components/schemas/Error"}
        post = doc["paths"]["/config/mappings"]["post"]["responses"]
        assert post["422"]["content"]["application/json"]["schema"] == error
        assert post["409"]["content"]["application/json"]["schema"] == error
        assert "HTTPValidationError" not in doc["components"]["schemas"]
        assert "bearer" in json.dumps(doc["components"]["securitySchemes"]).lower()
        assert (await s.http.get("/docs")).status_code == 200
        # and what is not in it is a 404 in the same error shape
        error_of(await s.http.get("/no/such/thing"), 404, "not_found")


async def test_a_dead_letter_can_be_discarded_and_is_never_sent(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, admin_key="test-admin-key-0123", delay=0.0) as s:
        payload, _ = s.mock.build_event(
            "message_created", TriggerRequest(conversation_id=8, content="gone", inbox_id=1)
        )
        conversation = s.mock.conversations.pop(8)
        assert (await s.http.post("/webhook/chatwoot", json=payload)).status_code == 200

        async def dead_letters() -> list[dict[str, Any]]:
            r = await s.http.get("/dead-letters", headers=AUTH)
            return r.json()["dead_letters"]

        [dead] = await wait_until(dead_letters)
        r = await s.http.post(f"/dead-letters/{dead['id']}/discard", headers=AUTH)
        assert r.status_code == 200 and r.json() == {"discarded": True, "id": dead["id"]}
        assert await dead_letters() == []
        s.mock.conversations[8] = conversation
        # neither a retry nor a second discard finds it; nothing reaches Chatwoot
        error_of(
            await s.http.post(f"/dead-letters/{dead['id']}/retry", headers=AUTH), 404, "not_found"
        )
        error_of(
            await s.http.post(f"/dead-letters/{dead['id']}/discard", headers=AUTH), 404, "not_found"
        )
        await s.idle()
        assert s.replies(8) == []


# --------------------------------------------------------------------------- route policies

POLICIES = {
    "debounce_ms": 1500,
    "max_wait_ms": 8000,
    "in_flight": "supersede",
    "handoff_keywords": ["human"],
    "business_hours": {
        "timezone": "Europe/Berlin",
        "weekly": {"mon": ["09:00-12:00", "13:00-17:30"]},
        "holidays": ["2026-12-25"],
        "outside": "away_handoff",
        "away_text": "Back on Monday.",
    },
    "ignore": {"group_patterns": ["*@g.us"]},
}
BAD_POLICIES = {
    "max_wait below debounce": ({"debounce_ms": 5000, "max_wait_ms": 100}, "max_wait_ms"),
    "unknown zone": ({"business_hours": {"timezone": "Mars/Olympus"}}, "Mars/Olympus"),
    "backwards range": ({"business_hours": {"weekly": {"mon": ["17:00-09:00"]}}}, "17:00-09:00"),
    "away without text": ({"business_hours": {"outside": "away_handoff"}}, "away_text"),
    "unknown rule": ({"in_flight": "drop"}, "in_flight"),
    "unknown field": ({"debounce": 100}, "debounce"),
}


async def test_route_policies_round_trip_and_bad_ones_are_named(database_url: str) -> None:
    async with running_stack(database_url, admin_key="test-admin-key-0123") as s:
        put = await s.http.put(
            "/config/mappings/2", headers=AUTH, json=mapping(2, s, policies=POLICIES)
        )
        assert put.status_code == 201, put.text
        listed = (await s.http.get("/config/mappings", headers=AUTH)).json()["mappings"]
        [route] = [m for m in listed if m["inbox_id"] == 2]
        for key, value in POLICIES.items():
            if key in ("business_hours", "ignore"):
                assert value.items() <= route["policies"][key].items(), route["policies"]
            else:
                assert route["policies"][key] == value
        # every policy is shown, defaults included
        assert route["policies"]["split_replies"] is False
        assert s.bridge.route_for("chatwoot", 2).policies.debounce_ms == 1500  # type: ignore[union-attr]
        for name, (policies, words) in BAD_POLICIES.items():
            r = await s.http.put(
                "/config/mappings/2", headers=AUTH, json=mapping(2, s, policies=policies)
            )
            error = error_of(r, 422, "invalid_request")
            assert words in error["message"] + json.dumps(error["details"]), (name, error)
        # nothing of the refused bodies was kept
        listed = (await s.http.get("/config/mappings", headers=AUTH)).json()["mappings"]
        [route] = [m for m in listed if m["inbox_id"] == 2]
        assert route["policies"]["debounce_ms"] == 1500
        # back to the defaults: an empty policies object
        put = await s.http.put("/config/mappings/2", headers=AUTH, json=mapping(2, s, policies={}))
        assert put.status_code == 200, put.text
        assert put.json()["mapping"]["policies"]["debounce_ms"] == 0
