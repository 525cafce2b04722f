"""A send that got no answer stays uncertain through its retry, on SQLite and on PostgreSQL.

The delivery runner gives such a delivery back with ``retry_delivery(outcome_unknown=True)``
(``test_workers.py`` drives the runner); here the store's side: every way the delivery is
leased again — a claim, the lease of a conversation's next delivery after a finished one,
the replay of a dead letter — hands it out as ``uncertain``, with the cut-off time as its
``send_started_at``, and a known failure clears both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatbridge.store import Store
from chatbridge.store.records import ClaimedDelivery, DeliverySpec
from chatbridge.testing.clock import FakeClock
from tests.store.test_store_contract import bot_decides, inbound, make_route


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with FakeClock().installed() as fake:
        yield fake


async def _replies(store: Store, *texts: str) -> list[int]:
    """Replies queued in one conversation; returns their delivery ids."""
    route = await make_route(store)
    res = await store.ingest(
        inbound("A", 0), route=route, response_mode="async", decide=bot_decides
    )
    assert res.conversation_id
    ids: list[int] = []
    for text in texts:
        done = await store.add_outbound(
            res.conversation_id,
            text=text,
            author="agent",
            deliveries=[DeliverySpec("message", 5, text=text)],
        )
        ids += done.delivery_ids
    return ids


async def _send_that_timed_out(store: Store, clock: FakeClock, owner: str = "w") -> ClaimedDelivery:
    """Claim the due delivery, mark its send, and let it time out 10 s later."""
    [d] = await store.claim_deliveries(owner, limit=1, lease_seconds=30)
    assert await store.mark_send_started(d.id, owner)
    clock.advance(10)
    assert await store.retry_delivery(
        d.id, owner, next_attempt_at=clock.now(), error="timed out", outcome_unknown=True
    )
    return d


async def test_a_retry_after_no_answer_is_claimed_uncertain_from_the_cut_off(
    store: Store, clock: FakeClock
) -> None:
    [delivery_id] = await _replies(store, "one")
    d = await _send_that_timed_out(store, clock)
    assert d.id == delivery_id and not d.uncertain
    cut_off = clock.now()

    [again] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert again.id == delivery_id and again.uncertain
    assert again.send_started_at == cut_off  # the receipt wait counts from the timeout

    # the next attempt got an answer (an error): its outcome is known, nothing is uncertain
    assert await store.retry_delivery(again.id, "w", next_attempt_at=clock.now(), error="503")
    [third] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert not third.uncertain and third.send_started_at is None


async def test_a_dead_letter_whose_last_send_got_no_answer_is_replayed_uncertain(
    store: Store, clock: FakeClock
) -> None:
    unknown, known = await _replies(store, "lost", "refused")
    [d] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert await store.mark_send_started(d.id, "w")
    assert await store.fail_delivery(d.id, "w", error="gave up", outcome_unknown=True)
    [k] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert k.id == known
    assert await store.mark_send_started(k.id, "w")
    assert await store.fail_delivery(k.id, "w", error="HTTP 404")  # an answer: known

    assert await store.replay_dead_letter(unknown)
    [replayed] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert replayed.id == unknown and replayed.uncertain
    await store.finish_delivery(replayed.id, "w", external_id="1")
    assert await store.replay_dead_letter(known)
    [replayed] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert replayed.id == known and not replayed.uncertain


async def test_the_next_delivery_leased_after_a_finished_one_stays_uncertain(
    store: Store, clock: FakeClock
) -> None:
    """The conversation's first reply was dead-lettered, the second timed out; the first is
    replayed and sent, and the second, leased straight after it, is still uncertain."""
    first, second = await _replies(store, "first", "second")
    [d] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert d.id == first
    assert await store.fail_delivery(first, "w", error="HTTP 404")
    timed_out = await _send_that_timed_out(store, clock)
    assert timed_out.id == second
    assert await store.replay_dead_letter(first)

    [replayed] = await store.claim_deliveries("w", limit=1, lease_seconds=30)
    assert replayed.id == first
    finished, following = await store.finish_delivery(
        first, "w", external_id="1", claim_next=replayed, lease_seconds=30
    )
    assert finished and following is not None
    assert following.id == second and following.uncertain
