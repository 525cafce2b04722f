"""The stored-history prefill writes what the bridge would have, and leaves a usable store."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from chatbridge.bench.prefill import prefill_store
from chatbridge.store import Store
from chatbridge.store import tables as t


async def test_prefill_stores_the_history_and_the_bridge_can_go_on(database_url: str) -> None:
    await prefill_store(database_url, 200, conversations=5)

    store = Store(database_url)
    try:
        counts = await store.counts()
        conversation = await store.find_conversation("chatwoot", "1:3")
        history = await store.list_messages(conversation.id, limit=500) if conversation else []
    finally:
        await store.close()
    assert counts == {"turns": {"done": 100}, "deliveries": {"done": 300}}
    # the benchmark's conversations (display ids 1..5) are among those with history
    assert conversation is not None and conversation.inbox_id == 1
    assert {m.direction for m in history} == {"in", "out"}

    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            assert (
                await conn.execute(select(func.count()).select_from(t.messages))
            ).scalar() == 200
            assert (
                await conn.execute(select(func.count()).select_from(t.conversations))
            ).scalar() == 1000
            # ids handed out after the prefill must not collide with prefilled rows
            turn_id = (
                await conn.execute(
                    t.turns.insert()
                    .values(
                        conversation_id=conversation.id,
                        agent_id="bench-agent",
                        state="pending",
                        attempts=0,
                        available_at=0.0,
                        response_mode="async",
                        message_ids=[],
                        created_at=0.0,
                    )
                    .returning(t.turns.c.id)
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert turn_id > 100
