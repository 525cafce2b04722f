"""``Store.add_notice`` on SQLite and PostgreSQL: a notice is a system message; it reaches the
channel only when asked and while a bot owns the conversation; a turn's working notice is
written at most once, and never once the turn's reply is written."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from chatbridge.store import Store
from chatbridge.store.records import DeliverySpec
from tests.store.test_store_contract import bot_decides, inbound, make_route


async def _turn(store: Store, conv: str = "A"):  # type: ignore[no-untyped-def]
    route = await make_route(store)
    await store.ingest(inbound(conv, 0), route=route, response_mode="async", decide=bot_decides)
    [turn] = await store.claim_turns("w", limit=1, lease_seconds=30)
    return turn


async def _sent(store: Store) -> list[tuple[str, str | None]]:
    """Every delivery in the order it leaves: (kind, text)."""
    out: list[tuple[str, str | None]] = []
    while claimed := await store.claim_deliveries("w", limit=10, lease_seconds=30):
        for d in claimed:
            out.append((d.kind, d.text))
            await store.finish_delivery(d.id, "w", external_id=None)
    return out


async def test_a_notice_is_a_system_message_kept_off_the_channel_unless_asked(
    store: Store,
) -> None:
    turn = await _turn(store)
    conv = turn.conversation_id
    meta = {"notice": "warning", "agent_id": "a1"}
    kept = await store.add_notice(
        conv, text="Slow today", meta=meta, to_channel=False, max_attempts=3
    )
    assert kept.ok and not kept.delivered and kept.delivery_ids == []
    sent = await store.add_notice(
        conv, text="Back soon", meta={"notice": "system"}, to_channel=True, max_attempts=3
    )
    assert sent.ok and sent.delivered and len(sent.delivery_ids) == 1
    notices = [m for m in await store.list_messages(conv) if m.author == "system"]
    assert [(m.text, m.direction, m.meta) for m in notices] == [
        ("Slow today", "note", meta),
        ("Back soon", "out", {"notice": "system"}),
    ]
    assert await _sent(store) == [("message", "Back soon")]
    missing = await store.add_notice("c_none", text="x", meta={}, to_channel=True, max_attempts=3)
    assert not missing.ok


async def test_a_human_owned_conversation_gets_the_notice_as_a_note_only(store: Store) -> None:
    turn = await _turn(store)
    await store.set_thread_owner(turn.conversation_id, "human")
    r = await store.add_notice(
        turn.conversation_id, text="hi", meta={"notice": "system"}, to_channel=True, max_attempts=3
    )
    assert r.ok and not r.delivered
    assert await _sent(store) == []


async def test_a_turns_working_notice_is_written_once_and_before_its_reply(store: Store) -> None:
    turn = await _turn(store)
    conv = turn.conversation_id
    key = f"working:t_{turn.id}"

    async def notice(owner: str = "w") -> bool:
        r = await store.add_notice(
            conv,
            text="Working on it…",
            meta={"notice": "system", "working": True},
            to_channel=True,
            max_attempts=3,
            turn=(turn.id, owner),
            key=key,
        )
        return r.ok

    assert not await notice(owner="someone-else")  # not our lease: nothing
    assert await notice()
    assert not await notice()  # once per turn
    done = await store.complete_turn(
        turn.id,
        "w",
        state="done",
        outcome="reply",
        reply_text="Here it is",
        deliveries=[DeliverySpec("message", 3, text="Here it is")],
    )
    assert done.ok
    assert await _sent(store) == [("message", "Working on it…"), ("message", "Here it is")]


async def test_no_working_notice_after_the_reply_was_written(store: Store) -> None:
    turn = await _turn(store)
    await store.complete_turn(
        turn.id,
        "w",
        state="done",
        outcome="reply",
        reply_text="fast",
        deliveries=[DeliverySpec("message", 3, text="fast")],
    )
    late = await store.add_notice(
        turn.conversation_id,
        text="Working on it…",
        meta={"notice": "system"},
        to_channel=True,
        max_attempts=3,
        turn=(turn.id, "w"),
        key=f"working:t_{turn.id}",
    )
    assert not late.ok
    assert await _sent(store) == [("message", "fast")]


async def test_a_notice_racing_the_completion_still_goes_out_first(store: Store) -> None:
    """Whichever commits first, the customer never sees the notice after the reply."""
    for n in range(5):
        route = await make_route(store, inbox_id=10 + n)
        msg = replace(inbound(f"R{n}", 0), inbox_id=10 + n)
        await store.ingest(msg, route=route, response_mode="async", decide=bot_decides)
        [turn] = await store.claim_turns("w", limit=1, lease_seconds=30)
        notice, done = await asyncio.gather(
            store.add_notice(
                turn.conversation_id,
                text="Working on it…",
                meta={"notice": "system"},
                to_channel=True,
                max_attempts=3,
                turn=(turn.id, "w"),
                key=f"working:t_{turn.id}",
            ),
            store.complete_turn(
                turn.id,
                "w",
                state="done",
                outcome="reply",
                reply_text="reply",
                deliveries=[DeliverySpec("message", 3, text="reply")],
            ),
        )
        assert done.ok
        sent = [text for _, text in await _sent(store)]
        assert sent == (["Working on it…", "reply"] if notice.ok else ["reply"]), sent
