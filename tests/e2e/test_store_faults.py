"""The workers through database faults and cut-off sends, in process, step by step.

The chaos suite (``tests/chaos``) shows the promise holds under load with real outages and
real crashes; these tests pin down each mechanism on its own, so a refactor that breaks one
fails here first: a result in hand is kept through an outage, a dead task's work is not
stranded, ``/ready`` reports the outage, and a cut-off send is not repeated once the channel
echoed it back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from chatbridge.models import ConversationRef, OutboundAction
from chatbridge.store import Store
from chatbridge.store import tables as t
from chatbridge.store.records import DeliverySpec
from tests.e2e.harness import FAST, running_stack, wait_until


def count_agent_calls(s: Any) -> list[int]:
    """Count the turns the bridge hands to agents (a one-element list, updated in place)."""
    real = s.bridge.hub.run_turn
    seen = [0]

    async def counting(request: Any) -> Any:
        seen[0] += 1
        return await real(request)

    s.bridge.hub.run_turn = counting
    return seen


class Outage:
    """Makes chosen methods of one ``Store`` fail as an unreachable database does.

    A stand-in for the server going away that a test can switch at an exact point;
    the chaos suite cuts a real PostgreSQL server instead.
    """

    def __init__(
        self, store: Store, *methods: str, only: Callable[..., bool] | None = None
    ) -> None:
        self.down = False
        self.failures = 0
        self.only = only  # fail only the calls (of ``methods``) whose arguments it accepts
        for name in methods:
            original = getattr(store, name)
            setattr(store, name, self._wrap(original))
        if not methods:  # every transaction: the whole store is away
            tx = store._tx

            def failing_tx() -> Any:
                if self.down:
                    self.failures += 1
                    raise OperationalError("BEGIN", {}, ConnectionRefusedError("server closed"))
                return tx()

            store._tx = failing_tx  # type: ignore[method-assign]

    def _wrap(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.down and (self.only is None or self.only(*args, **kwargs)):
                self.failures += 1
                raise OperationalError("SELECT 1", {}, ConnectionRefusedError("server closed"))
            return await fn(*args, **kwargs)

        return wrapped


async def test_an_answer_in_hand_survives_a_database_outage(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, **FAST) as s:
        asked = count_agent_calls(s)
        outage = Outage(s.bridge.store, "complete_turn")
        outage.down = True
        await s.say("are you there?")
        await wait_until(lambda: outage.failures >= 3, timeout=10)
        assert s.replies() == []
        outage.down = False
        assert await s.wait_replies(1) == ["Echo: are you there?"]
        counts = await s.idle()
        assert counts["turns"] == {"done": 1}
        assert asked == [1]  # the agent was not asked twice


async def test_a_finished_send_is_recorded_after_the_outage_and_never_repeated(
    sqlite_url: str,
) -> None:
    async with running_stack(sqlite_url, **FAST) as s:
        # Only the reply's record fails: a message's send returns Chatwoot's id, a typing
        # indicator's none. (Were typing_on's record held up too, the reply queued behind it
        # in the conversation would wait for the outage's end, whenever typing went out first.)
        outage = Outage(
            s.bridge.store,
            "finish_delivery",
            only=lambda *_, external_id=None, **__: external_id is not None,
        )
        outage.down = True
        await s.say("hello")
        # the reply's own send, and a few failed attempts to record it
        await wait_until(lambda: s.replies() and outage.failures >= 3, timeout=30)
        failures = outage.failures
        # one more failed attempt after the reply went out (the backoff grows to 5 s)
        await wait_until(lambda: outage.failures > failures, timeout=30)
        assert s.replies() == ["Echo: hello"]
        outage.down = False
        counts = await s.idle()
        assert counts["deliveries"].get("done", 0) >= 1
        # A repeat would go out before any later reply of the conversation (its deliveries
        # are sent in order): the next reply arriving right after the first proves none.
        await s.say("still there?")
        await s.wait_replies(2)
        assert s.replies() == ["Echo: hello", "Echo: still there?"]


async def test_a_turn_whose_task_died_is_taken_again_not_stranded(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, **{**FAST, "lease_seconds": 1.0}) as s:
        real = s.bridge.hub.run_turn
        calls = 0

        async def broken_once(request: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in the transport")
            return await real(request)

        s.bridge.hub.run_turn = broken_once  # type: ignore[method-assign]
        await s.say("first")
        await s.say("second")
        assert await s.wait_replies(2) == ["Echo: first", "Echo: second"]
        assert calls == 3


async def test_ready_reports_the_store_outage(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, **{**FAST, "lease_seconds": 0.6}) as s:
        assert (await s.http.get("/ready")).status_code == 200
        outage = Outage(s.bridge.store)
        outage.down = True

        async def not_ready() -> bool:
            r = await s.http.get("/ready")
            body = r.json()
            return r.status_code == 503 and body["reason"] == "store_unreachable"

        await wait_until(not_ready, timeout=10)
        outage.down = False

        async def ready() -> bool:
            r = await s.http.get("/ready")
            # ready again, and housekeeping measured the backlog since
            return r.status_code == 200 and bool(r.json()["backlog"])

        await wait_until(ready, timeout=10)
        body = (await s.http.get("/ready")).json()
        assert set(body["backlog"]) == {"turns", "deliveries"}
        metrics = (await s.http.get("/metrics")).text
        assert 'chatbridge_backlog_oldest_due_seconds{queue="turns"}' in metrics


@pytest.mark.parametrize("echoed", [True, False])
async def test_a_cut_off_send_waits_for_its_receipt(sqlite_url: str, echoed: bool) -> None:
    """The dead process's send reached Chatwoot. With the echo (the bot's own
    message_created carrying our source_id) the delivery is finished without a second send;
    without it, and with the conversation moved on so Chatwoot cannot show it either, the
    bridge waits ``receipt_wait_seconds`` and then sends again, counting it uncertain.

    With the echo the wait is a minute and the test gives the bridge half that: finishing at
    all proves the receipt ended it. Without, the wait is a second, and the resend comes no
    earlier than a second after the cut-off send began (the time the bridge counts from)."""
    receipt_wait = 60.0 if echoed else 1.0
    async with running_stack(sqlite_url, **{**FAST, "receipt_wait_seconds": receipt_wait}) as s:
        store: Store = s.bridge.store
        await s.say("hi")
        await s.wait_replies(1)
        await s.idle()
        # This process's delivery worker stays out of the way while the dead one's state is
        # set up (its claims find nothing); then it runs.
        loop = s.bridge._deliveries
        real_claim = loop._claim

        async def nothing(_limit: int) -> list[Any]:
            return []

        loop._claim = nothing
        conv = await store.find_conversation("chatwoot", "1:1")
        assert conv is not None
        done = await store.add_outbound(
            conv.id,
            text="cut off",
            author="agent",
            deliveries=[DeliverySpec("message", 5, text="cut off")],
        )
        [d] = await store.claim_deliveries("dead", limit=1, lease_seconds=30)
        assert d.id == done.delivery_ids[0]
        before_send = time.time()
        assert await store.mark_send_started(d.id, "dead")
        adapter = s.bridge.channels["chatwoot"]
        action = OutboundAction(
            kind="message",
            conversation=ConversationRef(
                id=conv.id, channel="chatwoot", channel_key="1:1", inbox_id=1, metadata={}
            ),
            idempotency_key=d.idempotency_key,
            text="cut off",
        )
        if echoed:
            await adapter.send(action)  # it reached Chatwoot; the echo comes to the bridge
            await s.mock.drain()
        else:
            s.mock.webhook_url = None  # the echo was lost (the bridge was down)
            await adapter.send(action)
            s.mock.webhook_url = f"{s.url}/webhook/chatwoot"
        # the customer wrote again: the conversation's latest message is no longer ours
        s.mock.build_event("message_created", _trigger(content="still there?"))
        await lapse_lease(store, d.id)  # the dead process's lease runs out (the fault itself)
        loop._claim = real_claim
        loop.wake()
        await s.idle(timeout=receipt_wait / 2 if echoed else 20)
        sent = [m for m in s.mock.received_messages if m["content"] == "cut off"]
        uncertain = s.bridge.metrics.delivery_uncertain.labels("chatwoot")._value.get()
        if echoed:
            assert len(sent) == 1 and uncertain == 0
        else:
            assert len(sent) == 2 and uncertain == 1
            assert time.time() - before_send >= receipt_wait  # it waited for a receipt first
        counts = await store.counts()
        assert counts["deliveries"].get("leased", 0) == 0


async def lapse_lease(store: Store, delivery_id: int) -> None:
    """Make the lease of ``delivery_id`` run out now (instead of waiting for it to)."""
    deliveries = t.deliveries
    async with store.engine.begin() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(lease_expires_at=deliveries.c.lease_expires_at - 3600)
        )


def _trigger(**kw: Any) -> Any:
    from chatbridge.testing.mock_chatwoot import TriggerRequest

    return TriggerRequest(conversation_id=1, inbox_id=1, **kw)
