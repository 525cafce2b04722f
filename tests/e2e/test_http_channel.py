"""The generic ``http`` channel end to end, on real loopback sockets: an app POSTs signed
messages to a bridge served by uvicorn, a mock agent answers over WebSocket, and the app's
callback receiver (``CallbackReceiver``, which verifies every signature and dedupes on the
idempotency key) gets the replies, typing and handoffs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from chatbridge.agent import Agent
from chatbridge.api import create_app
from chatbridge.channels.http import HttpInbox, sign
from chatbridge.channels.http_receiver import CallbackReceiver
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies
from chatbridge.testing.mock_agent import HANDOFF_TEXT, build_mock_agent
from chatbridge.testing.servers import serve_app
from tests.e2e.drain import within
from tests.e2e.harness import FAST, assert_typing_paired, wait_until

SECRET = "http-inbox-secret-0123456789"
INBOX = 7


@dataclass
class App:
    """The customer's app: posts to the bridge, receives at its callback."""

    bridge: Bridge
    http: httpx.AsyncClient
    receiver: CallbackReceiver
    seq: int = 0

    async def post(
        self,
        payload: dict[str, Any],
        *,
        secret: str = SECRET,
        stamp: float | None = None,
        inbox: int = INBOX,
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **sign(secret, body, stamp)}
        return await self.http.post(f"/webhook/http/{inbox}", content=body, headers=headers)

    async def say(self, text: str, conversation: str = "c1", **fields: Any) -> httpx.Response:
        self.seq += 1
        fields.setdefault("message_id", f"m{self.seq}")
        payload = {"type": "message", "conversation_id": conversation, "text": text, **fields}
        return await self.post(payload)

    def replies(self, conversation: str = "c1") -> list[str]:
        return [c["text"] for c in self.receiver.of_type("message", conversation)]

    async def wait_replies(self, n: int, conversation: str = "c1") -> list[str]:
        await within(10, self.receiver.wait_for(lambda r: len(self.replies(conversation)) >= n))
        return self.replies(conversation)

    async def idle(self) -> dict[str, dict[str, int]]:
        async def quiet() -> dict[str, dict[str, int]] | None:
            counts = await self.bridge.store.counts()
            busy = any(
                counts[t].get(s, 0) for t in ("turns", "deliveries") for s in ("pending", "leased")
            )
            return None if busy else counts

        return await wait_until(quiet)  # type: ignore[no-any-return]


@asynccontextmanager
async def running_app(
    database_url: str,
    *,
    agent: Agent | None = None,
    on_failure: str = "fallback",
    allowed_networks: list[str] | None = None,
    policies: RoutePolicies = DEFAULT_POLICIES,
    **settings: Any,
) -> AsyncIterator[App]:
    agent = agent or build_mock_agent("echo", agent_id="agent1")
    receiver = CallbackReceiver(SECRET)
    async with AsyncExitStack() as exits:
        callback = await exits.enter_async_context(serve_app(receiver.app))
        port = await exits.enter_async_context(agent.serving("127.0.0.1", 0))
        config = Settings(
            database_url=database_url,
            channel_settings={
                "http": {
                    "inboxes": {
                        INBOX: HttpInbox(secret=SECRET, callback_url=f"{callback}/chatbridge")
                    },
                    "allowed_networks": allowed_networks or [],
                }
            },
            inbox_agent_mappings=[
                InboxMapping(
                    channel="http",
                    inbox_id=INBOX,
                    agent_config=AgentConfig(
                        agent_id="agent1", websocket_url=f"ws://127.0.0.1:{port}"
                    ),
                    on_failure=on_failure,  # type: ignore[arg-type]
                    policies=policies,
                )
            ],
            instance_id="e2e-http",
            **{**FAST, "typing_delay_seconds": 60.0, **settings},
        )
        app = create_app(config)
        url = await exits.enter_async_context(serve_app(app))
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        bridge: Bridge = app.state.bridge
        await wait_until(lambda: bridge.hub.is_connected("agent1"))
        yield App(bridge, http, receiver)


async def test_a_signed_message_is_answered_at_the_callback_with_typing(sqlite_url: str) -> None:
    agent = build_mock_agent("delay", agent_id="agent1", delay=0.3)
    async with running_app(sqlite_url, agent=agent, typing_delay_seconds=0) as app:
        r = await app.say("hello", contact={"id": "u1", "name": "Ada"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"
        assert await app.wait_replies(1) == ["Echo: hello"]
        await app.idle()
    kinds = [
        ("typing_on" if c["on"] else "typing_off") if c["type"] == "typing" else c["type"]
        for c in app.receiver.received
    ]
    assert assert_typing_paired(kinds) == 1
    assert kinds == ["typing_on", "message", "typing_off"]
    assert app.receiver.refused == []  # every callback carried a valid signature
    reply = app.receiver.of_type("message")[0]
    assert (reply["inbox_id"], reply["conversation_id"]) == (INBOX, "c1")


async def test_a_repeated_message_id_is_a_duplicate_and_answered_once(sqlite_url: str) -> None:
    async with running_app(sqlite_url) as app:
        first = await app.say("once", message_id="same")
        again = await app.say("once", message_id="same")
        assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
        assert await app.wait_replies(1) == ["Echo: once"]
        await app.idle()
        assert app.replies() == ["Echo: once"]


async def test_the_apps_human_takes_over_and_gives_back(sqlite_url: str) -> None:
    async with running_app(sqlite_url) as app:
        taken = await app.post({"type": "handoff", "conversation_id": "c1", "to": "human"})
        assert taken.json() == {
            "status": "stored",
            "conversation_id": taken.json()["conversation_id"],
            "reason": "owner:human",
        }
        quiet = await app.say("anyone there?")
        assert quiet.json()["status"] == "stored"  # kept, but no turn: a human owns it
        given = await app.post({"type": "handoff", "conversation_id": "c1", "to": "bot"})
        assert given.json()["reason"] == "owner:bot"
        await app.say("back to the bot")
        assert await app.wait_replies(1) == ["Echo: back to the bot"]
        await app.idle()
        assert app.replies() == ["Echo: back to the bot"]


async def test_the_agents_handoff_reaches_the_callback(sqlite_url: str) -> None:
    agent = build_mock_agent("handoff", agent_id="agent1")
    async with running_app(sqlite_url, agent=agent) as app:
        await app.say("I want a person")
        await within(10, app.receiver.wait_for(lambda r: bool(r.of_type("handoff"))))
        await app.idle()
        assert app.replies() == [HANDOFF_TEXT]
        assert app.receiver.of_type("handoff")[0]["to"] == "human"


async def test_a_bad_signature_is_a_401_and_nothing_is_stored(sqlite_url: str) -> None:
    async with running_app(sqlite_url) as app:
        forged = await app.post(
            {"type": "message", "conversation_id": "c1", "message_id": "m1", "text": "hi"},
            secret="not-the-inbox-secret-000",
        )
        assert forged.status_code == 401
        assert forged.json()["error"]["code"] == "bad_signature"
        assert "does not match" in forged.json()["error"]["message"]
        unsigned = await app.http.post(
            f"/webhook/http/{INBOX}", json={"type": "message"}, headers={}
        )
        assert unsigned.status_code == 401
        assert "missing X-Chatbridge-Timestamp" in unsigned.json()["error"]["message"]
        assert await app.bridge.store.counts() == {"turns": {}, "deliveries": {}}
        assert await app.bridge.store.find_conversation("http", f"{INBOX}:c1") is None


async def test_a_replayed_request_is_a_401(sqlite_url: str) -> None:
    async with running_app(sqlite_url) as app:
        replay = await app.post(
            {"type": "message", "conversation_id": "c1", "message_id": "m1", "text": "hi"},
            stamp=time.time() - 301,
        )
        assert replay.status_code == 401
        assert "more than 300 s" in replay.json()["error"]["message"]
        assert await app.bridge.store.counts() == {"turns": {}, "deliveries": {}}


async def test_an_unknown_inbox_is_a_404_and_bad_input_a_400(sqlite_url: str) -> None:
    async with running_app(sqlite_url) as app:
        unknown = await app.post({"type": "message"}, inbox=8)
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_inbox"
        bad = await app.post({"type": "message", "conversation_id": "c1", "text": "x"})
        assert bad.status_code == 400
        assert bad.json()["error"]["details"] == {"field": "message_id"}
        assert await app.bridge.store.counts() == {"turns": {}, "deliveries": {}}


async def test_a_failing_callback_is_retried_and_the_reply_delivered_once(sqlite_url: str) -> None:
    async with running_app(sqlite_url) as app:
        app.receiver.fail_next = [(500, None), (503, "0")]
        await app.say("try again")
        assert await app.wait_replies(1) == ["Echo: try again"]
        await app.idle()
        assert app.receiver.attempts == 3
        assert app.replies() == ["Echo: try again"]
        assert await app.bridge.store.list_dead_letters() == []


async def test_a_callback_that_always_fails_is_dead_lettered(sqlite_url: str) -> None:
    async with running_app(sqlite_url, delivery_max_attempts=3) as app:
        app.receiver.fail_next = [(500, None)] * 100
        await app.say("doomed")
        await app.idle()
        assert app.receiver.attempts == 3
        dead = (await app.http.get("/dead-letters")).json()["dead_letters"]
        assert [(d["kind"], d["text"], d["attempts"]) for d in dead] == [
            ("message", "Echo: doomed", 3)
        ]
        assert "HTTP 500" in dead[0]["last_error"]
        assert app.replies() == []
        # once the app is fixed, the dead letter is sent again, and arrives once
        app.receiver.fail_next = []
        retried = await app.http.post(f"/dead-letters/{dead[0]['id']}/retry")
        assert retried.status_code == 200
        assert await app.wait_replies(1) == ["Echo: doomed"]


async def test_a_client_outside_the_allowed_networks_is_a_403(sqlite_url: str) -> None:
    async with running_app(sqlite_url, allowed_networks=["10.0.0.0/8"]) as app:
        refused = await app.say("hi")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "source_not_allowed"
        assert await app.bridge.store.counts() == {"turns": {}, "deliveries": {}}
    async with running_app(sqlite_url, allowed_networks=["127.0.0.0/8"]) as app:
        assert (await app.say("hi")).json()["status"] == "accepted"
        assert await app.wait_replies(1) == ["Echo: hi"]


async def test_policies_hold_on_the_http_channel_too(sqlite_url: str) -> None:
    """A burst is one turn; a handoff keyword reaches the app as a handoff and a note."""
    policies = RoutePolicies(
        debounce_ms=2500, handoff_keywords=["human"], handoff_summary=True, summary_messages=5
    )
    async with running_app(sqlite_url, policies=policies) as app:
        for text in ("hi", "my order", "is late"):
            r = await app.say(text)
            assert r.status_code == 200, r.text
        assert await app.wait_replies(1) == ["Echo: hi\nmy order\nis late"]
        r = await app.say("Human")
        assert r.json()["reason"] == "handoff_keyword", r.text
        await within(10, app.receiver.wait_for(lambda _: app.receiver.of_type("note", "c1")))
        assert app.receiver.of_type("handoff", "c1")
        [note] = app.receiver.of_type("note", "c1")
        assert "Customer: Human" in note["text"]
        await app.idle()
        assert app.replies() == ["Echo: hi\nmy order\nis late"]
