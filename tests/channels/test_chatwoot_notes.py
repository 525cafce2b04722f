"""Private notes at Chatwoot, end to end over loopback: the bridge's own note comes back as a
``message_created`` webhook (outgoing, ``private: true``, our ``source_id``) and must be its
delivery's receipt — never a human agent's reply (which would hand the conversation to the
human) nor a customer's message (which would start a turn). An operator's own note keeps
today's behaviour: dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from chatbridge.store import tables as t
from chatbridge.store.records import DeliverySpec
from tests.e2e.harness import Stack, running_stack, wait_until

SECRET = "notes-secret-0123"
SUMMARY = "Handoff (keyword). The last 2 messages:\nCustomer: hello\nBot: hello"


@pytest.fixture(params=["bot", "user"])
async def s(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Stack]:
    """A stack whose bridge holds a bot's token (the default) or a user's: the note's echo
    comes from an ``agent_bot`` or from a ``user`` — the shape of a human's reply."""
    async with running_stack(
        sqlite_url,
        behaviour="delay",
        delay=0.0,
        secret=SECRET,
        typing_delay_seconds=0,
        mock_options={"token_kind": request.param},
    ) as s:
        yield s


async def _conversation(s: Stack) -> Any:
    await s.say("hello", conv=1)
    await s.wait_replies(1, conv=1)
    await s.idle()
    conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
    assert conv is not None and conv.owner == "bot"
    return conv


async def _count(s: Stack, table: Any) -> int:
    async with s.bridge.store._tx() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def _public(s: Stack) -> list[str]:
    return [m["content"] for m in s.mock.received_messages if not m["private"]]


def _echo_of(s: Stack, key: str) -> dict[str, Any] | None:
    for record in s.mock.webhook_history:
        if record["payload"].get("source_id") == key and record["status_code"] is not None:
            return record
    return None


async def test_our_note_reaches_chatwoot_private_and_its_echo_is_only_a_receipt(s: Stack) -> None:
    conv = await _conversation(s)
    turns, messages = await _count(s, t.turns), await _count(s, t.messages)
    public = _public(s)
    assert len(public) == 1  # the bot's answer to "hello"
    done = await s.bridge.store.add_outbound(
        conv.id,
        text=None,
        author="agent",
        deliveries=[DeliverySpec("note", 5, text=SUMMARY)],
        respect_owner=False,
    )
    [delivery_id] = done.delivery_ids
    s.bridge.wake_deliveries()
    await wait_until(lambda: s.mock.notes(1), timeout=10)
    await s.idle()

    [note] = s.mock.notes(1)
    assert (note["content"], note["private"]) == (SUMMARY, True)
    key = note["source_id"]
    assert key and note["echo_id"] == key
    assert _public(s) == public  # the customer's side got nothing new

    await wait_until(lambda: _echo_of(s, key), timeout=10)
    echo = _echo_of(s, key)
    assert echo is not None
    assert (echo["payload"]["private"], echo["payload"]["message_type"]) == (True, "outgoing")
    assert echo["status_code"] == 200
    assert echo["response"] == {"status": "stored", "reason": "receipt"}, echo["response"]

    after = await s.bridge.store.find_conversation("chatwoot", "1:1")
    assert after is not None and after.owner == "bot"
    assert await _count(s, t.turns) == turns
    assert await _count(s, t.messages) == messages
    async with s.bridge.store._tx() as conn:
        row = (
            await conn.execute(
                select(
                    t.deliveries.c.kind,
                    t.deliveries.c.state,
                    t.deliveries.c.receipt_external_id,
                ).where(t.deliveries.c.id == delivery_id)
            )
        ).one()
    assert tuple(row) == ("note", "done", str(note["id"]))


async def test_an_operators_note_is_dropped_and_a_public_reply_still_takes_over(s: Stack) -> None:
    """Today's behaviour, kept: a human's private note changes nothing; the same words as a
    public reply hand the conversation to the human (what a misread note echo would do)."""
    await _conversation(s)
    note = await s.say(
        "internal: VIP", conv=1, message_type="outgoing", private=True, sender_type="user"
    )
    assert note["response"] == {"status": "ignored", "reason": "private_note"}
    conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
    assert conv is not None and conv.owner == "bot"

    reply = await s.say("internal: VIP", conv=1, message_type="outgoing", sender_type="user")
    assert reply["status_code"] == 200, reply
    conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
    assert conv is not None and conv.owner == "human"
