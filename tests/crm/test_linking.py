"""Threads linked to people by phone (``crm.linking`` over the store's CRM part), on SQLite and
PostgreSQL: the writer's phone found in any of its ids, auto-linking an inbound message's
thread, a new person picking up their phone's threads, and the stored settings."""

from __future__ import annotations

from typing import Any

from chatbridge.crm.linking import inbound_phone, link_inbound, load_settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.store import Store
from chatbridge.store.crm import ThreadFilter
from chatbridge.store.records import Route, TurnDecision

ROUTE = Route(
    id=0,
    channel="whatsapp",
    inbox_id=1,
    agent_id="agent1",
    reply_mode="async",
    timeout_seconds=5,
    fallback_text=None,
    on_failure="fallback",
    agent_bot_mode=False,
    created_at=0,
    updated_at=0,
)


def whatsapp(chat: str, text: str = "hi", **contact: Any) -> InboundMessage:
    return InboundMessage(
        channel="whatsapp",
        inbox_id=1,
        channel_key=f"waha:default:{chat}",
        text=text,
        contact=ContactInfo(external_id=chat, **contact),
    )


async def ingest(store: Store, msg: InboundMessage) -> str:
    result = await store.ingest(
        msg,
        route=ROUTE,
        response_mode="async",
        decide=lambda conv: TurnDecision(create_turn=False, owner=conv.owner),
    )
    assert result.conversation_id is not None
    return result.conversation_id


def test_the_phone_of_a_whatsapp_writer_is_found_in_any_of_its_ids() -> None:
    assert inbound_phone(whatsapp("919876543210@c.us"), "US") == "+919876543210"
    assert inbound_phone(whatsapp("919876543210"), "US") == "+919876543210"  # Meta's wa_id
    assert inbound_phone(whatsapp("123456@lid", phone="+12025550143"), "IN") == "+12025550143"
    assert inbound_phone(whatsapp("123456@lid"), "US") is None


async def test_an_inbound_message_links_its_thread_to_the_person_with_that_phone(
    store: Store,
) -> None:
    settings = CommsSettings(default_country="IN")
    person, linked = await store.create_person(
        {"name": "Ravi", "phone": "+919876543210"}, auto_link=True
    )
    assert linked == 0
    msg = whatsapp("919876543210@c.us")
    conv = await ingest(store, msg)
    assert await link_inbound(store, settings, msg, conv) == person["id"]
    thread = await store.get_thread(conv)
    assert thread is not None
    assert thread["person"]["name"] == "Ravi" and thread["linked_by"] == "auto"

    # an operator's unlink sticks: the next message does not link it again
    assert await store.link_thread(conv, None) == "ok"
    assert await link_inbound(store, settings, msg, conv) is None
    assert (await store.get_thread(conv))["unlinked"] is True  # type: ignore[index]

    # with auto_link off, a new thread stays unlinked
    other = whatsapp("919876543211@c.us")
    conv2 = await ingest(store, other)
    await store.create_person({"name": "Anu", "phone": "+919876543211"}, auto_link=False)
    off = settings.updated({"auto_link": False})
    assert await link_inbound(store, off, other, conv2) is None
    assert (await store.get_thread(conv2))["unlinked"] is True  # type: ignore[index]


async def test_a_new_person_picks_up_the_threads_of_their_phone(store: Store) -> None:
    conv = await ingest(store, whatsapp("447700900123@c.us", phone="+447700900123"))
    _, linked = await store.create_person({"name": "Ann", "phone": "+447700900123"}, auto_link=True)
    assert linked == 1
    threads, total = await store.list_threads(ThreadFilter(unlinked=True))
    assert (threads, total) == ([], 0)
    linked, _ = await store.list_threads(ThreadFilter(unlinked=False))
    assert [th["id"] for th in linked] == [conv]


async def test_stored_settings_win_over_the_environment_and_bad_ones_are_skipped(
    store: Store,
) -> None:
    await store.save_comms_settings({"default_country": "IN", "auto_link": "not a bool"})
    settings = await load_settings(store, CommsSettings(default_country="GB"))
    assert settings.default_country == "IN" and settings.auto_link is True
