"""The chaos harness itself: the count is right, the database cut really cuts, and the
customers deliver like Chatwoot (same delivery id on a retry; refused ones not counted)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chatbridge.testing.mock_agent import echo_text
from chatbridge.testing.servers import serve_app
from tests.chaos.harness import (
    Customers,
    DatabaseCut,
    Message,
    _pg_dsn,
    count_outcome,
    fresh_pg_database,
    strict_chatwoot,
)


def _sent(conv: int, n: int, *, refused: frozenset[int] = frozenset()) -> list[Message]:
    return [
        Message(conv, i, f"c{conv}-m{i}", acked_at=None if i in refused else float(i))
        for i in range(n)
    ]


def test_a_clean_run_counts_nothing_wrong() -> None:
    sent = _sent(1, 3) + _sent(2, 2)
    replies = [(1, "Echo: c1-m0"), (2, "Echo: c2-m0"), (1, "Echo: c1-m1"), (2, "Echo: c2-m1")]
    replies.append((1, "Echo: c1-m2"))
    out = count_outcome(sent, replies, answer=echo_text)
    assert out.ok and (out.acknowledged, out.refused, out.replies) == (5, 0, 5)
    assert "acknowledged 5, lost 0, duplicated 0, out of order 0" in out.summary("x")


def test_lost_duplicated_out_of_order_and_unexpected_are_counted() -> None:
    sent = _sent(1, 5)
    replies = [
        (1, "Echo: c1-m1"),  # before m0: one of the two is out of order
        (1, "Echo: c1-m0"),
        (1, "Echo: c1-m2"),
        (1, "Echo: c1-m2"),  # doubled
        (1, "Sorry, something went wrong"),  # answers nothing
        (2, "Echo: c1-m3"),  # in the wrong conversation: unexpected there, and m3 is lost
    ]
    out = count_outcome(sent, replies, answer=echo_text)
    assert out.lost == ["c1-m3", "c1-m4"]
    assert out.duplicated == ["c1-m2"]
    assert out.out_of_order in (["c1-m0"], ["c1-m1"])
    assert len(out.unexpected) == 2
    assert not out.ok


def test_refused_messages_do_not_count_but_their_doubles_do() -> None:
    sent = _sent(1, 3, refused=frozenset({1}))
    # m1 was never acknowledged: no reply is fine, a reply is fine, two replies are not
    out = count_outcome(sent, [(1, "Echo: c1-m0"), (1, "Echo: c1-m2")], answer=echo_text)
    assert out.ok and (out.acknowledged, out.refused) == (2, 1)
    doubled = [(1, "Echo: c1-m0"), (1, "Echo: c1-m1"), (1, "Echo: c1-m1"), (1, "Echo: c1-m2")]
    assert count_outcome(sent, doubled, answer=echo_text).duplicated == ["c1-m1"]
    # order is judged among the acknowledged ones only
    late = [(1, "Echo: c1-m0"), (1, "Echo: c1-m2"), (1, "Echo: c1-m1")]
    assert count_outcome(sent, late, answer=echo_text).ok


def test_out_of_order_counts_the_fewest_that_must_move() -> None:
    sent = _sent(1, 4)
    reversed_replies = [(1, f"Echo: c1-m{i}") for i in (3, 2, 1, 0)]
    assert len(count_outcome(sent, reversed_replies, answer=echo_text).out_of_order) == 3
    one_late = [(1, f"Echo: c1-m{i}") for i in (1, 2, 3, 0)]
    assert count_outcome(sent, one_late, answer=echo_text).out_of_order == ["c1-m0"]


@pytest.mark.timeout(60)
async def test_database_cut_refuses_connections_until_restored() -> None:
    async with fresh_pg_database("chatbridge_chaos_cut") as (name, _url):
        held = await asyncpg.connect(_pg_dsn(name), timeout=5)
        cut = DatabaseCut(name)
        try:
            await cut.cut()
            assert cut.terminated >= 1
            # the open connection was terminated (asyncpg may notice it in any of these ways,
            # an internal state error included when the termination lands mid-call)
            with pytest.raises(
                (
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    asyncpg.exceptions.InternalClientError,
                    OSError,
                )
            ):
                await held.fetchval("SELECT 1")
            with pytest.raises(asyncpg.PostgresError, match="not currently accepting"):
                await asyncpg.connect(_pg_dsn(name), timeout=5)
            await cut.restore()
            again = await asyncpg.connect(_pg_dsn(name), timeout=5)
            assert await again.fetchval("SELECT 1") == 1
            await again.close()
        finally:
            await cut.restore()
            held.terminate()


@pytest.mark.timeout(60)
async def test_customers_retry_with_the_same_delivery_and_count_refusals() -> None:
    """A target that refuses every first attempt (503) and always refuses conversation 2:
    conversation 1's messages are acknowledged on the second attempt with the same delivery
    id; conversation 2's are given up after 3 attempts and counted as refused."""
    seen: list[tuple[int, str]] = []
    target = FastAPI()

    @target.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        conv = int(body["conversation"]["id"])
        delivery = request.headers["X-Chatwoot-Delivery"]
        first = all(d != delivery for _, d in seen)
        seen.append((conv, delivery))
        if conv == 2 or first:
            return JSONResponse({"error": "store unavailable"}, status_code=503)
        return JSONResponse({"status": "accepted"})

    async with strict_chatwoot() as (mock, _), serve_app(target) as url:
        mock.webhook_url = f"{url}/hook"
        customers = Customers(mock, conversations=2, think=(0.05, 0.1), retry_pause=0.05)
        customers.start()
        await asyncio.sleep(1.0)  # the load's length: the scenario, not a synchronisation
        await customers.stop()
    by_conv = {c: [m for m in customers.messages if m.conversation == c] for c in (1, 2)}
    assert by_conv[1] and all(m.attempts == ["503", "200"] for m in by_conv[1])
    assert by_conv[2] and all(m.attempts == ["503"] * 3 for m in by_conv[2])
    assert customers.acknowledged == len(by_conv[1])
    for m in customers.messages:  # every retry carried the first attempt's delivery id
        assert m.delivery_id is not None
        assert [d for _, d in seen].count(m.delivery_id) == len(m.attempts)
