"""The comms store on SQLite and PostgreSQL: auto-linking threads by phone, and the durable
transcription queue (lease, retry with a due time, fencing, release)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update

from chatbridge.crm.linking import inbound_phone, link_inbound, load_settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.store import Store
from chatbridge.store import tables as t
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


async def test_transcription_jobs_are_leased_retried_when_due_and_fenced(store: Store) -> None:
    call = await store.add_call(
        {"direction": "inbound", "recording_url": "http://127.0.0.1:9/a.mp3"}, transcribe=True
    )
    assert isinstance(call, dict) and call["transcript_status"] == "queued"
    jobs = await store.claim_transcriptions("w1", limit=5, lease_seconds=30)
    assert [j["id"] for j in jobs] == [call["id"]] and jobs[0]["attempts"] == 1
    # leased: nobody else gets it
    assert await store.claim_transcriptions("w2", limit=5, lease_seconds=30) == []
    # a retry waits for its due time
    later = time.time() + 60
    assert await store.end_transcription_attempt(call["id"], "w1", error="503", retry_at=later)
    assert await store.claim_transcriptions("w2", limit=5, lease_seconds=30) == []
    assert (await store.get_call(call["id"]))["transcript_status"] == "queued"  # type: ignore[index]
    assert (
        await store.end_transcription_attempt(call["id"], "w1", error="x", retry_at=None) is False
    )

    assert await store.queue_transcription(call["id"]) == "busy"

    # its due time comes: w2 leases it (briefly); w1's late answer is refused
    async with store._tx() as conn:
        await conn.execute(update(t.call_logs).values(lease_expires_at=None))
    jobs = await store.claim_transcriptions("w2", limit=5, lease_seconds=30)
    assert [j["attempts"] for j in jobs] == [2]
    assert not await store.finish_transcription(call["id"], "w1", transcript="late", note=None)
    # w2's lease expires (aged in the row; the comms store reads time.time): w3 takes over
    async with store._tx() as conn:
        await conn.execute(
            update(t.call_logs).values(lease_expires_at=t.call_logs.c.lease_expires_at - 3600)
        )
    jobs = await store.claim_transcriptions("w3", limit=5, lease_seconds=30)
    assert [j["id"] for j in jobs] == [call["id"]]
    assert await store.finish_transcription(call["id"], "w3", transcript="hello", note=None)
    done = await store.get_call(call["id"])
    assert done is not None and (done["transcript_status"], done["transcript"]) == ("done", "hello")


async def test_released_jobs_are_due_at_once(store: Store) -> None:
    call = await store.add_call(
        {"direction": "outbound", "recording_path": "/nowhere.wav"}, transcribe=True
    )
    assert isinstance(call, dict)
    assert await store.claim_transcriptions("w1", limit=1, lease_seconds=300)
    await store.release_transcriptions("w1")
    assert [j["id"] for j in await store.claim_transcriptions("w2", limit=1, lease_seconds=5)] == [
        call["id"]
    ]


async def test_stored_settings_win_over_the_environment_and_bad_ones_are_skipped(
    store: Store,
) -> None:
    await store.save_comms_settings({"default_country": "IN", "auto_link": "not a bool"})
    settings = await load_settings(store, CommsSettings(default_country="GB"))
    assert settings.default_country == "IN" and settings.auto_link is True
