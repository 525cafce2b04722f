"""WAHA LID lookups: a chat named only by ``@lid`` gets its phone from WAHA
(``GET /api/{session}/lids/{lid}``, ``X-Api-Key``), cached; the thread is the phone's and links
to the CRM person with that phone (SQLite and PostgreSQL); a failed lookup loses nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatbridge.channels.base import InboundRequest
from chatbridge.channels.whatsapp import WhatsAppChannel
from chatbridge.channels.whatsapp.lids import FAILED_TTL, FOUND_TTL, MISSING_TTL, LidDirectory
from chatbridge.config import AgentConfig, InboxMapping
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import DeliveryReceipt, InboundMessage, OwnerSignal, ParsedWebhook
from chatbridge.testing.fake_wa_lids import add_lid, lids_of
from chatbridge.testing.fake_whatsapp import (
    WAHA_ENGINES,
    FakeWhatsApp,
    WahaEngine,
    create_fake_whatsapp,
    waha_message,
)
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import running_stack, wait_until

LID = "123123123123123@lid"
PHONE = "15550100123"  # the fictional +1 555 range: possible, not valid
E164 = "+15550100123"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Waha:
    url: str
    fake: FakeWhatsApp
    settings: CommsSettings
    channel: WhatsAppChannel
    clock: Clock

    def lookups(self) -> list[str]:
        """Paths of the LID lookups the fake received, as they came on the wire."""
        return lids_of(self.fake).raw_paths

    async def parse(self, payload: dict[str, Any]) -> ParsedWebhook:
        request = InboundRequest(json.dumps(payload).encode(), path={"provider": "waha"})
        [parsed] = await self.channel.parse(request)
        return parsed


@pytest.fixture
async def waha() -> AsyncIterator[Waha]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        holder: list[CommsSettings] = [
            CommsSettings(  # type: ignore[call-arg]
                _env_file=None, provider="waha", waha_base_url=url, waha_api_key="waha-key"
            )
        ]
        channel = WhatsAppChannel(lambda: holder[0], timeout=5)
        clock = Clock()
        channel.lids = LidDirectory(channel.http, clock=clock, timeout=5)
        try:
            yield Waha(url, app.state.fake, holder[0], channel, clock)
        finally:
            await channel.aclose()


# ------------------------------------------------------------------ the lookup itself


async def test_lookup_sends_the_lid_number_with_the_api_key_and_reads_pn(waha: Waha) -> None:
    add_lid(waha.fake, LID, PHONE)
    lids = waha.channel.lids
    assert await lids.phone_of(waha.settings, "default", LID) == f"{PHONE}@c.us"
    [request] = waha.fake.calls("/api/default/lids")
    assert (request.method, request.path) == ("GET", "/api/default/lids/123123123123123")
    assert request.headers["x-api-key"] == "waha-key"
    assert request.json is None
    assert waha.lookups() == ["/api/default/lids/123123123123123"]


async def test_answers_are_cached_for_their_time_and_the_cache_is_bounded(waha: Waha) -> None:
    add_lid(waha.fake, LID, PHONE)
    lids = waha.channel.lids
    unknown = "999999@lid"
    for _ in range(3):
        assert await lids.phone_of(waha.settings, "default", LID) == f"{PHONE}@c.us"
        assert await lids.phone_of(waha.settings, "default", unknown) is None
    assert len(waha.lookups()) == 2  # one each

    # "not known" is asked again after MISSING_TTL; a found phone lasts FOUND_TTL
    add_lid(waha.fake, unknown, "447700900123")
    waha.clock.now += MISSING_TTL + 1
    assert await lids.phone_of(waha.settings, "default", unknown) == "447700900123@c.us"
    assert await lids.phone_of(waha.settings, "default", LID) == f"{PHONE}@c.us"
    assert len(waha.lookups()) == 3
    waha.clock.now += FOUND_TTL + 1
    assert await lids.phone_of(waha.settings, "default", LID) == f"{PHONE}@c.us"
    assert len(waha.lookups()) == 4

    # another session is another directory
    waha.fake.waha_sessions["second"] = "WORKING"
    assert await lids.phone_of(waha.settings, "second", LID) is None
    assert waha.lookups()[-1] == "/api/second/lids/123123123123123"

    small = LidDirectory(waha.channel.http, clock=waha.clock, max_entries=2)
    for n in range(5):
        await small.phone_of(waha.settings, "default", f"{n}@lid")
    assert len(small) == 2


async def test_lookups_of_one_lid_at_once_share_one_request(waha: Waha) -> None:
    add_lid(waha.fake, LID, PHONE)
    state = lids_of(waha.fake)
    state.hold = asyncio.Event()
    lookups = [
        asyncio.create_task(waha.channel.lids.phone_of(waha.settings, "default", LID))
        for _ in range(5)
    ]
    await wait_until(lambda: len(waha.lookups()) == 1)
    state.hold.set()
    assert await asyncio.gather(*lookups) == [f"{PHONE}@c.us"] * 5
    assert len(waha.lookups()) == 1


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda fake: setattr(fake, "waha_api_key", "another-key"), "HTTP 401"),
        (lambda fake: fake.waha_sessions.update(default="STOPPED"), "HTTP 422"),
        (lambda fake: fake.fail_next.append((500, {}, {"message": "boom"})), "HTTP 500"),
    ],
)
async def test_a_failed_lookup_is_none_logged_and_cached_briefly(
    waha: Waha, setup: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    add_lid(waha.fake, LID, PHONE)
    setup(waha.fake)
    with caplog.at_level(logging.WARNING, "chatbridge.whatsapp.lids"):
        assert await waha.channel.lids.phone_of(waha.settings, "default", LID) is None
    assert reason in caplog.text and "waha-key" not in caplog.text
    assert await waha.channel.lids.phone_of(waha.settings, "default", LID) is None
    assert len(waha.lookups()) <= 1  # the fail_next answer comes before the fake's handler
    waha.fake.waha_api_key = "waha-key"
    waha.fake.waha_sessions["default"] = "WORKING"
    waha.clock.now += FAILED_TTL + 1
    assert await waha.channel.lids.phone_of(waha.settings, "default", LID) == f"{PHONE}@c.us"


async def test_a_slow_lookup_gives_up_after_its_timeout(waha: Waha) -> None:
    add_lid(waha.fake, LID, PHONE)
    hold = lids_of(waha.fake).hold = asyncio.Event()  # not set: WAHA does not answer
    waha.channel.lids.timeout = 0.3
    parsed = await asyncio.wait_for(waha.parse(waha_message(chat=LID)), 10)
    hold.set()
    assert isinstance(parsed, InboundMessage)
    assert parsed.channel_key == f"waha:default:{LID}" and parsed.contact is not None
    assert parsed.contact.phone is None


# ------------------------------------------------------------------ parsed messages


@pytest.mark.parametrize("engine", WAHA_ENGINES)
async def test_a_lid_chat_without_alt_becomes_the_phone_chat(
    waha: Waha, engine: WahaEngine
) -> None:
    waha.fake.waha_engine = engine
    add_lid(waha.fake, LID, PHONE)
    parsed = await waha.parse(waha_message(chat=LID, engine=engine))
    assert isinstance(parsed, InboundMessage) and parsed.contact is not None
    assert parsed.channel_key == f"waha:default:{PHONE}@c.us"
    assert parsed.contact.phone == E164 and parsed.contact.external_id == E164
    assert parsed.contact.metadata["identities"] == [
        {"kind": "phone", "value": E164},
        {"kind": "jid", "value": f"{PHONE}@c.us"},
        {"kind": "lid", "value": LID},
    ]
    assert parsed.context["phone"] == E164 and parsed.context["lid"] == LID
    assert parsed.context["chat_id"] == f"{PHONE}@c.us"
    assert parsed.metadata["phone"] == E164
    assert parsed.external_message_id == f"false_{LID}_3EB0C0BD05DCA97A7C09CB"  # the dedupe key

    # the same customer with remoteJidAlt: the same thread, and no lookup needed
    before = len(waha.lookups())
    alt = await waha.parse(
        waha_message(chat=LID, remote_jid_alt=f"{PHONE}@s.whatsapp.net", msg_id="X2")
    )
    assert isinstance(alt, InboundMessage) and alt.channel_key == parsed.channel_key
    assert len(waha.lookups()) == before


async def test_an_unknown_lid_stays_an_unlinked_lid_chat(waha: Waha) -> None:
    parsed = await waha.parse(waha_message(chat=LID))
    assert isinstance(parsed, InboundMessage) and parsed.contact is not None
    assert parsed.channel_key == f"waha:default:{LID}"
    assert parsed.contact.phone is None and parsed.contact.external_id == LID
    assert waha.lookups() == ["/api/default/lids/123123123123123"]


async def test_a_group_member_known_by_lid_gets_a_phone_and_the_group_stays(waha: Waha) -> None:
    waha.settings = waha.settings.updated({"groups_enabled": True})
    waha.channel.settings_source = lambda: waha.settings
    add_lid(waha.fake, LID, PHONE)
    parsed = await waha.parse(waha_message(chat="120363040000000000@g.us", participant=LID))
    assert isinstance(parsed, InboundMessage) and parsed.contact is not None
    assert parsed.channel_key == "waha:default:120363040000000000@g.us"
    assert parsed.contact.phone == E164 and parsed.context["participant"] == LID


async def test_our_own_messages_in_a_lid_chat_land_in_the_phone_thread(waha: Waha) -> None:
    add_lid(waha.fake, LID, PHONE)
    typed = await waha.parse(waha_message("on it", chat=LID, from_me=True, event="message.any"))
    assert isinstance(typed, DeliveryReceipt) and isinstance(typed.otherwise, OwnerSignal)
    assert typed.channel_key == typed.otherwise.channel_key == f"waha:default:{PHONE}@c.us"


async def test_the_setting_turns_lookups_off(waha: Waha) -> None:
    waha.settings = waha.settings.updated({"waha_lid_lookup": False})
    waha.channel.settings_source = lambda: waha.settings
    add_lid(waha.fake, LID, PHONE)
    parsed = await waha.parse(waha_message(chat=LID))
    assert isinstance(parsed, InboundMessage) and parsed.channel_key == f"waha:default:{LID}"
    assert waha.lookups() == []


# ------------------------------------------------------------------ the fake is WAHA-strict


async def test_the_fake_answers_like_waha(waha: Waha) -> None:
    add_lid(waha.fake, LID, PHONE)
    async with httpx.AsyncClient(base_url=waha.url, headers={"X-Api-Key": "waha-key"}) as c:
        for form in ("123123123123123", "123123123123123%40lid", "123123123123123@lid"):
            r = await c.get(f"/api/default/lids/{form}")
            assert (r.status_code, r.json()) == (200, {"lid": LID, "pn": f"{PHONE}@c.us"})
        r = await c.get("/api/default/lids/42")
        assert r.json() == {"lid": "42@lid", "pn": None}
        r = await c.get(f"/api/default/lids/pn/{PHONE}")
        assert r.json() == {"lid": LID, "pn": f"{PHONE}@c.us"}
        assert (await c.get("/api/default/lids/count")).json() == {"count": 1}
        assert (await c.get("/api/default/lids")).json() == [{"lid": LID, "pn": f"{PHONE}@c.us"}]
        assert (await c.get("/api/default/lids/abc@c.us")).status_code == 400
        assert (await c.get("/api/nope/lids/42")).status_code == 404
        r = await c.get("/api/default/lids/42", headers={"X-Api-Key": "wrong"})
        assert (r.status_code, r.json()["message"]) == (401, "Unauthorized")


# ------------------------------------------------------------------ end to end, with the store


async def test_a_lid_message_links_its_thread_to_the_person_with_that_phone(
    database_url: str,
) -> None:
    """The issue's case: a +1 555 test contact, created through the people API in another
    form, writes from an @lid chat WAHA sent without remoteJidAlt; the thread is linked to
    them, the agent's reply goes to their phone chat, and an unknown LID's message is kept."""
    app = create_fake_whatsapp()
    fake: FakeWhatsApp = app.state.fake
    add_lid(fake, LID, PHONE)
    async with (
        serve_app(app) as fake_url,
        running_stack(database_url, admin_key="test-admin-key-0123", delay=0) as stack,
    ):
        stack.http.headers["Authorization"] = "Bearer test-admin-key-0123"
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
        stack.bridge.set_comms_settings(
            CommsSettings(  # type: ignore[call-arg]
                _env_file=None,
                provider="waha",
                waha_base_url=fake_url,
                waha_api_key="waha-key",
                default_country="GB",
            )
        )
        r = await stack.http.post(
            "/api/comms/people", json={"name": "Test Contact", "phone": "+1 (555) 010-0123"}
        )
        assert r.status_code == 201, r.text
        person = r.json()["person"]
        assert person["phone"] == E164
        # the same number in every form a WhatsApp id takes is that person's phone (409);
        # what is no phone is refused with the reason
        for form in (PHONE, f"{PHONE}@c.us", f"{PHONE}:3@s.whatsapp.net", "+1 555 010 0123"):
            r = await stack.http.post("/api/comms/people", json={"name": "Dup", "phone": form})
            assert (r.status_code, r.json()["error"]["code"]) == (409, "phone_taken"), form
        for bad, reason in ((LID, "only digits"), ("+1 555 0100", "not a possible")):
            r = await stack.http.post("/api/comms/people", json={"name": "Bad", "phone": bad})
            assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_phone"), bad
            assert reason in r.json()["error"]["message"]

        r = await stack.http.post("/api/comms/webhooks/waha", json=waha_message(chat=LID))
        assert (r.status_code, r.json()["status"]) == (200, "accepted"), r.text
        await wait_until(lambda: fake.calls("/api/sendText"))
        assert fake.calls("/api/sendText")[0].json == {
            "session": "default",
            "chatId": f"{PHONE}@c.us",
            "text": "Echo: Is this in stock?",
        }
        conv = await stack.bridge.store.find_conversation("whatsapp", f"waha:default:{PHONE}@c.us")
        assert conv is not None
        thread = (await stack.http.get(f"/api/comms/threads/{conv.id}")).json()["thread"]
        assert thread["person"]["id"] == person["id"] and thread["linked_by"] == "auto"

        # WAHA cannot tell: the message is stored all the same, its thread unlinked
        fake.fail_next.append((503, {}, {"message": "unavailable"}))
        other = "777777777@lid"
        r = await stack.http.post(
            "/api/comms/webhooks/waha", json=waha_message("hello?", chat=other, msg_id="LID2")
        )
        assert (r.status_code, r.json()["status"]) == (200, "accepted"), r.text
        await wait_until(lambda: len(fake.calls("/api/sendText")) >= 2)
        conv = await stack.bridge.store.find_conversation("whatsapp", f"waha:default:{other}")
        assert conv is not None
        thread = (await stack.http.get(f"/api/comms/threads/{conv.id}")).json()["thread"]
        assert thread["person"] is None
