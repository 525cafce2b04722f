"""The broadcast worker through the real WhatsApp channel to the fake WAHA over 127.0.0.1:
the pace measured at the fake, exact request shape, retries, refusals, pause and resume."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatbridge.channels.whatsapp.base import WhatsAppChannel
from chatbridge.crm.settings import CommsSettings
from chatbridge.pipeline.broadcast_reconcile import channel_reconcile
from chatbridge.pipeline.broadcasts import BURST, BroadcastWorker, channel_send
from chatbridge.store import Store
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.broadcasts.rig import WAHA_KEY, add_people, add_template, create, waha_settings
from tests.e2e.harness import wait_until


@asynccontextmanager
async def waha(store: Store) -> AsyncIterator[tuple[FakeWhatsApp, CommsSettings, WhatsAppChannel]]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        settings = waha_settings(url)
        channel = WhatsAppChannel(lambda: settings, store=store)
        try:
            yield app.state.fake, settings, channel
        finally:
            await channel.aclose()


def worker(store: Store, settings: CommsSettings, channel: WhatsAppChannel) -> BroadcastWorker:
    return BroadcastWorker(
        store, lambda: settings, channel_send({"whatsapp": channel}), owner="w1", poll_interval=0.05
    )


def sends(fake: FakeWhatsApp) -> list[dict[str, object]]:
    return [r.json for r in fake.calls("/api/sendText")]


async def test_thousand_recipients_paced_at_the_rate_each_once(store: Store) -> None:
    await add_people(store, 1000, opted_out={7, 500})
    async with waha(store) as (fake, settings, channel):
        rate = 200.0
        record = await create(store, settings, await add_template(store), rate=rate)
        await worker(store, settings, channel).run_until_idle()

        calls = fake.calls("/api/sendText")
        assert len(calls) == 998
        first = calls[0]
        assert first.headers["x-api-key"] == WAHA_KEY
        assert first.json == {
            "session": "default",
            "chatId": "15550000000@c.us",
            "text": "Hi Person, The red kettle is back in stock.",
        }
        per_chat = Counter(c.json["chatId"] for c in calls)
        assert set(per_chat.values()) == {1}
        assert "15550000007@c.us" not in per_chat and "15550000500@c.us" not in per_chat
        # the pace: n sends never come faster than the bucket allows (burst + rate * time)
        times = [c.at for c in calls]
        for i in range(0, len(times), 50):
            for j in range(i + 1, len(times), 97):
                assert j - i <= BURST + rate * (times[j] - times[i]) + 1, (i, j)
        achieved = (len(times) - 1) / (times[-1] - times[0])
        assert achieved <= rate * 1.02, achieved

        done = await store.get_broadcast(record.id)
        assert done is not None and done.state == "done"
        assert done.counts == {"sent": 998, "skipped": 2}
        rows, _ = await store.list_recipients(record.id, state="sent", limit=1)
        assert rows[0].external_id and rows[0].sent_at is not None


async def test_a_retry_then_a_refusal_then_a_missing_person_field(store: Store) -> None:
    ids = await add_people(store, 3)
    async with waha(store) as (fake, settings, channel):
        params = {"1": "{person.first_name}", "2": "{person.company}"}
        for pid in ids[:2]:
            await store.update_person(pid, {"company": "Acme"}, auto_link=False)
        record = await create(store, settings, await add_template(store), parameters=params)
        assert record.counts == {"queued": 2, "skipped": 1}  # the third has no company
        await store.update_person(ids[1], {"company": None}, auto_link=False)  # … now neither
        fake.fail_next.append((503, {}, {"message": "busy"}))  # the 1st: retried
        fake.fail_next.append((400, {}, {"message": "bad chat"}))  # … then refused for good
        await worker(store, settings, channel).run_until_idle()
        rows, _ = await store.list_recipients(record.id)
        assert [(r.state, r.attempts) for r in rows] == [
            ("failed", 2),
            ("failed", 1),
            ("skipped", 0),
        ]
        assert "400" in (rows[0].reason or "")
        assert rows[1].reason == "person has no company (parameter 2)"
        assert len(sends(fake)) == 2  # the two refused calls; nothing for the others


async def test_pause_stops_and_resume_finishes(store: Store) -> None:
    await add_people(store, 40)
    async with waha(store) as (fake, settings, channel):
        record = await create(store, settings, await add_template(store), rate=50)
        w = worker(store, settings, channel)
        task = asyncio.create_task(w.run())
        try:
            await wait_until(lambda: len(fake.calls("/api/sendText")) >= 5, 10)
            await store.change_broadcast(record.id, "pause")

            async def stopped() -> bool:
                b = await store.get_broadcast(record.id)
                return b is not None and b.counts.get("sending", 0) == 0

            await wait_until(stopped, 10)
            at_pause = len(fake.calls("/api/sendText"))
            assert at_pause < 40
            paused = await store.get_broadcast(record.id)
            assert paused is not None and paused.state == "paused"
            assert paused.counts.get("sent") == at_pause
            await store.change_broadcast(record.id, "resume")
            w.wake()

            async def finished() -> bool:
                b = await store.get_broadcast(record.id)
                return b is not None and b.state == "done"

            await wait_until(finished, 20)
        finally:
            await w.stop()
            task.cancel()
        per_chat = Counter(c.json["chatId"] for c in fake.calls("/api/sendText"))
        assert len(per_chat) == 40 and set(per_chat.values()) == {1}


async def test_cut_off_sends_are_asked_about_at_waha_never_resent_blindly(store: Store) -> None:
    ids = await add_people(store, 3)
    async with waha(store) as (fake, settings, channel):
        record = await create(store, settings, await add_template(store))
        assert await store.claim_broadcast("dead", lease_seconds=30) is not None
        # the dead worker's first send reached WAHA, its second never left the bridge
        assert await store.start_send(record.id, ids[0], "dead")
        landed = await channel_send({"whatsapp": channel})(
            "waha:default:15550000000@c.us",
            "k",
            {
                "name": "restock",
                "language": "en",
                "parameters": {"1": "Person", "2": "The red kettle"},
            },
        )
        assert await store.start_send(record.id, ids[1], "dead")
        await store.release_broadcast(record.id, "dead")  # as a lease that ran out
        w = BroadcastWorker(
            store,
            lambda: settings,
            channel_send({"whatsapp": channel}),
            owner="w2",
            reconcile=channel_reconcile({"whatsapp": channel}, settle_seconds=0),
        )
        await w.run_until_idle()
        asked = fake.calls("/api/default/chats/")
        assert [r.path for r in asked] == [
            "/api/default/chats/15550000000@c.us/messages",
            "/api/default/chats/15550000001@c.us/messages",
        ]
        assert asked[0].headers["x-api-key"] == WAHA_KEY
        rows, _ = await store.list_recipients(record.id)
        assert [r.state for r in rows] == ["sent", "sent", "sent"]
        assert rows[0].external_id is not None and rows[0].external_id.endswith(
            str(landed).rsplit("_", 1)[-1]
        )
        per_chat = Counter(c.json["chatId"] for c in fake.calls("/api/sendText"))
        assert per_chat == {
            "15550000000@c.us": 1,
            "15550000001@c.us": 1,
            "15550000002@c.us": 1,
        }


async def test_without_a_provider_answer_a_cut_off_send_is_uncertain(store: Store) -> None:
    ids = await add_people(store, 2)
    async with waha(store) as (fake, settings, channel):
        record = await create(store, settings, await add_template(store))
        await store.claim_broadcast("dead", lease_seconds=30)
        assert await store.start_send(record.id, ids[0], "dead")
        await store.release_broadcast(record.id, "dead")
        await worker(store, settings, channel).run_until_idle()  # no reconcile: cannot tell
        rows, _ = await store.list_recipients(record.id)
        assert [r.state for r in rows] == ["uncertain", "sent"]
        assert "check the chat" in (rows[0].reason or "")
        assert [c.json["chatId"] for c in fake.calls("/api/sendText")] == ["15550000001@c.us"]


async def test_a_person_who_opts_out_after_creation_is_skipped(store: Store) -> None:
    ids = await add_people(store, 3)
    async with waha(store) as (fake, settings, channel):
        record = await create(store, settings, await add_template(store))
        await store.update_person(ids[1], {"opted_out_at": 1.0}, auto_link=False)
        await worker(store, settings, channel).run_until_idle()
        rows, _ = await store.list_recipients(record.id)
        assert [(r.state, r.reason) for r in rows] == [
            ("sent", None),
            ("skipped", "opted_out"),
            ("sent", None),
        ]
        assert "15550000001@c.us" not in [c.json["chatId"] for c in fake.calls("/api/sendText")]
