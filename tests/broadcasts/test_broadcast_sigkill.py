"""A 1,000-recipient broadcast, the bridge process SIGKILLed halfway and started again (as
another instance, after the dead one's lease ran out): nobody gets the template twice, and
everyone the fake WAHA did not get it from the first life gets it from the second.

The bridge is a real child process (``python -m chatbridge serve``) sending through the real
WhatsApp channel to the fake WAHA served here; the kill lands while it is sending at 200/s,
so one send may be cut off between the gateway call and its record. The next life asks WAHA
for the chat's messages before deciding (``pipeline.broadcast_reconcile``): a send that landed
is recorded sent, one that did not is sent now. Every recipient gets it exactly once.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from chatbridge.store import Store
from chatbridge.testing.fake_whatsapp import create_fake_whatsapp
from chatbridge.testing.servers import bind_socket, serve_app
from tests.broadcasts.rig import WAHA_KEY, add_people, add_template, create, waha_settings
from tests.e2e.harness import wait_until
from tests.e2e.test_crash_restart import BridgeProcess

PEOPLE = 1000
RATE = 200.0
LEASE_SECONDS = 2.0


async def test_sigkill_halfway_then_resume_sends_everyone_once(
    database_url: str, tmp_path: Path
) -> None:
    fake_app = create_fake_whatsapp()
    fake = fake_app.state.fake
    async with serve_app(fake_app) as fake_url:
        store = Store(database_url)
        await store.migrate()
        try:
            await add_people(store, PEOPLE, opted_out={3})
            settings = waha_settings(fake_url)
            record = await create(store, settings, await add_template(store), rate=RATE)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("CHATBRIDGE_")},
                "CHATBRIDGE_DATABASE_URL": database_url,
                "CHATBRIDGE_AUTO_MIGRATE": "true",
                "CHATBRIDGE_LEASE_SECONDS": str(LEASE_SECONDS),
                "CHATBRIDGE_POLL_INTERVAL": "0.05",
                "CHATBRIDGE_COMMS_PROVIDER": "waha",
                "CHATBRIDGE_COMMS_WAHA_BASE_URL": fake_url,
                "CHATBRIDGE_COMMS_WAHA_API_KEY": WAHA_KEY,
                "CHATBRIDGE_COMMS_WAHA_SESSION": "default",
            }
            listener = bind_socket()
            listener.listen(128)
            bridge = BridgeProcess(env, listener, tmp_path / "bridge.log")
            try:
                await bridge.start()
                await wait_until(lambda: len(fake.calls("/api/sendText")) >= PEOPLE // 2, 60)
                await bridge.kill()
                at_kill = len(fake.calls("/api/sendText"))
                assert at_kill < PEOPLE - 1, "the kill came after the end: nothing to resume"
                mid = await store.get_broadcast(record.id)
                assert mid is not None and mid.state == "running"
                cut_off = mid.counts.get("sending", 0)
                assert cut_off <= 1, mid.counts  # one send at a time

                await bridge.start()  # another instance: takes over the dead lease

                async def finished() -> bool:
                    b = await store.get_broadcast(record.id)
                    return b is not None and b.state == "done"

                await wait_until(finished, 60)
            finally:
                await bridge.stop()
                listener.close()

            per_chat = Counter(c.json["chatId"] for c in fake.calls("/api/sendText"))
            assert max(per_chat.values()) == 1, per_chat.most_common(3)
            assert len(per_chat) == PEOPLE - 1  # everyone but the opted-out one, once
            rows, total = await store.list_recipients(record.id, limit=PEOPLE)
            assert total == PEOPLE
            by_state = Counter(r.state for r in rows)
            assert by_state == {"sent": PEOPLE - 1, "skipped": 1}, by_state
            for r in rows:
                chat = (r.address or "").rsplit(":", 1)[-1]
                assert per_chat[chat] == (1 if r.state == "sent" else 0), r
            if cut_off:  # the cut-off send was looked up at WAHA, not sent blindly
                assert fake.calls("/api/default/chats/"), "no reconcile call"
        finally:
            await store.close()
