"""Cut-off broadcast sends on Evolution: looked up with ``POST /chat/findMessages/{instance}``
(exact body and ``apikey``): one that landed is recorded sent, one the chat's saved history
shows did not land is sent now, and one in a chat with no saved history stays ``uncertain``."""

from __future__ import annotations

from collections import Counter

from chatbridge.channels.whatsapp.base import WhatsAppChannel
from chatbridge.crm.settings import CommsSettings
from chatbridge.pipeline.broadcast_reconcile import channel_reconcile
from chatbridge.pipeline.broadcasts import BroadcastWorker, channel_send
from chatbridge.store import Store
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.broadcasts.rig import add_people, add_template, create

TEXT = "Hi Person, The red kettle is back in stock."


async def test_evolution_cut_off_sends_are_settled_by_the_saved_history(store: Store) -> None:
    ids = await add_people(store, 4)
    app = create_fake_whatsapp()
    fake: FakeWhatsApp = app.state.fake
    async with serve_app(app) as url:
        settings = CommsSettings(  # type: ignore[call-arg]
            _env_file=None,
            provider="evolution",
            evolution_base_url=url,
            evolution_api_key="evo-key",
            evolution_instance="shop",
        )
        channel = WhatsAppChannel(lambda: settings, store=store)
        send = channel_send({"whatsapp": channel})
        try:
            record = await create(store, settings, await add_template(store))
            key0 = "evolution:shop:15550000000@s.whatsapp.net"
            key2 = "evolution:shop:15550000002@s.whatsapp.net"
            template = {
                "name": "restock",
                "language": "en",
                "parameters": {"1": "Person", "2": "The red kettle"},
            }
            await send(key2, "earlier", {**template, "parameters": {"1": "Old", "2": "news"}})
            await store.claim_broadcast("dead", lease_seconds=30)
            for pid in ids[:3]:
                assert await store.start_send(record.id, pid, "dead")
            await send(key0, "k", template)  # the first landed; the 2nd and 3rd did not
            await store.release_broadcast(record.id, "dead")
            worker = BroadcastWorker(
                store,
                lambda: settings,
                send,
                owner="w2",
                reconcile=channel_reconcile({"whatsapp": channel}, settle_seconds=0),
            )
            await worker.run_until_idle()
        finally:
            await channel.aclose()

        asked = fake.calls("/chat/findMessages/shop")
        assert len(asked) == 3 and asked[0].headers["apikey"] == "evo-key"
        assert asked[0].json == {
            "where": {"key": {"remoteJid": "15550000000@s.whatsapp.net", "fromMe": True}},
            "offset": 100,
            "page": 1,
        }
        rows, _ = await store.list_recipients(record.id)
        assert [r.state for r in rows] == ["sent", "uncertain", "sent", "sent"]
        sends = Counter(
            (c.json["number"], c.json["text"]) for c in fake.calls("/message/sendText/shop")
        )
        assert sends[("15550000000", TEXT)] == 1  # landed before the crash; not sent again
        assert sends[("15550000001", TEXT)] == 0  # no saved history: uncertain, not resent
        assert sends[("15550000002", TEXT)] == 1  # history shows it never landed: sent now
        assert sends[("15550000003", TEXT)] == 1
