"""Group commit: a batch of writes must leave exactly what one transaction each would leave.

Every test runs on SQLite and PostgreSQL (see conftest). Each submits the same work twice:
all at once to one store (the group commit writes it in batches; the test checks that it
did) and one call at a time to a second store, then compares what both hold. PostgreSQL
writes a batch set-wise (a statement per step for all items), so this is where a difference
between the two paths would show.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import text

from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.store import Store
from chatbridge.store.records import (
    ConversationRecord,
    DeliverySpec,
    IngestResult,
    Route,
    TurnDecision,
)


@pytest.fixture
async def twin(store: Store, database_url: str, tmp_path: Any) -> AsyncIterator[Store]:
    """A second, empty store of the same kind: the one-at-a-time reference."""
    name = None
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'twin.db'}"
    else:
        import asyncpg

        base = database_url.rsplit("/", 1)[0]
        name = f"chatbridge_twin_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(
            base.replace("postgresql+asyncpg", "postgresql") + "/postgres"
        )
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = f"{base}/{name}"
    other = Store(url)
    await other.migrate()
    try:
        yield other
    finally:
        await other.close()
        if name is not None:
            admin = await asyncpg.connect(
                base.replace("postgresql+asyncpg", "postgresql") + "/postgres"
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


async def make_route(store: Store, *, agent_bot_mode: bool = False) -> Route:
    await store.upsert_agent(
        "a1", transport="ws-dial-out", url="ws://127.0.0.1:1", timeout_seconds=5
    )
    route, _ = await store.save_route(
        channel="chatwoot",
        inbox_id=1,
        agent_id="a1",
        reply_mode="async",
        timeout_seconds=5,
        fallback_text=None,
        on_failure="fallback",
        agent_bot_mode=agent_bot_mode,
    )
    return route


def decide(conv: ConversationRecord) -> TurnDecision:
    """Agent-bot style: the conversation's status says who answers."""
    owner = conv.owner
    if conv.external_status is not None:
        owner = "bot" if conv.external_status == "pending" else "human"
    if owner == "human":
        return TurnDecision(create_turn=False, owner="human", reason="not_pending")
    return TurnDecision(create_turn=True, owner="bot")


def message(
    conv: str,
    n: int,
    *,
    delivery: str | None = None,
    status: str | None = None,
    contact: str | None = None,
    name: str | None = None,
    inbox_id: int = 1,
    external: str | None = None,
) -> InboundMessage:
    return InboundMessage(
        channel="chatwoot",
        inbox_id=inbox_id,
        channel_key=f"1:{conv}",
        text=f"{conv} says {n}",
        external_message_id=external or f"{conv}-{n}",
        delivery_id=delivery,
        external_status=status,
        contact=ContactInfo(external_id=contact, name=name) if contact else None,
    )


# A morning's worth of arrivals, in order. Same conversation several times (rounds), one
# contact in two conversations, a redelivery, a message repeated under a new delivery id,
# and status changes that hand a conversation to a human and back.
ARRIVALS = [
    message("a", 1, delivery="d1", contact="ana", name="Ana"),
    message("b", 1, delivery="d2", contact="shared", name=None),
    message("a", 2, delivery="d3", contact="ana", name="Ana M."),
    message("c", 1, delivery="d4", contact="shared", name="Sam"),
    message("a", 1, delivery="d1", contact="ana", name="Ana"),  # redelivered
    message("b", 2, delivery="d5", status="open"),  # a human picked it up
    message("b", 3, delivery="d6"),
    message("c", 2, delivery="d7", external="c-1"),  # the same message, new delivery id
    message("b", 4, delivery="d8", status="pending"),  # back to the bot
    message("a", 3),
    message("d", 1, delivery="d9", status="resolved"),
]


async def snapshot(store: Store) -> dict[str, Any]:
    """What the store holds, without the ids that differ between two stores."""
    async with store.engine.connect() as conn:

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]

        return {
            "conversations": await rows(
                "SELECT c.channel_key, c.owner, c.external_status, p.external_id"
                " FROM conversations c LEFT JOIN contacts p ON p.id = c.contact_id"
                " ORDER BY c.channel_key"
            ),
            "contacts": await rows(
                "SELECT external_id, name, email, phone FROM contacts ORDER BY external_id"
            ),
            "messages": await rows(
                "SELECT c.channel_key, m.direction, m.author, m.text, m.external_id,"
                " m.dedupe_key, m.turn_id IS NOT NULL, m.content_type"
                " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                " ORDER BY c.channel_key, m.created_at, m.text"
            ),
            "turns": await rows(
                "SELECT c.channel_key, t.state, t.outcome, t.kind, t.response_mode,"
                " t.reply_message_id IS NOT NULL, t.last_error"
                " FROM turns t JOIN conversations c ON c.id = t.conversation_id"
                " ORDER BY c.channel_key, t.id"
            ),
            "deliveries": await rows(
                "SELECT c.channel_key, d.kind, d.state, d.text, d.message_id IS NOT NULL,"
                " d.external_id, d.attempts FROM deliveries d"
                " JOIN conversations c ON c.id = d.conversation_id"
                " ORDER BY c.channel_key, d.id"
            ),
            "receipts": await rows("SELECT key FROM inbound_receipts ORDER BY key"),
        }


def outcome(r: IngestResult) -> tuple[Any, ...]:
    return (r.status, r.reason, r.turn_id is not None)


async def ingest_all(store: Store, route: Route, *, together: bool) -> list[tuple[Any, ...]]:
    def one(m: InboundMessage) -> Any:
        return store.ingest(m, route=route, response_mode="async", decide=decide)

    if together:
        results = await asyncio.gather(*(one(m) for m in ARRIVALS))
    else:
        results = [await one(m) for m in ARRIVALS]
    return [outcome(r) for r in results]


async def test_a_batch_of_arrivals_is_stored_as_one_transaction_each_would(
    store: Store, twin: Store
) -> None:
    batched = await ingest_all(store, await make_route(store, agent_bot_mode=True), together=True)
    alone = await ingest_all(twin, await make_route(twin, agent_bot_mode=True), together=False)
    assert store._ingests.items > store._ingests.batches  # it was written in batches
    assert batched == alone
    assert alone[4] == ("duplicate", "delivery_id", False)
    assert alone[7] == ("duplicate", "message_id", False)
    assert alone[6] == ("stored", "not_pending", False)
    assert alone[8] == ("accepted", None, True)
    assert await snapshot(store) == await snapshot(twin)


async def test_a_batch_without_duplicates_is_stored_as_one_transaction_each_would(
    store: Store, twin: Store
) -> None:
    """No message repeated under a new delivery id: the batch is not written again one by
    one, so this is the set-wise path on PostgreSQL from start to finish."""
    global ARRIVALS
    saved = ARRIVALS
    ARRIVALS = [m for m in saved if m.delivery_id != "d7"]
    try:
        batched = await ingest_all(store, await make_route(store), together=True)
        alone = await ingest_all(twin, await make_route(twin), together=False)
    finally:
        ARRIVALS = saved
    assert store._ingests.items > store._ingests.batches
    assert batched == alone
    assert await snapshot(store) == await snapshot(twin)


async def test_a_message_the_store_refuses_fails_alone(store: Store) -> None:
    route = await make_route(store)
    good = [message(f"g{i}", 1, delivery=f"g{i}") for i in range(5)]
    bad = message("bad", 1, delivery="bad", inbox_id=2**70)  # no database holds that number
    results = await asyncio.gather(
        *(
            store.ingest(m, route=route, response_mode="async", decide=decide)
            for m in [*good[:2], bad, *good[2:]]
        ),
        return_exceptions=True,
    )
    assert isinstance(results[2], Exception)
    assert [r.status for r in results if isinstance(r, IngestResult)] == ["accepted"] * 5
    snap = await snapshot(store)
    assert [c[0] for c in snap["conversations"]] == [f"1:g{i}" for i in range(5)]
    assert ("chatwoot:bad",) not in snap["receipts"]
    assert len(snap["turns"]) == 5


async def _claimed_turns(store: Store, route: Route, n: int) -> list[Any]:
    for i in range(n):
        await store.ingest(
            message(f"t{i}", 1, contact=f"p{i}"),
            route=route,
            response_mode="async",
            decide=decide,
        )
    turns = await store.claim_turns("me", limit=n, lease_seconds=60)
    assert len(turns) == n
    for turn in turns[:-1]:  # the last turn's agent answers before typing shows
        assert await store.start_typing(turn.id, "me", turn.conversation_id)
    return turns


def _plans(turns: list[Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """Outcomes for claimed turns: a reply, a reply after a human took over, a handoff, a
    turn whose lease is not ours any more, a silent turn, a turn that never showed typing."""
    msg = DeliverySpec("message", 5, text="hi")
    off = DeliverySpec("typing_off", 3)
    reply = {"state": "done", "outcome": "replied", "reply_text": "hi", "deliveries": [msg, off]}
    return [
        (turns[0].id, "me", reply),
        (turns[1].id, "me", {**reply, "reply_attachments": [{"url": "http://x/1.png"}]}),
        (turns[2].id, "me", {**reply, "handoff": True, "reply_meta": {"k": 1}}),
        (turns[3].id, "someone-else", reply),
        (turns[4].id, "me", {"state": "done", "outcome": "no_reply", "reply_text": None}),
        (
            turns[5].id,
            "me",
            {
                "state": "failed",
                "outcome": "fallback",
                "reply_text": "sorry",
                "deliveries": [msg, off],
                "error": "agent_timeout",
                "typing": False,  # it answered before typing showed: no typing_off
            },
        ),
    ]


async def _complete(store: Store, *, together: bool) -> list[tuple[Any, ...]]:
    route = await make_route(store)
    turns = await _claimed_turns(store, route, 6)
    # conversation t1 was taken by a human while its turn ran: the reply becomes a note
    await store.apply_owner_signal(
        channel="chatwoot", channel_key="1:t1", inbox_id=1, decide_owner=lambda _c: "human"
    )
    # the typing_on of t2 went out already: its typing_off must follow the reply (the
    # other typing_on rows stay leased mid-send, so they are not dropped either)
    typing = await store.claim_deliveries("me", limit=10, lease_seconds=60)
    [t2] = [d for d in typing if d.conversation_id == turns[2].conversation_id]
    await store.finish_delivery(t2.id, "me", external_id=None)

    def one(turn_id: int, owner: str, kw: dict[str, Any]) -> Any:
        return store.complete_turn(turn_id, owner, **kw)

    plans = _plans(turns)
    if together:
        done = await asyncio.gather(*(one(*p) for p in plans))
    else:
        done = [await one(*p) for p in plans]
    return [(d.ok, d.delivered, d.reply_message_id is not None, len(d.delivery_ids)) for d in done]


async def test_a_batch_of_turn_outcomes_is_written_as_one_transaction_each_would(
    store: Store, twin: Store
) -> None:
    batched = await _complete(store, together=True)
    alone = await _complete(twin, together=False)
    assert store._completions.items > store._completions.batches
    assert batched == alone
    assert alone[3] == (False, False, False, 0)  # fenced: not our lease
    assert alone[1][:2] == (True, False)  # a note: nothing delivered
    assert await snapshot(store) == await snapshot(twin)


async def _finish(store: Store, *, together: bool) -> list[tuple[Any, ...]]:
    route = await make_route(store)
    ids = []
    for i in range(4):
        result = await store.ingest(
            message(f"f{i}", 1), route=route, response_mode="async", decide=decide
        )
        assert result.conversation_id is not None
        for n in range(2):
            out = await store.add_outbound(
                result.conversation_id,
                text=f"reply {n}",
                author="agent",
                deliveries=[DeliverySpec("message", 5, text=f"reply {n}")],
            )
            ids += out.delivery_ids
    first = await store.claim_deliveries("me", limit=10, lease_seconds=60)
    assert len(first) == 4
    owners = ["me", "me", "thief", "me"]
    calls: list[Callable[[], Any]] = [
        (
            lambda d=d, o=o, n=n: store.finish_delivery(
                d.id, o, external_id=f"x-{n}" if n != 1 else None, claim_next=d, lease_seconds=60
            )
        )
        for n, (d, o) in enumerate(zip(first, owners, strict=True))
    ]
    if together:
        done = await asyncio.gather(*(c() for c in calls))
    else:
        done = [await c() for c in calls]
    return [(ok, nxt.text if nxt else None, nxt.attempts if nxt else None) for ok, nxt in done]


async def test_a_batch_of_finished_sends_is_written_as_one_transaction_each_would(
    store: Store, twin: Store
) -> None:
    batched = await _finish(store, together=True)
    alone = await _finish(twin, together=False)
    assert store._finishes.items > store._finishes.batches
    assert batched == alone
    assert alone == [
        (True, "reply 1", 1),
        (True, "reply 1", 1),
        (False, None, None),  # not our lease: neither finished nor followed
        (True, "reply 1", 1),
    ]
    assert await snapshot(store) == await snapshot(twin)


async def test_a_media_message_keeps_its_place_among_its_conversations_messages(
    store: Store,
) -> None:
    """A message with media to download is written on its own (its download job goes in its
    transaction); the text after it in the same commit must not overtake it: the turns are
    queued in the order the customer wrote."""
    from chatbridge.store.media import MEDIA_KEY

    route = await make_route(store)
    first = message("m", 1)
    first.metadata[MEDIA_KEY] = {
        "hold": 5.0,
        "items": [
            {
                "kind": "image",
                "mime": "image/png",
                "name": "p.png",
                "provider": "waha",
                "source": {"url": "http://127.0.0.1:1/p.png", "session": "default"},
            }
        ],
    }
    arrivals = [first, message("m", 2), message("other", 1), message("m", 3)]
    results = await asyncio.gather(
        *(store.ingest(m, route=route, response_mode="async", decide=decide) for m in arrivals)
    )
    assert store._ingests.items > store._ingests.batches  # written together
    turn_ids = [r.turn_id for r in results]
    assert all(turn_ids)
    mine = [turn_ids[0], turn_ids[1], turn_ids[3]]
    assert mine == sorted(mine), "a later message of the conversation got an earlier turn"
