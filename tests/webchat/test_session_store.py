"""The store's side of session expiry, on SQLite and PostgreSQL: idle sessions are marked and
returned once (by one of two replicas sweeping at once), a marked session is expired whatever
its last activity, a lazily replaced one is reported, and metadata changes on resume."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import update

from chatbridge.store import Store
from chatbridge.store import tables as t

TIMEOUT = 60.0


async def idle(store: Store, session_id: str, seconds: float) -> None:
    ws = t.webchat_sessions
    async with store._tx() as conn:
        await conn.execute(
            update(ws).where(ws.c.id == session_id).values(last_active=ws.c.last_active - seconds)
        )


async def test_idle_sessions_are_marked_once(store: Any) -> None:
    for sid in ("a", "b", "c"):
        await store.open_session(sid, inbox_id=1, timeout=TIMEOUT)
    await idle(store, "a", TIMEOUT + 5)
    await idle(store, "b", TIMEOUT + 1)
    expired = await store.expire_sessions(TIMEOUT)
    assert [s.id for s in expired] == ["a", "b"]  # oldest first; "c" is active
    assert all(s.expired_at is not None for s in expired)
    assert await store.expire_sessions(TIMEOUT) == []
    assert await store.get_session("a", timeout=TIMEOUT) is None
    assert await store.get_session("c", timeout=TIMEOUT) is not None


async def test_two_replicas_sweeping_at_once_announce_each_session_once(
    store: Any, database_url: str
) -> None:
    other = Store(database_url)
    try:
        ids = [f"s{i}" for i in range(40)]
        for sid in ids:
            await store.open_session(sid, inbox_id=1, timeout=TIMEOUT)
        ws = t.webchat_sessions
        async with store._tx() as conn:
            await conn.execute(update(ws).values(last_active=ws.c.last_active - TIMEOUT - 1))
        first, second = await asyncio.gather(
            store.expire_sessions(TIMEOUT, limit=25), other.expire_sessions(TIMEOUT, limit=25)
        )
        rest = await store.expire_sessions(TIMEOUT)
        got = [s.id for s in first + second + rest]
        assert sorted(got) == sorted(ids)  # every one, none twice
    finally:
        await other.close()


async def test_a_marked_session_stays_expired_and_is_replaced_without_a_second_report(
    store: Any,
) -> None:
    first, _ = await store.open_session("v", inbox_id=1, timeout=TIMEOUT)
    await idle(store, "v", TIMEOUT + 1)
    [marked] = await store.expire_sessions(TIMEOUT)
    # a touch after the mark (a request that raced the sweep) does not revive it
    assert await store.get_session("v", timeout=TIMEOUT, touch=True) is None
    again, created = await store.open_session("v", inbox_id=1, timeout=TIMEOUT)
    assert created and again.uid != first.uid
    assert again.replaced is None  # announced by the sweep already
    assert marked.uid == first.uid


async def test_an_idle_session_replaced_before_the_sweep_is_reported_by_the_open(
    store: Any,
) -> None:
    first, _ = await store.open_session("v", inbox_id=1, timeout=TIMEOUT, meta={"page": "/"})
    await idle(store, "v", TIMEOUT + 1)
    again, created = await store.open_session("v", inbox_id=1, timeout=TIMEOUT)
    assert created and again.replaced is not None
    assert (again.replaced.uid, again.replaced.meta) == (first.uid, {"page": "/"})
    assert await store.expire_sessions(TIMEOUT) == []  # the old row is gone: nothing twice


async def test_a_resume_with_new_metadata_stores_it(store: Any) -> None:
    await store.open_session("v", inbox_id=1, timeout=TIMEOUT, meta={"page": "/"})
    same, _ = await store.open_session("v", inbox_id=1, timeout=TIMEOUT, meta={"page": "/"})
    blank, _ = await store.open_session("v", inbox_id=1, timeout=TIMEOUT)
    assert not same.meta_changed and not blank.meta_changed
    named, created = await store.open_session(
        "v", inbox_id=1, timeout=TIMEOUT, meta={"name": "Ann"}
    )
    assert not created and named.meta_changed and named.meta == {"name": "Ann"}
    stored = await store.get_session("v")
    assert stored is not None and stored.meta == {"name": "Ann"}


async def test_the_cleanup_keeps_sessions_not_yet_announced(store: Any) -> None:
    for sid in ("told", "untold"):
        await store.open_session(sid, inbox_id=1, timeout=TIMEOUT)
    await idle(store, "told", TIMEOUT + 1)
    await store.expire_sessions(TIMEOUT)
    await idle(store, "untold", TIMEOUT + 1)
    assert await store.delete_expired_sessions(TIMEOUT, announced_only=True) == 1
    assert await store.get_session("told") is None
    assert await store.get_session("untold") is not None
