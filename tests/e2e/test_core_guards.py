"""Protections a refactor of the core could drop without other tests noticing.

Each test here was written against a protection removed by hand: it fails without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from chatbridge import clock
from chatbridge.store import tables as t
from tests.e2e.harness import FAST, running_stack, wait_until


async def test_our_reply_echoed_from_a_user_token_does_not_silence_the_bot(
    sqlite_url: str,
) -> None:
    """Posted with a *user* token, our reply comes back from Chatwoot as an outgoing message
    of a "user" — what a human taking over looks like. Its source_id (our delivery's key)
    tells it apart: the bot keeps the conversation and answers the next message."""
    async with running_stack(sqlite_url, mock_options={"token_kind": "user"}, **FAST) as s:
        await s.say("first")
        assert await s.wait_replies(1) == ["Echo: first"]
        await s.mock.drain()  # the echo of our reply has reached the bridge
        echoes = [
            h
            for h in s.mock.webhook_history
            if (h["payload"].get("sender") or {}).get("type") == "user"
        ]
        assert echoes and all(
            h["response"] == {"status": "stored", "reason": "receipt"} for h in echoes
        )
        conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None and conv.owner == "bot"
        await s.say("second")
        assert await s.wait_replies(2) == ["Echo: first", "Echo: second"]


async def test_a_human_reply_from_a_user_still_hands_over(sqlite_url: str) -> None:
    """The other side of the guard above: an outgoing message of a user that is not one of
    ours (no source_id of ours) is a human taking over."""
    async with running_stack(sqlite_url, mock_options={"token_kind": "user"}, **FAST) as s:
        await s.say("first")
        await s.wait_replies(1)
        r = await s.say(
            "I'll take it from here",
            message_type="outgoing",
            sender_type="user",
            sender={"id": 5, "name": "Sam"},
        )
        assert r["response"]["reason"] == "owner:human"


async def test_a_turn_that_outlasts_its_lease_is_not_run_twice(sqlite_url: str) -> None:
    """The running bridge renews the lease of a turn its task is still working on; without
    that, a slow agent's turn is taken over when the lease runs out and run again."""
    # renewed every 0.5 s: a loaded machine may stall the loop a while without losing it
    settings: dict[str, Any] = {**FAST, "lease_seconds": 1.5}
    async with running_stack(sqlite_url, timeout_seconds=60.0, **settings) as s:
        real = s.bridge.hub.run_turn
        asked: list[str] = []
        answer = asyncio.Event()

        async def slow(request: Any) -> Any:
            asked.append(request.turn_key)
            await answer.wait()  # the agent works until the test has seen enough
            return await real(request)

        s.bridge.hub.run_turn = slow
        await s.say("take your time")
        await wait_until(lambda: asked, timeout=10)  # the bridge's worker has it
        turns = t.turns
        async with s.bridge.store.engine.connect() as conn:
            query = select(turns.c.lease_expires_at).where(turns.c.state == "leased")
            first_expiry = (await conn.execute(query)).scalar_one()
        # While the agent works, another process looking for work — a second replica — must
        # find none: the turn's lease is kept alive. It looks until two lease periods past
        # the first lease's end, when an unrenewed lease would have been free for long.
        intruder_got: list[int] = []

        async def outlived() -> bool:
            taken = await s.bridge.store.claim_turns("intruder", limit=5, lease_seconds=30)
            intruder_got.extend(turn.id for turn in taken)
            return bool(intruder_got) or clock.now() > first_expiry + 2 * 1.5

        await wait_until(outlived, timeout=30)
        assert intruder_got == []
        answer.set()
        assert await s.wait_replies(1) == ["Echo: take your time"]
        await s.idle()
        assert asked == [asked[0]]  # asked once
        counts = await s.bridge.store.counts()
        assert counts["turns"] == {"done": 1}


async def test_an_agent_timeout_is_a_failure_not_a_silent_no_reply(sqlite_url: str) -> None:
    """A turn whose agent timed out gets the route's fallback and is marked failed; it is
    not taken for "the agent chose not to answer"."""
    from chatbridge.errors import AgentTimeout

    async with running_stack(sqlite_url, mapping={"fallback_text": "Back soon!"}, **FAST) as s:

        async def times_out(request: Any) -> Any:
            raise AgentTimeout("no answer before the deadline")

        s.bridge.hub.run_turn = times_out
        await s.say("hello?")
        assert await s.wait_replies(1) == ["Back soon!"]
        counts = await s.idle()
        assert counts["turns"] == {"failed": 1}
