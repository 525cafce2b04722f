"""The workers (``TurnRunner``, ``DeliveryRunner``, the ``ClaimLoop`` they share) on a real
SQLite store, driven in burst mode on a fake clock (``tests/pipeline/burst_rig.py``).

Time only moves when a test says so: a retry "in 4 seconds" is due after
``clock.advance(4)``, a 15 s lease runs out after ``clock.advance(15.1)``, and nothing
here waits for real time to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from chatbridge.errors import AgentTimeout, PermanentDelivery, RetryableDelivery
from chatbridge.store import Store
from chatbridge.store.records import DeliverySpec
from chatbridge.testing.clock import FakeClock
from chatbridge.transports.base import AgentOutcome
from tests.pipeline.burst_rig import (
    FALLBACK,
    LEASE,
    MAX_ATTEMPTS,
    RECEIPT_WAIT,
    RETRY_BASE,
    RETRY_MAX,
    BurstBridge,
    FakeAgent,
    FakeChannel,
    burst_bridge,
    delivery,
    messages,
    queue_replies,
    renew_held_leases,
    say,
    turns,
)

Rig = tuple[BurstBridge, FakeAgent, FakeChannel]
WAIT = 10.0  # real seconds a test waits for an event before it fails (never reached when green)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with FakeClock().installed() as fake:
        yield fake


async def _migrate(path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{path}")
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite file, made once: each test starts from a copy (migrating
    a fresh file costs more than most of these tests)."""
    path = tmp_path_factory.mktemp("workers") / "template.db"
    with ThreadPoolExecutor(1) as pool:  # outside any test's event loop
        pool.submit(asyncio.run, _migrate(path)).result()
    return path


@pytest.fixture
def database_url(migrated_database: Path, tmp_path: Path) -> str:
    """SQLite only (the store contract runs both backends; these test the workers)."""
    path = tmp_path / "workers.db"
    shutil.copyfile(migrated_database, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def rig(database_url: str, clock: FakeClock) -> AsyncIterator[Rig]:
    async with burst_bridge(database_url, clock) as parts:
        yield parts


async def quiet_conversation(bridge: BurstBridge, agent: FakeAgent, key: str) -> str:
    """A conversation whose one turn is over and left nothing to send."""
    agent.script.append(AgentOutcome("no_reply"))
    conversation_id = await say(bridge, key, "hello")
    await bridge.run_until_idle()
    return conversation_id


async def cut_off_send(bridge: BurstBridge, clock: FakeClock, conversation_id: str) -> int:
    """A reply whose send a dead process began (marked started) and never finished; its
    lease has run out. Returns the delivery id."""
    [delivery_id] = await queue_replies(bridge.store, conversation_id, "the reply")
    [d] = await bridge.store.claim_deliveries("dead", limit=5, lease_seconds=LEASE)
    assert d.id == delivery_id
    assert await bridge.store.mark_send_started(d.id, "dead")
    clock.advance(LEASE + 1)
    return delivery_id


# ----------------------------------------------------------------------------- claiming


async def test_due_work_runs_and_work_not_yet_due_waits_for_the_clock(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, agent, channel = rig
    store = bridge.store
    await say(bridge, "A", "now")
    await say(bridge, "B", "later")
    a, b = await store.claim_turns("me", limit=5, lease_seconds=LEASE)
    # handed back: A at once, B in 30 s (as a turn given back with backoff is)
    assert await store.release_turn(a.id, "me")
    assert await store.release_turn(b.id, "me", delay=30)

    await bridge.run_until_idle()
    assert [r.frame["content"] for r in agent.requests] == ["now"]
    assert channel.texts() == ["Echo: now"]

    clock.advance(29.5)
    await bridge.run_until_idle()
    assert len(agent.requests) == 1  # B is not due yet

    clock.advance(1)
    await bridge.run_until_idle()
    assert [r.frame["content"] for r in agent.requests] == ["now", "later"]
    assert channel.texts() == ["Echo: now", "Echo: later"]
    assert [t.state for t in await turns(store)] == ["done", "done"]


# ------------------------------------------------------------------------------ leases


async def test_a_live_tasks_lease_is_renewed_and_a_dead_ones_runs_out(
    rig: Rig, clock: FakeClock
) -> None:
    """Housekeeping renews the lease of a turn a live task is running, so another process
    never takes it however long the agent takes; the lease of a turn no task holds any more
    is not renewed, runs out, and is claimed again."""
    bridge, agent, channel = rig
    store = bridge.store
    agent.hold = asyncio.Event()
    await say(bridge, "live", "take your time")
    burst = asyncio.create_task(bridge.run_until_idle())
    await asyncio.wait_for(agent.running.wait(), WAIT)
    [live] = await turns(store)
    dead_conversation = await say(bridge, "dead", "orphaned")
    # claimed by this process, whose task for it then died: nobody works on it
    [orphan] = await store.claim_turns("me", limit=5, lease_seconds=LEASE)
    assert orphan.conversation_id == dead_conversation

    started = clock.now()
    taken: list[int] = []
    while clock.now() - started < 2 * LEASE:  # two whole lease periods
        clock.advance(LEASE / 3)  # the housekeeping interval
        await renew_held_leases(bridge)
        taken += [t.id for t in await store.claim_turns("intruder", limit=5, lease_seconds=LEASE)]
    assert taken == [orphan.id]  # never the live one

    agent.hold.set()
    await asyncio.wait_for(burst, WAIT)
    assert len(agent.requests) == 1  # asked once
    assert channel.texts() == ["Echo: take your time"]
    states = {t.id: (t.state, t.lease_owner) for t in await turns(store)}
    assert states[live.id] == ("done", None)
    assert states[orphan.id] == ("leased", "intruder")


# ---------------------------------------------------------------------- turn failures


async def test_a_turn_whose_agent_call_raises_is_given_back_and_retried_later(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, agent, channel = rig
    agent.script = [RuntimeError("a transport bug")]
    await say(bridge, "A", "hello")
    await bridge.run_until_idle()

    [turn] = await turns(bridge.store)
    assert (turn.state, turn.lease_owner, turn.attempts) == ("pending", None, 1)
    assert clock.now() < turn.available_at <= clock.now() + RETRY_BASE  # backoff, attempt 1
    assert channel.sent == []

    await bridge.run_until_idle()
    assert len(agent.requests) == 1  # not before its time

    clock.advance(turn.available_at - clock.now() + 0.001)
    await bridge.run_until_idle()
    assert len(agent.requests) == 2
    [turn] = await turns(bridge.store)
    assert (turn.state, turn.outcome, turn.attempts) == ("done", "reply", 2)
    assert channel.texts() == ["Echo: hello"]


async def test_a_turn_that_fails_every_time_ends_with_the_fallback_and_frees_its_conversation(
    rig: Rig, clock: FakeClock
) -> None:
    """A turn whose run raises attempt after attempt (a poison answer, a bug) is not retried
    for ever, calling the agent each time and holding its conversation back: after its
    attempts it ends by the route's failure rule, and the next message is answered."""
    bridge, agent, channel = rig
    agent.script = [RuntimeError("a transport bug") for _ in range(MAX_ATTEMPTS)]
    conversation_id = await say(bridge, "A", "hello")
    await bridge.run_until_idle()
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(RETRY_MAX + 1)
        await bridge.run_until_idle()
    assert len(agent.requests) == MAX_ATTEMPTS

    [turn] = await turns(bridge.store)
    assert (turn.state, turn.outcome, turn.attempts) == ("failed", "fallback", MAX_ATTEMPTS)
    assert turn.last_error == f"gave up after {MAX_ATTEMPTS} attempts: internal_error"
    assert channel.texts() == [FALLBACK]

    assert await say(bridge, "A", "still there?") == conversation_id
    clock.advance(RETRY_MAX + 1)
    await bridge.run_until_idle()
    assert channel.texts() == [FALLBACK, "Echo: still there?"]
    assert len(agent.requests) == MAX_ATTEMPTS + 1


async def test_an_agent_timeout_is_a_failure_with_the_fallback_not_a_no_reply(
    rig: Rig, clock: FakeClock
) -> None:
    """What ``plan_outcome`` makes of a failure: the turn ends ``failed`` with the route's
    fallback sent to the customer (the turn itself is not retried)."""
    bridge, agent, channel = rig
    agent.script = [AgentTimeout("no answer before the deadline")]
    await say(bridge, "A", "hello?")
    await bridge.run_until_idle()

    [turn] = await turns(bridge.store)
    assert (turn.state, turn.outcome, turn.last_error) == ("failed", "fallback", "timeout")
    assert channel.texts() == [FALLBACK]
    assert bridge.breaker("agent1").failures == 1

    clock.advance(10 * RETRY_MAX)
    await bridge.run_until_idle()
    assert len(agent.requests) == 1
    assert channel.texts() == [FALLBACK]


# ------------------------------------------------------------------ delivery failures


async def test_retryable_failures_retry_on_the_backoff_schedule_then_dead_letter(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, _agent, channel = rig
    channel.failures = [RetryableDelivery("HTTP 503") for _ in range(MAX_ATTEMPTS)]
    await say(bridge, "A", "hi")
    await bridge.run_until_idle()
    [d] = await messages(bridge.store)

    due_times: list[float] = []
    for attempt in range(1, MAX_ATTEMPTS):
        row = await delivery(bridge.store, d.id)
        assert (row.state, row.attempts, row.last_error) == ("pending", attempt, "HTTP 503")
        assert row.send_started_at is None  # the channel answered: nothing uncertain
        delay = row.next_attempt_at - clock.now()
        assert 0 < delay <= min(RETRY_MAX, RETRY_BASE * 2 ** (attempt - 1))
        due_times.append(row.next_attempt_at)

        clock.advance(delay / 2)
        await bridge.run_until_idle()
        assert len(channel.calls) == attempt  # not before its time

        clock.advance(delay)
        await bridge.run_until_idle()
        assert len(channel.calls) == attempt + 1
    assert due_times == sorted(set(due_times))

    row = await delivery(bridge.store, d.id)
    assert (row.state, row.attempts) == ("dead", MAX_ATTEMPTS)
    assert row.last_error == f"gave up after {MAX_ATTEMPTS} attempts: HTTP 503"
    assert [dl.id for dl in await bridge.store.list_dead_letters()] == [d.id]
    assert channel.sent == []

    clock.advance(10 * RETRY_MAX)
    await bridge.run_until_idle()
    assert len(channel.calls) == MAX_ATTEMPTS  # dead is dead


async def test_a_permanent_failure_dead_letters_at_once(rig: Rig, clock: FakeClock) -> None:
    bridge, _agent, channel = rig
    channel.failures = [PermanentDelivery("HTTP 422: conversation not found")]
    await say(bridge, "A", "hi")
    await bridge.run_until_idle()

    [row] = await messages(bridge.store)
    assert (row.state, row.attempts) == ("dead", 1)
    assert row.last_error == "HTTP 422: conversation not found"
    assert [dl.id for dl in await bridge.store.list_dead_letters()] == [row.id]

    clock.advance(10 * RETRY_MAX)
    await bridge.run_until_idle()
    assert channel.calls == ["Echo: hi"] and channel.sent == []


async def test_a_failed_send_is_never_marked_done(rig: Rig, clock: FakeClock) -> None:
    """An adapter error of any kind leaves the delivery pending for a retry; only a send that
    returned is recorded done, with the channel's id."""
    bridge, _agent, channel = rig
    channel.failures = [RuntimeError("adapter bug")]
    await say(bridge, "A", "hi")
    await bridge.run_until_idle()

    [row] = await messages(bridge.store)
    assert (row.state, row.done_at, row.external_id) == ("pending", None, None)
    assert row.last_error == "RuntimeError: adapter bug"
    assert channel.sent == []

    clock.advance(row.next_attempt_at - clock.now() + 0.001)
    await bridge.run_until_idle()
    [row] = await messages(bridge.store)
    assert (row.state, row.attempts, row.external_id) == ("done", 2, "ext-1")
    assert channel.texts() == ["Echo: hi"]


async def test_a_delivery_that_fails_before_its_send_began_is_given_back(
    rig: Rig, clock: FakeClock
) -> None:
    """The runner fails before the channel is called (here: an attachment it cannot read):
    the delivery is pending again with backoff, neither lost nor left leased nor done."""
    bridge, agent, channel = rig
    conversation_id = await quiet_conversation(bridge, agent, "A")
    done = await bridge.store.add_outbound(
        conversation_id,
        text="see attached",
        author="agent",
        deliveries=[
            DeliverySpec(
                "message",
                MAX_ATTEMPTS,
                text="see attached",
                payload={"attachments": [{"href": "not a field we know"}]},
            )
        ],
    )
    [delivery_id] = done.delivery_ids
    await bridge.run_until_idle()

    row = await delivery(bridge.store, delivery_id)
    assert (row.state, row.lease_owner, row.attempts) == ("pending", None, 1)
    assert (row.last_error, row.send_started_at) == ("internal error", None)
    assert clock.now() < row.next_attempt_at <= clock.now() + RETRY_BASE
    assert channel.calls == []

    clock.advance(row.next_attempt_at - clock.now() + 0.001)
    await bridge.run_until_idle()
    row = await delivery(bridge.store, delivery_id)
    assert (row.state, row.attempts) == ("pending", 2)  # tried again
    assert channel.calls == []

    # the same failure every time: dead-lettered after its attempts, so the replies after it
    # in the conversation are not held back for ever
    [later] = await queue_replies(bridge.store, conversation_id, "and one more thing")
    for _ in range(MAX_ATTEMPTS - 2):
        clock.advance(RETRY_MAX + 1)
        await bridge.run_until_idle()
    row = await delivery(bridge.store, delivery_id)
    assert (row.state, row.attempts) == ("dead", MAX_ATTEMPTS)
    assert row.last_error == f"gave up after {MAX_ATTEMPTS} attempts: internal error"
    assert [dl.id for dl in await bridge.store.list_dead_letters()] == [delivery_id]
    assert (await delivery(bridge.store, later)).state == "done"
    assert channel.texts() == ["and one more thing"]


# ----------------------------------------------------------------------------- order


async def test_queued_deliveries_of_a_conversation_leave_oldest_first(
    rig: Rig, clock: FakeClock
) -> None:
    """Four replies queued in one conversation reach the channel in order, and the first
    one's retry holds the others back rather than letting them overtake it."""
    bridge, agent, channel = rig
    conversation_id = await quiet_conversation(bridge, agent, "A")
    await queue_replies(bridge.store, conversation_id, "r0", "r1", "r2", "r3")
    channel.failures = [RetryableDelivery("HTTP 503")]

    await bridge.run_until_idle()
    assert channel.calls == ["r0"]
    first = (await messages(bridge.store))[0]
    assert (first.text, first.state) == ("r0", "pending")

    clock.advance(first.next_attempt_at - clock.now() + 0.001)
    await bridge.run_until_idle()
    assert channel.texts() == ["r0", "r1", "r2", "r3"]
    assert [r.state for r in await messages(bridge.store)] == ["done"] * 4


# -------------------------------------------------------------------------- shutdown


async def test_shutdown_mid_send_leaves_the_send_uncertain_and_an_unstarted_one_pending(
    database_url: str, clock: FakeClock
) -> None:
    """The bridge stops while a send is in flight: that delivery's outcome is unknown, so
    the next process asks the channel before sending it again; a delivery claimed whose send
    had not begun is simply pending again, sent without a question. Neither waits for its
    lease to run out."""
    async with burst_bridge(database_url, clock) as (bridge, agent, channel):
        conv_a = await quiet_conversation(bridge, agent, "A")
        conv_b = await quiet_conversation(bridge, agent, "B")
        [in_flight] = await queue_replies(bridge.store, conv_a, "to A")
        channel.hold = asyncio.Event()  # the channel never answers this send
        burst = asyncio.create_task(bridge.run_until_idle())
        await asyncio.wait_for(channel.in_flight.wait(), WAIT)
        [unstarted] = await queue_replies(bridge.store, conv_b, "to B")
        [claimed] = await bridge.store.claim_deliveries("me", limit=5, lease_seconds=LEASE)
        assert claimed.id == unstarted
        burst.cancel()  # shutdown: the worker loop is cancelled first, then work drains
        with contextlib.suppress(asyncio.CancelledError):
            await burst
        await bridge.stop()
    assert channel.calls == ["to A"] and channel.sent == []

    async with burst_bridge(database_url, clock, instance_id="next") as (nxt, _, after):
        rows = {r.id: r for r in await messages(nxt.store)}
        assert rows[in_flight].state == "leased" and rows[in_flight].send_started_at is not None
        assert (rows[unstarted].state, rows[unstarted].send_started_at) == ("pending", None)
        after.already = True  # the cut-off request had reached the channel
        await nxt.run_until_idle()  # no clock advance: nothing waits for a lease to run out
        assert after.asked == [rows[in_flight].idempotency_key]
        assert after.texts() == ["to B"]
        assert [r.state for r in await messages(nxt.store)] == ["done", "done"]


# ------------------------------------------------------------------------- uncertain


async def test_an_uncertain_send_the_channel_has_is_finished_without_sending(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, agent, channel = rig
    conversation_id = await quiet_conversation(bridge, agent, "A")
    delivery_id = await cut_off_send(bridge, clock, conversation_id)
    channel.already = True
    await bridge.run_until_idle()

    row = await delivery(bridge.store, delivery_id)
    assert channel.asked == [row.idempotency_key]
    assert row.state == "done"
    assert channel.calls == []
    assert bridge.receipt_waits.empty()  # a sure answer: no waiting


async def test_an_uncertain_send_the_channel_cannot_tell_waits_for_a_receipt_then_resends(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, agent, channel = rig
    conversation_id = await quiet_conversation(bridge, agent, "A")
    delivery_id = await cut_off_send(bridge, clock, conversation_id)
    started_at = (await delivery(bridge.store, delivery_id)).send_started_at
    channel.already = None
    burst = asyncio.create_task(bridge.run_until_idle())

    key = await asyncio.wait_for(bridge.receipt_waits.get(), WAIT)
    assert channel.asked == [key]
    waited_until = started_at + RECEIPT_WAIT
    while clock.now() + 5 < waited_until:
        clock.advance(5)
        assert await asyncio.wait_for(bridge.receipt_waits.get(), WAIT) == key  # still waiting
        assert channel.calls == []

    clock.advance(waited_until - clock.now() + 0.001)
    await asyncio.wait_for(burst, WAIT)
    assert channel.asked == [key, key]  # once more at the end of the wait
    assert channel.texts() == ["the reply"]
    assert (await delivery(bridge.store, delivery_id)).state == "done"


async def test_a_receipt_during_the_wait_finishes_the_uncertain_send_without_sending(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, agent, channel = rig
    conversation_id = await quiet_conversation(bridge, agent, "A")
    delivery_id = await cut_off_send(bridge, clock, conversation_id)
    channel.already = None
    burst = asyncio.create_task(bridge.run_until_idle())

    key = await asyncio.wait_for(bridge.receipt_waits.get(), WAIT)
    assert await bridge.record_receipt(key, "ext-77")  # the channel's echo of our message
    await asyncio.wait_for(burst, WAIT)

    row = await delivery(bridge.store, delivery_id)
    assert (row.state, row.external_id) == ("done", "ext-77")
    assert channel.calls == []


async def test_a_runner_started_after_a_cut_off_sends_wait_still_waits_for_its_echo(
    database_url: str, clock: FakeClock
) -> None:
    """The bridge was down for longer than the whole receipt wait: counted from the cut-off
    send alone, the wait would be over before this process could hear the echo. It counts
    from this process's start instead, so the echo's next retry is still awaited."""
    async with burst_bridge(database_url, clock) as (bridge, agent, _):
        conversation_id = await quiet_conversation(bridge, agent, "A")
        delivery_id = await cut_off_send(bridge, clock, conversation_id)
        started_at = (await delivery(bridge.store, delivery_id)).send_started_at
    clock.advance(RECEIPT_WAIT + 5)  # down past the cut-off send's deadline
    assert clock.now() > started_at + RECEIPT_WAIT

    async with burst_bridge(database_url, clock, instance_id="next") as (nxt, _, channel):
        channel.already = None  # the channel cannot tell
        burst = asyncio.create_task(nxt.run_until_idle())
        key = await asyncio.wait_for(nxt.receipt_waits.get(), WAIT)
        clock.advance(RECEIPT_WAIT - 1)
        assert await asyncio.wait_for(nxt.receipt_waits.get(), WAIT) == key  # still waiting
        assert channel.calls == []
        assert await nxt.record_receipt(key, "ext-9")  # the echo, retried by the channel
        await asyncio.wait_for(burst, WAIT)

        row = await delivery(nxt.store, delivery_id)
        assert (row.state, row.external_id) == ("done", "ext-9")
        assert channel.calls == []


# ------------------------------------------------------------- sends that got no answer


async def _lost_answer(bridge: BurstBridge, channel: FakeChannel) -> Any:
    """A reply whose send landed at the channel and then timed out; returns its row."""
    channel.lost_answers = 1
    await say(bridge, "A", "hi")
    await bridge.run_until_idle()
    [row] = await messages(bridge.store)
    assert (row.state, row.last_error) == ("pending", "timed out")
    assert channel.texts() == ["Echo: hi"]  # it is there all the same
    return row


async def test_a_send_that_timed_out_is_not_sent_again_when_the_channel_has_it(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, _agent, channel = rig
    row = await _lost_answer(bridge, channel)
    assert row.uncertain and row.send_started_at == clock.now()  # counted from the cut-off
    channel.already = True

    clock.advance(row.next_attempt_at - clock.now() + 0.001)
    await bridge.run_until_idle()
    row = await delivery(bridge.store, row.id)
    assert (row.state, row.attempts) == ("done", 2)
    assert channel.asked == [row.idempotency_key]  # the receipt check ran before any send
    assert channel.calls == ["Echo: hi"]  # and nothing was sent twice


async def test_a_send_that_timed_out_waits_for_its_echo_before_sending_again(
    rig: Rig, clock: FakeClock
) -> None:
    bridge, _agent, channel = rig
    row = await _lost_answer(bridge, channel)
    channel.already = None  # the channel cannot tell: its echo decides

    clock.advance(row.next_attempt_at - clock.now() + 0.001)
    burst = asyncio.create_task(bridge.run_until_idle())
    key = await asyncio.wait_for(bridge.receipt_waits.get(), WAIT)
    assert channel.asked == [key] and channel.calls == ["Echo: hi"]
    assert await bridge.record_receipt(key, "ext-1")  # the echo of the send that timed out
    await asyncio.wait_for(burst, WAIT)

    row = await delivery(bridge.store, row.id)
    assert (row.state, row.external_id) == ("done", "ext-1")
    assert channel.calls == ["Echo: hi"]


async def test_a_send_that_timed_out_without_an_echo_is_sent_again_after_the_wait(
    rig: Rig, clock: FakeClock
) -> None:
    """No receipt within the wait (counted from when the send was cut off): sent again, as
    after a crash — the wait bounds how long a reply that never landed is held back."""
    bridge, _agent, channel = rig
    row = await _lost_answer(bridge, channel)
    cut_off = row.send_started_at
    channel.already = None

    clock.advance(row.next_attempt_at - clock.now() + 0.001)
    burst = asyncio.create_task(bridge.run_until_idle())
    key = await asyncio.wait_for(bridge.receipt_waits.get(), WAIT)
    clock.advance(cut_off + RECEIPT_WAIT - clock.now() - 1)
    assert await asyncio.wait_for(bridge.receipt_waits.get(), WAIT) == key  # still waiting
    assert channel.calls == ["Echo: hi"]
    clock.advance(1.001)
    await asyncio.wait_for(burst, WAIT)

    assert channel.asked == [key, key]
    assert channel.calls == ["Echo: hi", "Echo: hi"]
    assert (await delivery(bridge.store, row.id)).state == "done"
