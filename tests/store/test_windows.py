"""Debounce windows and in-flight rules in the store, on SQLite and PostgreSQL.

The window is a pending turn whose ``available_at`` lies ahead; these tests hold the store
to it: nothing claims a turn before its window closes, messages join it in order, the cap
holds, two processes ingesting one conversation at once still make one turn, and a
superseded turn's completion writes nothing — whenever the agent's answer arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest

from chatbridge.models import Attachment, InboundMessage
from chatbridge.pipeline.admission import decide_inbound
from chatbridge.policies import RoutePolicies
from chatbridge.store import Store
from chatbridge.store.records import DeliverySpec, IngestResult, Route
from chatbridge.testing.clock import FakeClock
from tests.store.test_store_contract import inbound, make_route


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with FakeClock().installed() as fake:
        yield fake


async def policy_route(store: Store, **policies: object) -> Route:
    route = await make_route(store)
    return replace(route, policies=RoutePolicies.model_validate(policies))


async def say(store: Store, route: Route, msg: InboundMessage) -> IngestResult:
    from chatbridge import clock

    return await store.ingest(
        msg,
        route=route,
        response_mode="async",
        decide=lambda conv: decide_inbound(route, conv, msg, now=clock.now(), max_attempts=5),
    )


async def claim(store: Store, owner: str = "w1") -> list[int]:
    return [t.id for t in await store.claim_turns(owner, limit=10, lease_seconds=30)]


async def test_a_window_collects_a_burst_until_it_closes(store: Store, clock: FakeClock) -> None:
    route = await policy_route(store, debounce_ms=2000, max_wait_ms=5000)
    results = []
    for n in range(3):
        results.append(await say(store, route, inbound("7", n)))
        clock.advance(1.5)  # each gap below the debounce
        assert await claim(store) == []  # the window is still open
    assert [r.merged for r in results] == [False, True, True]
    assert len({r.turn_id for r in results}) == 1
    clock.advance(0.6)  # 2 s after the last message
    [turn] = await store.claim_turns("w1", limit=10, lease_seconds=30)
    assert [m.text for m in turn.messages] == ["message 0", "message 1", "message 2"]


async def test_the_cap_closes_a_window_a_chatty_customer_keeps_open(
    store: Store, clock: FakeClock
) -> None:
    route = await policy_route(store, debounce_ms=2000, max_wait_ms=3000)
    first = await say(store, route, inbound("7", 0))
    clock.advance(1.9)
    await say(store, route, inbound("7", 1))
    clock.advance(1.2)  # 3.1 s after the first message: past the cap, though 1.2 s < 2 s
    assert await claim(store) == [first.turn_id]
    # the next message starts a window of its own, behind the leased turn
    later = await say(store, route, inbound("7", 2))
    assert later.turn_id != first.turn_id and not later.merged


async def test_an_attachment_closes_the_window_now(store: Store, clock: FakeClock) -> None:
    route = await policy_route(store, debounce_ms=60_000, max_wait_ms=60_000)
    first = await say(store, route, inbound("7", 0))
    photo = replace(
        inbound("7", 1), attachments=[Attachment("https://example.test/a.jpg", "image/jpeg")]
    )
    await say(store, route, photo)
    assert await claim(store) == [first.turn_id]


async def test_two_processes_ingesting_one_burst_make_one_turn(
    store: Store, database_url: str, clock: FakeClock
) -> None:
    """Two stores (two replicas' connections) write one conversation's burst at the same
    time: the conversation's row orders them, so all messages land in one turn."""
    route = await policy_route(store, debounce_ms=5000, max_wait_ms=30_000)
    other = Store(database_url)
    try:
        results = await asyncio.gather(
            *(say(store if n % 2 else other, route, inbound("9", n)) for n in range(12))
        )
    finally:
        await other.close()
    assert len({r.turn_id for r in results}) == 1, results
    assert sum(not r.merged for r in results) == 1
    clock.advance(6)
    [turn] = await store.claim_turns("w1", limit=10, lease_seconds=30)
    assert sorted(m.text for m in turn.messages) == sorted(f"message {n}" for n in range(12))


async def test_a_superseded_turns_answer_writes_nothing(store: Store, clock: FakeClock) -> None:
    route = await policy_route(store, in_flight="supersede")
    first = await say(store, route, inbound("5", 0))
    assert await claim(store) == [first.turn_id]
    assert first.turn_id is not None
    # the agent shows typing while it thinks
    assert await store.start_typing(first.turn_id, "w1", str(first.conversation_id))
    second = await say(store, route, inbound("5", 1))
    assert second.superseded_turn_id == first.turn_id
    # the agent answers the first turn after all: fenced out, nothing is written
    done = await store.complete_turn(
        first.turn_id,
        "w1",
        state="done",
        outcome="reply",
        reply_text="an answer to the first message only",
        deliveries=[DeliverySpec("message", 5, text="an answer to the first message only")],
    )
    assert not done.ok
    [turn] = await store.claim_turns("w2", limit=10, lease_seconds=30)
    assert turn.id == second.turn_id
    assert [m.text for m in turn.messages] == ["message 0", "message 1"]
    counts = await store.counts()
    assert counts["turns"] == {"cancelled": 1, "leased": 1}
    # the unsent typing indicator of the superseded turn was dropped, not left on
    assert counts["deliveries"] == {"skipped": 1}


async def test_a_turn_that_finished_first_keeps_its_reply(store: Store, clock: FakeClock) -> None:
    route = await policy_route(store, in_flight="supersede")
    first = await say(store, route, inbound("5", 0))
    assert await claim(store) == [first.turn_id] and first.turn_id is not None
    done = await store.complete_turn(
        first.turn_id,
        "w1",
        state="done",
        outcome="reply",
        reply_text="answer",
        deliveries=[DeliverySpec("message", 5, text="answer")],
    )
    assert done.ok
    second = await say(store, route, inbound("5", 1))
    assert second.superseded_turn_id is None
    [turn] = await store.claim_turns("w2", limit=10, lease_seconds=30)
    assert [m.text for m in turn.messages] == ["message 1"]


async def test_merge_next_holds_what_comes_while_a_turn_runs(
    store: Store, clock: FakeClock
) -> None:
    route = await policy_route(store, in_flight="merge_next")
    first = await say(store, route, inbound("3", 0))
    assert await claim(store) == [first.turn_id]
    later = [await say(store, route, inbound("3", n)) for n in (1, 2, 3)]
    assert len({r.turn_id for r in later}) == 1 and [r.merged for r in later] == [
        False,
        True,
        True,
    ]
    assert await claim(store, "w2") == []  # behind the running turn


async def test_a_window_survives_a_restart(database_url: str, clock: FakeClock) -> None:
    """The window is rows, not memory: a new process finds it and honours it."""
    store = Store(database_url)
    await store.migrate()
    route = await policy_route(store, debounce_ms=3000, max_wait_ms=10_000)
    for n in range(3):
        await say(store, route, inbound("8", n))
    await store.close()  # the process is gone
    again = Store(database_url)
    try:
        assert await claim(again) == []
        clock.advance(3.1)
        [turn] = await again.claim_turns("w9", limit=10, lease_seconds=30)
        assert [m.text for m in turn.messages] == [f"message {n}" for n in range(3)]
    finally:
        await again.close()
