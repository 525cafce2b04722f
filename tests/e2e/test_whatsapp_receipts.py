"""WhatsApp receipts: a reply whose send a crash cut off is not sent twice.

WhatsApp cannot carry our idempotency key, so after a crash the bridge cannot ask a gateway
"did you get delivery X?". Each gateway echoes our sends in its own way instead (WAHA
``message.any`` with ``fromMe``, Evolution ``send.message``, Meta ``statuses[]``); the
bridge matches such an echo to the conversation's send that was cut off (by text where
the echo has one) and finishes that delivery without sending it again.

Each case plays the crash with the store's own API: a process "dead" claims the reply's
delivery with a short lease and marks its send started, its request reaches the fake
gateway, and then it dies. The gateway's echo is posted to the real webhook endpoint of a
running bridge (a real server, the workers run in burst mode), whose workers then take the
delivery over once the dead lease has run out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatbridge.api import create_app
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store import tables as t
from chatbridge.store.records import DeliverySpec
from chatbridge.testing.fake_whatsapp import (
    FakeWhatsApp,
    WahaEngine,
    create_fake_whatsapp,
    evolution_message,
    meta_text,
    meta_webhook,
    waha_message,
)
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import gateways_at
from tests.e2e.drain import within
from tests.e2e.harness import wait_until

PHONE_NUMBER_ID = "106540352242922"
REPLY = "Yes, two left in blue."
DEAD = "dead-replica"
DEAD_LEASE = 0.3  # seconds: the dead process's lease runs out quickly


@dataclass(frozen=True)
class Provider:
    """How one gateway is reached and what its messages look like."""

    route: str  # /api/comms/webhooks/{route}
    name: str  # CommsSettings.provider
    channel_key: str
    send_path: str


WAHA = Provider("waha", "waha", "waha:default:919876543210@c.us", "/api/sendText")
EVOLUTION = Provider(
    "evolution",
    "evolution",
    "evolution:shop:919876543210@s.whatsapp.net",
    "/message/sendText/shop",
)
META = Provider(
    "meta", "meta_cloud", f"meta_cloud:{PHONE_NUMBER_ID}:919876543210", f"/v21.0/{PHONE_NUMBER_ID}"
)


@dataclass
class Rig:
    bridge: Bridge
    fake: FakeWhatsApp
    fake_url: str
    http: httpx.AsyncClient
    provider: Provider
    engine: WahaEngine

    async def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a gateway webhook to the bridge's real endpoint; its JSON answer."""
        r = await self.http.post(
            f"/api/comms/webhooks/{self.provider.route}",
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def sends(self) -> list[Any]:
        """The message sends the fake gateway received (typing and read receipts aside)."""
        if self.provider is META:
            return [
                r.json
                for r in self.fake.calls(f"{self.provider.send_path}/messages")
                if r.json.get("type") == "text"
            ]
        return [r.json for r in self.fake.calls(self.provider.send_path)]

    async def customer_writes(self, text: str = "Is this in stock?") -> None:
        if self.provider is WAHA:
            payload = waha_message(text, engine=self.engine)
        elif self.provider is EVOLUTION:
            payload = evolution_message(text)
        else:
            payload = meta_webhook(messages=[meta_text(text)])
        assert (await self.post(payload))["status"] == "accepted"

    async def dead_process_sends(self, text: str = REPLY) -> int:
        """A replica answers the customer's turn, marks the reply's send started, calls the
        gateway, and dies before it can note the send as done. Returns the delivery id."""
        store = self.bridge.store
        [turn] = await store.claim_turns(DEAD, limit=1, lease_seconds=30)
        done = await store.complete_turn(
            turn.id,
            DEAD,
            state="done",
            outcome="reply",
            reply_text=text,
            deliveries=[DeliverySpec("message", 3, text=text)],
        )
        assert done.ok
        [d] = await store.claim_deliveries(DEAD, limit=10, lease_seconds=DEAD_LEASE)
        assert (d.kind, d.text) == ("message", text)
        assert await store.mark_send_started(d.id, DEAD)
        await self._gateway_send(text)  # the request got through; the answer was lost
        assert len(self.sends()) == 1
        return d.id

    async def _gateway_send(self, text: str) -> None:
        async with httpx.AsyncClient(base_url=self.fake_url) as gateway:
            if self.provider is WAHA:
                body = {"session": "default", "chatId": "919876543210@c.us", "text": text}
                r = await gateway.post(
                    self.provider.send_path, json=body, headers={"X-Api-Key": "waha-key"}
                )
            elif self.provider is EVOLUTION:
                r = await gateway.post(
                    self.provider.send_path,
                    json={"number": "919876543210", "text": text},
                    headers={"apikey": "evo-key"},
                )
            else:
                body = {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": "+919876543210",
                    "type": "text",
                    "text": {"preview_url": False, "body": text},
                }
                r = await gateway.post(
                    f"{self.provider.send_path}/messages",
                    json=body,
                    headers={"Authorization": "Bearer meta-token"},
                )
        assert r.is_success, r.text

    def echo(self) -> tuple[dict[str, Any], str]:
        """The gateway's own webhook about the dead process's send, and the id it gave it."""
        if self.provider is WAHA:
            [sent] = self.fake.waha_sent
            echo = self.fake.waha_echo(sent)
            return echo, str(echo["payload"]["id"])
        if self.provider is EVOLUTION:
            [evo] = self.fake.evolution_sent
            return self.fake.evolution_echo(evo), evo.msg_id
        [meta] = self.fake.meta_sent
        return self.fake.meta_status_of(meta, "sent"), meta.wamid

    async def delivery(self, delivery_id: int) -> Any:
        async with self.bridge.store._tx() as conn:
            query = select(t.deliveries).where(t.deliveries.c.id == delivery_id)
            return (await conn.execute(query)).one()

    async def owner(self) -> str:
        conv = await self.bridge.store.find_conversation("whatsapp", self.provider.channel_key)
        assert conv is not None
        return conv.owner

    async def run_workers_until_done(self, delivery_id: int) -> Any:
        """Run the bridge's workers (burst mode) until the dead lease has run out and the
        delivery is finished; return its row."""

        async def finished() -> Any:
            await self.bridge.run_until_idle()
            row = await self.delivery(delivery_id)
            return row if row.state not in ("pending", "leased") else None

        return await wait_until(finished, timeout=20)


class WithoutLifespan:
    """The bridge's app served without its lifespan, which would start the workers: the test
    starts the bridge itself (workers off) and runs them in burst mode when it wants."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # serve_app reads the bridge's edge limits from here

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


@asynccontextmanager
async def receipt_rig(
    database_url: str,
    provider: Provider,
    *,
    engine: WahaEngine = "NOWEB",
    receipt_wait_seconds: float = 0.5,
) -> AsyncIterator[Rig]:
    """A bridge serving its real app on a socket, its workers stopped (tests run them in
    burst mode), the WhatsApp provider pointed at a fake gateway."""
    fake_app = create_fake_whatsapp(waha_engine=engine)
    async with serve_app(fake_app) as fake_url:
        settings = Settings(
            database_url=database_url,
            instance_id="alive",
            inbox_agent_mappings=[
                InboxMapping(
                    channel="whatsapp",
                    inbox_id=1,
                    agent_config=AgentConfig(agent_id="agent1", transport="ws-dial-in"),
                )
            ],
            receipt_wait_seconds=receipt_wait_seconds,
            retry_base_seconds=0.01,
            lease_seconds=5.0,
        )
        bridge = Bridge(settings)
        app = create_app(settings, bridge=bridge)
        await bridge.start(workers=False)
        try:
            bridge.set_comms_settings(
                gateways_at(fake_url, provider=provider.name, meta_api_version="v21.0")
            )
            async with (
                serve_app(WithoutLifespan(app)) as url,
                httpx.AsyncClient(base_url=url, timeout=30) as http,
            ):
                yield Rig(bridge, fake_app.state.fake, fake_url, http, provider, engine)
        finally:
            await bridge.stop()


async def assert_not_sent_again(rig: Rig, delivery_id: int, provider_id: str) -> None:
    row = await rig.run_workers_until_done(delivery_id)
    assert len(rig.sends()) == 1, rig.sends()  # the gateway got the reply once
    assert (row.state, row.external_id) == ("done", provider_id)
    assert await rig.owner() == "bot"


# ------------------------------------------------------------------------------ the crash


@pytest.mark.parametrize("engine", ["NOWEB", "WEBJS", "GOWS"])
async def test_waha_echo_of_a_cut_off_send_is_its_receipt(
    database_url: str, engine: WahaEngine
) -> None:
    """NOWEB/GOWS say ``source: "api"``; WEBJS says nothing, so its echo could as well be
    the operator typing: it is matched by text to the cut-off send and silences no one."""
    async with receipt_rig(database_url, WAHA, engine=engine) as rig:
        await rig.customer_writes()
        delivery_id = await rig.dead_process_sends()
        echo, provider_id = rig.echo()
        assert await rig.post(echo) == {"status": "stored", "reason": "receipt"}
        await assert_not_sent_again(rig, delivery_id, provider_id)


@pytest.mark.parametrize("event", ["send.message", "messages.upsert"])
async def test_evolution_echo_of_a_cut_off_send_is_its_receipt(
    database_url: str, event: str
) -> None:
    """``send.message`` is how Evolution reports an API send; a ``messages.upsert`` with
    ``fromMe`` and our text counts too."""
    async with receipt_rig(database_url, EVOLUTION) as rig:
        await rig.customer_writes()
        delivery_id = await rig.dead_process_sends()
        echo, provider_id = rig.echo()
        echo["event"] = event
        assert await rig.post(echo) == {"status": "stored", "reason": "receipt"}
        await assert_not_sent_again(rig, delivery_id, provider_id)


async def test_meta_status_of_a_cut_off_send_is_its_receipt(database_url: str) -> None:
    async with receipt_rig(database_url, META) as rig:
        await rig.customer_writes()
        delivery_id = await rig.dead_process_sends()
        status, wamid = rig.echo()
        assert await rig.post(status) == {"status": "stored", "reason": "receipt"}
        await assert_not_sent_again(rig, delivery_id, wamid)
        # later statuses of that wamid now update the reply's status as usual
        delivered = rig.fake.meta_status_of(rig.fake.meta_sent[0], "delivered")
        assert (await rig.post(delivered))["reason"] == "status:delivered"


async def test_an_echo_that_comes_while_the_delivery_waits_stops_the_second_send(
    sqlite_url: str,
) -> None:
    """The gateway retries its webhook while the bridge is down; the echo may land only once
    the restarted bridge already waits for a receipt. It ends the wait: nothing is resent.

    The bridge would wait ten minutes for the receipt; the test gives it half a minute, so
    finishing at all shows the echo woke it."""
    async with receipt_rig(sqlite_url, WAHA, receipt_wait_seconds=600) as rig:
        await rig.customer_writes()
        delivery_id = await rig.dead_process_sends()
        workers = asyncio.create_task(rig.run_workers_until_done(delivery_id))
        try:

            async def taken_over() -> bool:
                return (await rig.delivery(delivery_id)).lease_owner == "alive"

            await wait_until(taken_over, timeout=10)
            echo, provider_id = rig.echo()
            assert await rig.post(echo) == {"status": "stored", "reason": "receipt"}
            row = await within(30, workers)
        finally:
            workers.cancel()
        assert (row.state, row.external_id) == ("done", provider_id)
        assert len(rig.sends()) == 1


# ------------------------------------------------------------------------------ not ours


@pytest.mark.parametrize("engine", ["NOWEB", "WEBJS"])
async def test_the_operator_typing_other_text_still_takes_over(
    sqlite_url: str, engine: WahaEngine
) -> None:
    """While a send of ours is cut off, the operator's own message (other text) is no
    receipt: the conversation goes to the human, and the cut-off send keeps no receipt."""
    async with receipt_rig(sqlite_url, WAHA, engine=engine) as rig:
        await rig.customer_writes()
        delivery_id = await rig.dead_process_sends()
        typed = waha_message(
            "Let me check the stock for you",
            msg_id="HUMAN1",
            event="message.any",
            from_me=True,
            engine=engine,
        )
        answer = await rig.post(typed)
        assert (answer["status"], answer["reason"]) == ("stored", "owner:human")
        assert await rig.owner() == "human"
        assert await rig.bridge.store.delivery_receipt(delivery_id) == (None, None)


async def test_evolution_operator_typing_other_text_still_takes_over(sqlite_url: str) -> None:
    async with receipt_rig(sqlite_url, EVOLUTION) as rig:
        await rig.customer_writes()
        delivery_id = await rig.dead_process_sends()
        typed = evolution_message("Let me check", msg_id="HUMAN1", from_me=True)
        answer = await rig.post(typed)
        assert (answer["status"], answer["reason"]) == ("stored", "owner:human")
        assert await rig.owner() == "human"
        assert await rig.bridge.store.delivery_receipt(delivery_id) == (None, None)


async def test_an_echo_with_no_send_waiting_is_ignored_not_a_takeover(sqlite_url: str) -> None:
    """A sure own send (``source: "api"``) that no delivery waits for is dropped; it never
    hands the conversation to a human."""
    async with receipt_rig(sqlite_url, WAHA) as rig:
        await rig.customer_writes()
        other = waha_message(
            "sent by another tool", msg_id="API1", event="message.any", from_me=True, source="api"
        )
        assert await rig.post(other) == {"status": "ignored", "reason": "own_reply"}
        assert await rig.owner() == "bot"
