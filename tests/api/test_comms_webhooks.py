"""WhatsApp end to end: a gateway's webhook → the real HTTP endpoint → store → mock agent →
reply through the local fake gateway, for each provider (WAHA, Evolution, Meta, mock)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from chatbridge.channels.whatsapp import WhatsAppChannel
from chatbridge.channels.whatsapp.signatures import evolution_jwt, sign_meta, sign_waha
from chatbridge.config import AgentConfig, InboxMapping
from chatbridge.store import tables as t
from chatbridge.store.records import DeliverySpec
from chatbridge.testing.fake_whatsapp import (
    WAHA_ENGINES,
    FakeWhatsApp,
    WahaEngine,
    create_fake_whatsapp,
    evolution_message,
    evolution_status,
    meta_status,
    meta_text,
    meta_webhook,
    waha_ack,
    waha_message,
)
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import gateways_at
from tests.e2e.harness import Stack, running_stack, wait_until

PHONE_NUMBER_ID = "106540352242922"


@dataclass
class WA:
    stack: Stack
    fake: FakeWhatsApp
    http: httpx.AsyncClient

    async def post(
        self, provider: str, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        return await self.http.post(
            f"/api/comms/webhooks/{provider}",
            content=body,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def sent(self, path: str) -> list[Any]:
        return [r.json for r in self.fake.calls(path)]

    async def replies(self, path: str, n: int) -> list[Any]:
        await wait_until(lambda: len(self.sent(path)) >= n)
        return self.sent(path)

    async def conversation(self, key: str) -> Any:
        return await self.stack.bridge.store.find_conversation("whatsapp", key)

    async def status_of(self, message_id: str) -> str | None:
        async with self.stack.bridge.store._tx() as conn:
            query = select(t.message_status.c.status).where(
                t.message_status.c.message_id == message_id
            )
            return (await conn.execute(query)).scalar_one_or_none()  # type: ignore[no-any-return]

    async def count(self, table: Any) -> int:
        async with self.stack.bridge.store._tx() as conn:
            return len((await conn.execute(select(table))).all())


@asynccontextmanager
async def whatsapp_stack(
    database_url: str, *, waha_engine: WahaEngine = "NOWEB", **comms: Any
) -> AsyncIterator[WA]:
    app = create_fake_whatsapp(evolution_instances={"shop": "open"}, waha_engine=waha_engine)
    async with (
        serve_app(app) as fake_url,
        # typing from the turn's start (the setting's 0), and an agent that thinks 0.3 s: the
        # tests see each provider's typing calls
        running_stack(database_url, behaviour="delay", delay=0.3, typing_delay_seconds=0) as stack,
    ):
        await stack.bridge.save_mapping(
            InboxMapping(
                channel="whatsapp",
                inbox_id=1,
                agent_config=AgentConfig(
                    agent_id="agent1",
                    websocket_url=f"ws://127.0.0.1:{stack.agent_port}",
                    timeout_seconds=5,
                ),
            )
        )
        settings = gateways_at(fake_url, **comms)
        stack.bridge.set_comms_settings(settings)
        yield WA(stack, app.state.fake, stack.http)


async def test_waha_end_to_end(database_url: str) -> None:
    async with whatsapp_stack(database_url, provider="waha", waha_hmac_key="hmac-key") as wa:
        sign = lambda p: sign_waha("hmac-key", json.dumps(p).encode())  # noqa: E731
        message = waha_message()
        r = await wa.post("waha", message, sign(message))
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
        [reply] = await wa.replies("/api/sendText", 1)
        assert reply == {
            "session": "default",
            "chatId": "919876543210@c.us",
            "text": "Echo: Is this in stock?",
        }
        request = wa.fake.calls("/api/sendText")[0]
        assert request.headers["x-api-key"] == "waha-key"
        # read receipt for the customer's message; typing around the turn
        await wa.replies("/api/sendSeen", 1)
        assert wa.sent("/api/sendSeen")[0]["messageIds"] == [message["payload"]["id"]]
        await wa.stack.idle()
        assert wa.sent("/api/startTyping") and wa.sent("/api/stopTyping")

        # the same delivery again (WAHA retries): 200, nothing new
        again = await wa.post("waha", message, sign(message))
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")

        # a bad or missing signature: 401, nothing stored
        before = await wa.count(t.messages)
        other = waha_message("forged", msg_id="FORGED")
        bad = await wa.post("waha", other, sign_waha("wrong", json.dumps(other).encode()))
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_signature"
        assert (await wa.post("waha", other)).status_code == 401
        assert await wa.count(t.messages) == before

        # the reply's ack updates its status (ids as WAHA reports them: true_<chat>_<id>)
        conv = await wa.conversation("waha:default:919876543210@c.us")
        assert conv is not None and conv.owner == "bot"
        msgs = await wa.stack.bridge.store.list_messages(conv.id)
        out = next(m for m in msgs if m.direction == "out")
        assert out.external_id and out.external_id.startswith("true_919876543210@c.us_")
        ack = waha_ack(out.external_id, 3)
        r = await wa.post("waha", ack, sign(ack))
        assert r.json()["reason"] == "status:read"
        assert await wa.status_of(out.id) == "read"

        # the echo of our own reply in message.any is not a human takeover
        short_id = out.external_id.rsplit("_", 1)[1]
        echo = waha_message(out.text, msg_id=short_id, event="message.any", from_me=True)
        r = await wa.post("waha", echo, sign(echo))
        assert r.json() == {"status": "ignored", "reason": "own_message"}

        # a group message: ignored, no conversation
        group = waha_message(
            "hi all", msg_id="G1", chat="120363025555@g.us", participant="919876543210@c.us"
        )
        r = await wa.post("waha", group, sign(group))
        assert r.json() == {"status": "ignored", "reason": "group_chat"}

        # the owner types on the phone: human takeover; the next customer message gets no turn
        typed = waha_message("I'll take this", msg_id="HUMAN1", event="message.any", from_me=True)
        r = await wa.post("waha", typed, sign(typed))
        assert r.json()["reason"] == "owner:human"
        conv = await wa.conversation("waha:default:919876543210@c.us")
        assert conv is not None and conv.owner == "human"
        later = waha_message("still there?", msg_id="LATER1")
        r = await wa.post("waha", later, sign(later))
        assert r.json()["status"] == "stored"
        await wa.stack.idle()
        assert len(wa.sent("/api/sendText")) == 1


@pytest.mark.parametrize("engine", WAHA_ENGINES)
async def test_waha_engines_end_to_end(sqlite_url: str, engine: WahaEngine) -> None:
    """Each engine's shapes: a customer's message is answered, the echo of that answer does
    not silence the bot, the operator typing on the phone does."""
    async with whatsapp_stack(sqlite_url, provider="waha", waha_engine=engine) as wa:
        message = waha_message("Is this in stock?", engine=engine)
        r = await wa.post("waha", message)
        assert (r.status_code, r.json()["status"]) == (200, "accepted"), r.text
        [reply] = await wa.replies("/api/sendText", 1)
        assert reply["chatId"] == "919876543210@c.us"
        await wa.stack.idle()
        conv = await wa.conversation("waha:default:919876543210@c.us")
        assert conv is not None and conv.owner == "bot"
        async with wa.stack.bridge.store._tx() as conn:
            query = select(t.contacts.c.name).where(t.contacts.c.id == conv.contact_id)
            assert (await conn.execute(query)).scalar_one() == "Asha"  # the engine's push name

        # WAHA echoes our reply on message.any (source "api" on NOWEB/GOWS, none on WEBJS)
        [sent] = wa.fake.waha_sent
        echo = wa.fake.waha_echo(sent)
        r = await wa.post("waha", echo)
        assert (r.status_code, r.json()) == (200, {"status": "ignored", "reason": "own_message"})
        conv = await wa.conversation("waha:default:919876543210@c.us")
        assert conv is not None and conv.owner == "bot"

        # the operator answers from the phone: a human has the conversation now
        typed = waha_message(
            "I'll take this", msg_id="HUMAN1", event="message.any", from_me=True, engine=engine
        )
        r = await wa.post("waha", typed)
        assert (r.status_code, r.json()["reason"]) == (200, "owner:human"), r.text
        later = waha_message("still there?", msg_id="LATER1", engine=engine)
        assert (await wa.post("waha", later)).json()["status"] == "stored"
        await wa.stack.idle()
        assert len(wa.sent("/api/sendText")) == 1


async def test_evolution_end_to_end(sqlite_url: str) -> None:
    async with whatsapp_stack(sqlite_url, provider="evolution", evolution_jwt_key="jwt") as wa:
        auth = {"Authorization": f"Bearer {evolution_jwt('jwt')}"}
        r = await wa.post("evolution", evolution_message(), auth)
        assert r.json()["status"] == "accepted", r.text
        [reply] = await wa.replies("/message/sendText/shop", 1)
        assert reply == {"number": "919876543210", "text": "Echo: Is this in stock?"}
        assert wa.fake.calls("/message/sendText/shop")[0].headers["apikey"] == "evo-key"
        [read] = await wa.replies("/chat/markMessageAsRead/shop", 1)
        assert read == {
            "readMessages": [
                {
                    "remoteJid": "919876543210@s.whatsapp.net",
                    "fromMe": False,
                    "id": "3A554E20ECABF3D45BB2",
                }
            ]
        }
        await wa.stack.idle()
        presence = [p["presence"] for p in wa.sent("/chat/sendPresence/shop")]
        assert presence == ["composing", "paused"]

        # no JWT, or an expired one: 401
        assert (await wa.post("evolution", evolution_message(msg_id="X1"))).status_code == 401
        old = {"Authorization": f"Bearer {evolution_jwt('jwt', now=time.time() - 4000)}"}
        assert (await wa.post("evolution", evolution_message(msg_id="X1"), old)).status_code == 401

        # send.message (our own send, reported back) is ignored; messages.update sets status
        [sent] = wa.fake.evolution_sent
        r = await wa.post("evolution", wa.fake.evolution_echo(sent), auth)
        assert r.json()["reason"] == "own_message"
        conv = await wa.conversation("evolution:shop:919876543210@s.whatsapp.net")
        assert conv is not None
        out = next(
            m for m in await wa.stack.bridge.store.list_messages(conv.id) if m.direction == "out"
        )
        r = await wa.post("evolution", evolution_status(str(out.external_id), "DELIVERY_ACK"), auth)
        assert r.json()["reason"] == "status:delivered"
        assert await wa.status_of(out.id) == "delivered"

        # @lid with remoteJidAlt: the same thread as the phone JID
        lid = evolution_message(
            "second",
            msg_id="LID1",
            remote_jid="160159216382146@lid",
            remote_jid_alt="919876543210@s.whatsapp.net",
        )
        r = await wa.post("evolution", lid, auth)
        assert r.json()["conversation_id"] == conv.id
        await wa.replies("/message/sendText/shop", 2)

        # typed on the phone: human takeover, recorded as the human's message
        r = await wa.post(
            "evolution", evolution_message("human here", msg_id="ME1", from_me=True), auth
        )
        assert r.json()["reason"] == "owner:human"
        texts = [m.text for m in await wa.stack.bridge.store.list_messages(conv.id)]
        assert "human here" in texts


async def test_meta_end_to_end(sqlite_url: str) -> None:
    async with whatsapp_stack(
        sqlite_url, provider="meta_cloud", meta_app_secret="app-secret", meta_verify_token="vt"
    ) as wa:
        # the verification handshake
        ok = await wa.http.get(
            "/api/comms/webhooks/meta",
            params={
                "hub.mode": "subscribe",
                "hub.challenge": "1158201444",
                "hub.verify_token": "vt",
            },
        )
        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert ok.headers["content-type"].startswith("text/plain")
        bad = await wa.http.get(
            "/api/comms/webhooks/meta",
            params={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"},
        )
        assert bad.status_code == 403

        # two messages in one webhook: two turns, two replies
        payload = meta_webhook(
            messages=[meta_text("one", wamid="wamid.IN1"), meta_text("two", wamid="wamid.IN2")]
        )
        r = await wa.post("meta", payload, sign_meta("app-secret", json.dumps(payload).encode()))
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["accepted", "accepted"]
        bad_sig = await wa.post("meta", payload, {"X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert bad_sig.status_code == 401
        path = f"/v23.0/{PHONE_NUMBER_ID}/messages"
        await wa.stack.idle()
        sent = [b for b in wa.sent(path) if b.get("type") == "text"]
        assert sorted(b["text"]["body"] for b in sent) == ["Echo: one", "Echo: two"]
        assert sent[0] == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+919876543210",
            "type": "text",
            "text": {"preview_url": False, "body": sent[0]["text"]["body"]},
        }
        assert wa.fake.calls(path)[0].headers["authorization"] == "Bearer meta-token"
        # typing indicator hangs on the customer's last message; read receipts for both
        assert any("typing_indicator" in b for b in wa.sent(path))
        reads = {b["message_id"] for b in wa.sent(path) if b.get("status") == "read"}
        assert reads >= {"wamid.IN1", "wamid.IN2"}

        # a status for our reply
        conv = await wa.conversation(f"meta_cloud:{PHONE_NUMBER_ID}:919876543210")
        assert conv is not None
        out = next(
            m for m in await wa.stack.bridge.store.list_messages(conv.id) if m.direction == "out"
        )
        statuses = meta_webhook(statuses=[meta_status(str(out.external_id), "read")])
        body = json.dumps(statuses).encode()
        r = await wa.post("meta", statuses, sign_meta("app-secret", body))
        assert r.json()["reason"] == "status:read"
        assert await wa.status_of(out.id) == "read"

        # 25 hours later the window is closed: a free-form message is dead-lettered, not sent
        async with wa.stack.bridge.store._tx() as conn:
            await conn.execute(
                update(t.messages)
                .where(t.messages.c.conversation_id == conv.id)
                .values(created_at=time.time() - 25 * 3600)
            )
        before = len(wa.sent(path))
        await wa.stack.bridge.store.add_outbound(
            conv.id, text="late", author="agent", deliveries=[DeliverySpec("message", 3)]
        )
        wa.stack.bridge.wake_deliveries()

        async def dead() -> Any:
            return await wa.stack.bridge.store.list_dead_letters()

        [letter] = await wait_until(dead)
        assert "24-hour customer service window" in (letter.last_error or "")
        assert len(wa.sent(path)) == before


async def test_mock_provider(sqlite_url: str) -> None:
    async with whatsapp_stack(sqlite_url, provider="mock") as wa:
        r = await wa.http.post(
            "/api/comms/mock/inbound",
            json={"from": "+15550001111", "name": "Asha", "text": "hello", "id": "mk1"},
        )
        assert r.json()["status"] == "accepted", r.text

        async def texts() -> list[str]:
            out = (await wa.http.get("/api/comms/mock/outbox")).json()["items"]
            return [i["text"] for i in out if i["kind"] == "text"]

        assert await wait_until(texts) == ["Echo: hello"]
        items = (await wa.http.get("/api/comms/mock/outbox")).json()["items"]
        assert {i["chat_id"] for i in items} == {"15550001111@c.us"}
        # the unauthenticated mock webhook works too, and dedupes on the id
        again = await wa.post("mock", {"from": "+15550001111", "text": "hello", "id": "mk1"})
        assert again.json()["status"] == "duplicate"
        # other providers' webhooks are closed while mock is configured
        off = await wa.post("waha", waha_message())
        assert off.status_code == 404 and off.json()["error"]["code"] == "provider_not_active"
        check = await wa.http.post("/api/comms/provider/test")
        assert check.json()["ok"] is True
        assert isinstance(wa.stack.bridge.channels["whatsapp"], WhatsAppChannel)
