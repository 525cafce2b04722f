"""The store contract: every test runs on SQLite and on PostgreSQL (see conftest)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.store import Store
from chatbridge.store.records import DeliverySpec, Route, TurnDecision
from chatbridge.testing.clock import FakeClock


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Leases run out when the test moves this clock, not when real time passes."""
    with FakeClock().installed() as fake:
        yield fake


def bot_decides(conv):  # type: ignore[no-untyped-def]
    return TurnDecision(create_turn=conv.owner == "bot", owner=conv.owner, reason="human_owner")


async def make_route(store: Store, inbox_id: int = 1) -> Route:
    await store.upsert_agent(
        "a1", transport="ws-dial-out", url="ws://127.0.0.1:1", timeout_seconds=5
    )
    route, created = await store.save_route(
        channel="chatwoot",
        inbox_id=inbox_id,
        agent_id="a1",
        reply_mode="async",
        timeout_seconds=5,
        fallback_text=None,
        on_failure="fallback",
        agent_bot_mode=False,
    )
    assert created
    return route


def inbound(conv: str, n: int, delivery: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="chatwoot",
        inbox_id=1,
        channel_key=f"1:{conv}",
        text=f"message {n}",
        external_message_id=f"1:{conv}-{n}",
        delivery_id=delivery,
        contact=ContactInfo(external_id=f"contact-{conv}", name="Ana"),
    )


async def test_ingest_writes_message_and_turn_and_dedupes(store: Store) -> None:
    route = await make_route(store)
    first = await store.ingest(
        inbound("42", 1, "d-1"), route=route, response_mode="async", decide=bot_decides
    )
    assert first.status == "accepted" and first.turn_id is not None
    again_delivery = await store.ingest(
        inbound("42", 1, "d-1"), route=route, response_mode="async", decide=bot_decides
    )
    again_message = await store.ingest(
        inbound("42", 1, "d-2"), route=route, response_mode="async", decide=bot_decides
    )
    assert again_delivery.status == "duplicate" and again_delivery.reason == "delivery_id"
    assert again_message.status == "duplicate" and again_message.reason == "message_id"
    assert first.conversation_id is not None
    assert [m.text for m in await store.list_messages(first.conversation_id)] == ["message 1"]
    assert (await store.counts())["turns"] == {"pending": 1}
    # the rolled-back duplicate did not keep its delivery receipt: d-2 is still new
    third = await store.ingest(
        inbound("42", 2, "d-2"), route=route, response_mode="async", decide=bot_decides
    )
    assert third.status == "accepted"


async def test_one_turn_in_flight_per_conversation(store: Store) -> None:
    route = await make_route(store)
    for n in range(3):
        await store.ingest(inbound("A", n), route=route, response_mode="async", decide=bot_decides)
    await store.ingest(inbound("B", 0), route=route, response_mode="async", decide=bot_decides)
    claimed = await store.claim_turns("w1", limit=10, lease_seconds=30)
    assert sorted(c.conversation.channel_key for c in claimed) == ["1:A", "1:B"]
    assert [m.text for c in claimed if c.conversation.channel_key == "1:A" for m in c.messages] == [
        "message 0"
    ]
    assert await store.claim_turns("w2", limit=10, lease_seconds=30) == []
    a = next(c for c in claimed if c.conversation.channel_key == "1:A")
    done = await store.complete_turn(a.id, "w1", state="done", outcome="reply", reply_text="hi")
    assert done.ok
    nxt = await store.claim_turns("w2", limit=10, lease_seconds=30)
    assert [m.text for c in nxt for m in c.messages] == ["message 1"]


async def test_expired_lease_is_taken_over_and_old_owner_is_fenced(
    store: Store, clock: FakeClock
) -> None:
    route = await make_route(store)
    await store.ingest(inbound("A", 0), route=route, response_mode="async", decide=bot_decides)
    [turn] = await store.claim_turns("dead-process", limit=1, lease_seconds=0.05)
    clock.advance(0.1)
    [again] = await store.claim_turns("w2", limit=1, lease_seconds=30)
    assert again.id == turn.id and again.attempts == 2
    late = await store.complete_turn(
        turn.id, "dead-process", state="done", outcome="reply", reply_text="late"
    )
    assert not late.ok
    ok = await store.complete_turn(
        turn.id,
        "w2",
        state="done",
        outcome="reply",
        reply_text="on time",
        deliveries=[DeliverySpec("message", 5, text="on time")],
    )
    assert ok.ok and len(ok.delivery_ids) == 1
    texts = [m.text for m in await store.list_messages(turn.conversation_id)]
    assert texts == ["message 0", "on time"]


async def test_renewed_lease_is_not_taken(store: Store, clock: FakeClock) -> None:
    route = await make_route(store)
    await store.ingest(inbound("A", 0), route=route, response_mode="async", decide=bot_decides)
    [turn] = await store.claim_turns("w1", limit=1, lease_seconds=0.2)
    await store.renew_leases("w1", 30, turn_ids=[turn.id])
    clock.advance(0.3)
    assert await store.claim_turns("w2", limit=1, lease_seconds=30) == []


async def test_only_the_named_leases_are_renewed(store: Store, clock: FakeClock) -> None:
    """A lease whose task died is not kept alive by its process: it runs out and the work is
    claimed again (the cause of acknowledged messages stranded after a database restart)."""
    route = await make_route(store)
    for key in ("A", "B"):
        await store.ingest(inbound(key, 0), route=route, response_mode="async", decide=bot_decides)
    live, dead = await store.claim_turns("w1", limit=2, lease_seconds=0.2)
    await store.renew_leases("w1", 30, turn_ids=[live.id])
    clock.advance(0.3)
    retaken = await store.claim_turns("w2", limit=5, lease_seconds=30)
    assert [t.id for t in retaken] == [dead.id]


async def test_deliveries_leave_in_order_and_retry_blocks_the_next(store: Store) -> None:
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    [turn] = await store.claim_turns("w", limit=1, lease_seconds=30)
    assert await store.start_typing(turn.id, "w", turn.conversation_id)  # the agent is slow
    # typing_on is picked up (being sent) before the agent's reply is written
    [typing_on] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert typing_on.kind == "typing_on"
    await store.complete_turn(
        turn.id,
        "w",
        state="done",
        outcome="reply",
        reply_text="one",
        deliveries=[DeliverySpec("message", 3, text="one"), DeliverySpec("typing_off", 3)],
    )
    await store.add_outbound(
        res.conversation_id,
        text="two",
        author="agent",
        deliveries=[DeliverySpec("message", 3, text="two")],
    )
    assert await store.claim_deliveries("w", limit=10, lease_seconds=30) == []  # one at a time
    order = [typing_on.kind]
    d = typing_on
    for _ in range(2):
        finished, _ = await store.finish_delivery(d.id, "w", external_id=None)
        assert finished
        [d] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
        order.append(d.kind)
    assert order == ["typing_on", "message", "typing_off"]
    finished, _ = await store.finish_delivery(d.id, "w", external_id=None)
    [d] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert d.text == "two"
    await store.retry_delivery(d.id, "w", next_attempt_at=time.time() + 60, error="HTTP 500")
    assert await store.claim_deliveries("w", limit=10, lease_seconds=30) == []


async def test_typing_the_channel_never_saw_is_dropped_as_a_pair(store: Store) -> None:
    route = await make_route(store)
    await store.ingest(inbound("A", 0), route=route, response_mode="async", decide=bot_decides)
    [turn] = await store.claim_turns("w", limit=1, lease_seconds=30)
    assert await store.start_typing(turn.id, "w", turn.conversation_id)
    done = await store.complete_turn(
        turn.id,
        "w",
        state="done",
        outcome="reply",
        reply_text="fast",
        deliveries=[DeliverySpec("message", 3, text="fast"), DeliverySpec("typing_off", 3)],
    )
    assert len(done.delivery_ids) == 1
    [d] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert (d.kind, d.text) == ("message", "fast")
    assert (await store.counts())["deliveries"] == {"skipped": 1, "leased": 1}


async def test_typing_is_written_only_for_a_turn_still_ours_in_a_bot_conversation(
    store: Store,
) -> None:
    route = await make_route(store)
    await store.ingest(inbound("A", 0), route=route, response_mode="async", decide=bot_decides)
    await store.ingest(inbound("B", 0), route=route, response_mode="async", decide=bot_decides)
    a, b = await store.claim_turns("w", limit=5, lease_seconds=30)
    assert not await store.start_typing(a.id, "someone-else", a.conversation_id)
    await store.apply_owner_signal(
        channel="chatwoot", channel_key="1:B", inbox_id=1, decide_owner=lambda _c: "human"
    )
    assert not await store.start_typing(b.id, "w", b.conversation_id)  # a human has it
    assert (await store.counts())["deliveries"] == {}
    # a turn that never showed typing writes no typing_off either
    done = await store.complete_turn(
        a.id,
        "w",
        state="done",
        outcome="reply",
        reply_text="quick",
        deliveries=[DeliverySpec("message", 3, text="quick"), DeliverySpec("typing_off", 3)],
        typing=False,
    )
    assert len(done.delivery_ids) == 1
    [d] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert (d.kind, d.text) == ("message", "quick")


async def test_finishing_a_delivery_leases_the_next_of_its_conversation(store: Store) -> None:
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    await store.add_outbound(
        res.conversation_id,
        text="one",
        author="agent",
        deliveries=[DeliverySpec("message", 3, text="one"), DeliverySpec("typing_off", 3)],
    )
    [first] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    finished, following = await store.finish_delivery(
        first.id, "w", external_id="7", claim_next=first, lease_seconds=30
    )
    assert finished and following is not None and following.kind == "typing_off"
    assert await store.claim_deliveries("other", limit=10, lease_seconds=30) == []
    finished, after = await store.finish_delivery(
        following.id, "w", external_id=None, claim_next=following, lease_seconds=30
    )
    assert finished and after is None
    # a delivery that is not due yet is left for its retry time
    await store.add_outbound(
        res.conversation_id,
        text="two",
        author="agent",
        deliveries=[DeliverySpec("message", 3, text="two"), DeliverySpec("typing_off", 3)],
    )
    [two] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    await store.retry_delivery(two.id, "w", next_attempt_at=time.time() + 60, error="500")
    assert await store.claim_deliveries("w", limit=10, lease_seconds=30) == []


async def test_dead_letter_is_listed_replayable_and_does_not_block(store: Store) -> None:
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    for text in ("first", "second"):
        await store.add_outbound(
            res.conversation_id,
            text=text,
            author="agent",
            deliveries=[DeliverySpec("message", 1, text=text)],
        )
    [d] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert await store.fail_delivery(d.id, "w", error="HTTP 404 not found")
    [dead] = await store.list_dead_letters()
    assert dead.id == d.id and dead.text == "first" and dead.last_error == "HTTP 404 not found"
    [d2] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert d2.text == "second"
    await store.finish_delivery(d2.id, "w", external_id="99")
    assert await store.replay_dead_letter(d.id)
    assert not await store.replay_dead_letter(d.id)
    [again] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert again.id == d.id and again.attempts == 1 and again.idempotency_key == d.idempotency_key
    assert await store.list_dead_letters() == []


async def test_delivery_whose_sender_died_is_marked_uncertain(
    store: Store, clock: FakeClock
) -> None:
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    await store.add_outbound(
        res.conversation_id,
        text="x",
        author="agent",
        deliveries=[DeliverySpec("message", 5, text="x")],
    )
    [d] = await store.claim_deliveries("dead", limit=1, lease_seconds=0.05)
    assert not d.uncertain
    clock.advance(0.1)
    # Its lease ran out before the send began: taken again, not uncertain.
    [d1] = await store.claim_deliveries("dead", limit=1, lease_seconds=0.05)
    assert d1.id == d.id and not d1.uncertain
    assert await store.mark_send_started(d.id, "dead")
    clock.advance(0.1)
    [d2] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert d2.id == d.id and d2.uncertain and d2.send_started_at is not None
    assert d2.receipt_at is None
    finished, _ = await store.finish_delivery(d.id, "dead", external_id=None)
    assert not finished
    assert not await store.mark_send_started(d.id, "dead")  # fenced: the lease is w's now


async def test_sends_are_marked_started_in_one_go_only_under_our_lease(store: Store) -> None:
    route = await make_route(store)
    for key in ("A", "B"):
        res = await store.ingest(
            inbound(key, 0), route=route, response_mode="async", decide=bot_decides
        )
        assert res.conversation_id
        await store.add_outbound(
            res.conversation_id,
            text=key,
            author="agent",
            deliveries=[DeliverySpec("message", 5, text=key)],
        )
    a, b = await store.claim_deliveries("me", limit=5, lease_seconds=30)
    assert await store.mark_sends_started([a.id, b.id, 999], "me") == {a.id, b.id}
    assert await store.mark_sends_started([a.id], "someone else") == set()
    assert await store.mark_sends_started([], "me") == set()


async def test_a_receipt_is_kept_on_the_delivery_with_its_key(
    store: Store, clock: FakeClock
) -> None:
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    await store.add_outbound(
        res.conversation_id,
        text="x",
        author="agent",
        deliveries=[DeliverySpec("message", 5, text="x")],
    )
    [d] = await store.claim_deliveries("dead", limit=1, lease_seconds=0.05)
    assert await store.mark_send_started(d.id, "dead")
    assert not await store.record_receipt("d_not_ours", "1")
    assert await store.record_receipt(d.idempotency_key, "77")
    assert await store.record_receipt(d.idempotency_key, "78")  # a repeat: the first wins
    assert await store.delivery_receipt(d.id) == (pytest.approx(time.time(), abs=5), "77")
    clock.advance(0.1)
    [d2] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert d2.uncertain and d2.receipt_at is not None and d2.receipt_external_id == "77"


async def test_release_leases_resets_unstarted_deliveries_and_expires_started_ones(
    store: Store,
) -> None:
    route = await make_route(store)
    for key in ("A", "B"):
        res = await store.ingest(
            inbound(key, 0), route=route, response_mode="async", decide=bot_decides
        )
        assert res.conversation_id
        await store.add_outbound(
            res.conversation_id,
            text=key,
            author="agent",
            deliveries=[DeliverySpec("message", 5, text=key)],
        )
    a, b = await store.claim_deliveries("me", limit=5, lease_seconds=30)
    assert await store.mark_send_started(a.id, "me")
    await store.release_leases("me")
    again = {d.id: d for d in await store.claim_deliveries("w", limit=5, lease_seconds=30)}
    assert again[a.id].uncertain  # its send may have reached the channel
    assert not again[b.id].uncertain  # never started: nothing to look for


async def test_human_owner_cancels_pending_turns_and_keeps_late_reply_as_note(store: Store) -> None:
    route = await make_route(store)
    await store.ingest(inbound("A", 0), route=route, response_mode="async", decide=bot_decides)
    await store.ingest(inbound("A", 1), route=route, response_mode="async", decide=bot_decides)
    [turn] = await store.claim_turns("w", limit=5, lease_seconds=30)
    conv, dup = await store.apply_owner_signal(
        channel="chatwoot",
        channel_key="1:A",
        inbox_id=1,
        decide_owner=lambda c: "human",
        note_text="I'll take it from here",
        external_message_id="1:human-1",
    )
    assert conv is not None and conv.owner == "human" and not dup
    done = await store.complete_turn(
        turn.id,
        "w",
        state="done",
        outcome="reply",
        reply_text="bot says",
        deliveries=[DeliverySpec("message", 3, text="bot says"), DeliverySpec("typing_off", 3)],
    )
    assert done.ok and not done.delivered
    kinds = [d.kind for d in await store.claim_deliveries("w", limit=10, lease_seconds=30)]
    assert kinds == ["typing_off"]
    msgs = await store.list_messages(turn.conversation_id)
    assert [(m.direction, m.author) for m in msgs] == [
        ("in", "contact"),
        ("in", "contact"),
        ("out", "human"),
        ("note", "agent"),
    ]
    assert (await store.counts())["turns"] == {"cancelled": 1, "done": 1}
    later = await store.ingest(
        inbound("A", 2), route=route, response_mode="async", decide=bot_decides
    )
    assert later.status == "stored" and later.reason == "human_owner"


async def test_concurrent_claimers_never_share_work(store: Store, database_url: str) -> None:
    route = await make_route(store)
    for conv in range(20):
        for n in range(3):
            await store.ingest(
                inbound(str(conv), n), route=route, response_mode="async", decide=bot_decides
            )
    others = [Store(database_url) for _ in range(3)]
    seen: list[tuple[str, int]] = []

    async def worker(s: Store, name: str) -> None:
        idle = 0
        while idle < 3:
            batch = await s.claim_turns(name, limit=4, lease_seconds=30)
            if not batch:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            for turn in batch:
                seen.append((turn.conversation_id, turn.id))
                assert (
                    await s.complete_turn(
                        turn.id, name, state="done", outcome="reply", reply_text="ok"
                    )
                ).ok

    try:
        await asyncio.gather(*(worker(s, f"w{i}") for i, s in enumerate(others)))
    finally:
        for s in others:
            await s.close()
    ids = [turn_id for _, turn_id in seen]
    assert len(ids) == 60 and len(set(ids)) == 60
    per_conv: dict[str, list[int]] = {}
    for conv_id, turn_id in seen:
        per_conv.setdefault(conv_id, []).append(turn_id)
    assert all(v == sorted(v) for v in per_conv.values())


async def test_routes_and_agents_round_trip(store: Store) -> None:
    await make_route(store, inbox_id=7)
    route, created = await store.save_route(
        channel="chatwoot",
        inbox_id=7,
        agent_id="a1",
        reply_mode="sync",
        timeout_seconds=9,
        fallback_text="later",
        on_failure="handoff",
        agent_bot_mode=True,
        overwrite=False,
    )
    assert not created and route.reply_mode == "async"
    route, _ = await store.save_route(
        channel="chatwoot",
        inbox_id=7,
        agent_id="a1",
        reply_mode="sync",
        timeout_seconds=9,
        fallback_text="later",
        on_failure="handoff",
        agent_bot_mode=True,
    )
    assert (route.reply_mode, route.on_failure, route.agent_bot_mode) == ("sync", "handoff", True)
    assert [r.inbox_id for r in await store.list_routes()] == [7]
    assert await store.delete_route("chatwoot", 7)
    assert not await store.delete_route("chatwoot", 7)
    agent = await store.get_agent("a1")
    assert agent is not None and agent.transport == "ws-dial-out"
    await store.touch_agents({"a1": 123.0})
    assert (await store.get_agent("a1")).last_seen_at == 123.0  # type: ignore[union-attr]


async def test_many_queued_deliveries_leave_oldest_first_one_at_a_time(store: Store) -> None:
    """Five replies queued in one conversation: each claim offers only the oldest open one,
    and the next only once it is done (chained claims included)."""
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    for n in range(5):
        await store.add_outbound(
            res.conversation_id,
            text=f"r{n}",
            author="agent",
            deliveries=[DeliverySpec("message", 5, text=f"r{n}")],
        )
    sent: list[str | None] = []
    [d] = await store.claim_deliveries("w", limit=10, lease_seconds=30)
    assert await store.claim_deliveries("w2", limit=10, lease_seconds=30) == []
    while True:
        sent.append(d.text)
        if len(sent) % 2:  # alternately: the chained claim, and a fresh one
            _, following = await store.finish_delivery(
                d.id, "w", external_id=None, claim_next=d, lease_seconds=30
            )
        else:
            await store.finish_delivery(d.id, "w", external_id=None)
            got = await store.claim_deliveries("w", limit=10, lease_seconds=30)
            following = got[0] if got else None
            assert len(got) <= 1
        if following is None:
            break
        d = following
    assert sent == ["r0", "r1", "r2", "r3", "r4"]


async def test_completing_a_turn_with_a_handoff_hands_the_conversation_over(
    store: Store,
) -> None:
    route = await make_route(store)
    await store.ingest(inbound("A", 0), route=route, response_mode="async", decide=bot_decides)
    await store.ingest(inbound("A", 1), route=route, response_mode="async", decide=bot_decides)
    [turn] = await store.claim_turns("w", limit=5, lease_seconds=30)
    done = await store.complete_turn(
        turn.id,
        "w",
        state="done",
        outcome="handoff",
        reply_text="Let me get a colleague",
        deliveries=[
            DeliverySpec("message", 5, text="Let me get a colleague"),
            DeliverySpec("handoff", 5),
        ],
        handoff=True,
    )
    assert done.ok
    conv = await store.find_conversation("chatwoot", "1:A")
    assert conv is not None and conv.owner == "human"
    # the next message's turn, queued behind, will not run for the bot
    assert await store.claim_turns("w", limit=5, lease_seconds=30) == []
    counts = await store.counts()
    assert counts["turns"].get("cancelled") == 1


async def test_every_write_to_leased_work_is_refused_once_another_process_holds_it(
    store: Store, clock: FakeClock
) -> None:
    """The fence (``store.leases``) on each write a worker makes to its leased work: a process
    whose lease ran out and was taken over writes nothing, and the new holder's work stands."""
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    [turn] = await store.claim_turns("late", limit=1, lease_seconds=1)
    await store.add_outbound(
        res.conversation_id, text="hi", author="agent", deliveries=[DeliverySpec("message", 5)]
    )
    [d] = await store.claim_deliveries("late", limit=1, lease_seconds=1)
    clock.advance(2)
    [turn2] = await store.claim_turns("now", limit=1, lease_seconds=30)
    [d2] = await store.claim_deliveries("now", limit=1, lease_seconds=30)
    assert (turn2.id, d2.id) == (turn.id, d.id)

    await store.renew_leases("late", 600, turn_ids=[turn.id], delivery_ids=[d.id])
    assert not await store.release_turn(turn.id, "late", delay=60)
    assert not await store.start_typing(turn.id, "late", turn.conversation_id)
    assert not (
        await store.complete_turn(
            turn.id, "late", state="done", outcome="no_reply", reply_text=None
        )
    ).ok
    assert not await store.retry_delivery(d.id, "late", next_attempt_at=clock.now(), error="x")
    assert not await store.fail_delivery(d.id, "late", error="x")
    assert await store.mark_sends_started([d.id], "late") == set()
    ok, _ = await store.finish_delivery(d.id, "late", external_id="late")
    assert not ok
    await store.release_leases("late")

    # "now" still holds both, as it claimed them: its lease, its writes
    clock.advance(29)  # "late" renewed nothing: "now"'s 30 s lease still runs
    assert await store.claim_turns("third", limit=1, lease_seconds=30) == []
    assert await store.claim_deliveries("third", limit=1, lease_seconds=30) == []
    assert await store.mark_sends_started([d.id], "now") == {d.id}
    ok, _ = await store.finish_delivery(d.id, "now", external_id="ext-1")
    assert ok
    assert await store.release_turn(turn.id, "now", delay=0)
    [turn3] = await store.claim_turns("third", limit=1, lease_seconds=30)
    assert turn3.id == turn.id
