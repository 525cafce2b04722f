"""The widget's live socket and its hub subscription: what it forwards without the store, and
the subscriber it waits on (see ``chatbridge.api.webchat._LiveSocket``)."""

from __future__ import annotations

import asyncio
from typing import Any

from chatbridge.channels.webchat_live import MAX_PENDING, LiveHub
from tests.api.test_webchat_native import idle_for, live_socket, new_session
from tests.e2e.harness import running_stack, wait_until


async def test_a_streamed_chunk_does_not_wait_behind_a_history_read(sqlite_url: str) -> None:
    """News makes the socket read the history, and that read may wait its turn on the store
    behind other work. A chunk published meanwhile goes out at once."""
    async with running_stack(sqlite_url, webchat=True, delay=0) as s:
        session = await new_session(s)
        uid = session["uid"]
        async with live_socket(s, session["session_id"]) as c:
            store = s.bridge.store
            read_history = store.webchat_history
            reading, release = asyncio.Event(), asyncio.Event()

            async def held_history(*args: Any, **kwargs: Any) -> Any:
                reading.set()
                await release.wait()  # the store is busy with others' work
                return await read_history(*args, **kwargs)

            store.webchat_history = held_history  # type: ignore[method-assign]
            try:
                s.bridge.webchat_live.news(uid)
                await reading.wait()
                chunk = {"type": "agent_streaming", "turn_id": "t_1", "stream_index": 0}
                s.bridge.webchat_live.publish(uid, {**chunk, "content": "Hel"})
                s.bridge.webchat_live.publish(uid, {"type": "typing", "on": True})
                await wait_until(lambda: c.of("agent_streaming") and c.of("typing"))
                assert not release.is_set()
            finally:
                release.set()
                del store.webchat_history


async def test_after_its_session_expired_the_socket_shows_the_new_conversation(
    sqlite_url: str,
) -> None:
    """A message on a socket whose session expired starts a new conversation; the socket
    moves to it and shows its reply (its writer no longer waits on the old subscription)."""
    # a heartbeat interval past the test's wait: a writer left waiting on the old subscription
    # would only notice at its next ping
    async with running_stack(
        sqlite_url, webchat=True, delay=0, webchat_session_timeout=60, heartbeat_interval=600
    ) as s:
        session = await new_session(s)
        async with live_socket(s, session["session_id"]) as c:
            await c.send({"type": "user_message", "content": "first"})
            await wait_until(lambda: c.texts("agent") == ["Echo: first"])
            await idle_for(s, session["session_id"], 61)
            await c.send({"type": "user_message", "content": "second"})
            await wait_until(lambda: len(c.of("session")) == 2)
            assert c.of("session")[1]["uid"] != session["uid"]
            await wait_until(lambda: c.texts("agent") == ["Echo: first", "Echo: second"])


# ---------------------------------------------------------------------- the subscriber


async def test_a_subscriber_gets_frames_in_order_then_none_once_ended() -> None:
    hub = LiveHub()
    sub = hub.subscribe("u1")
    waiting = asyncio.ensure_future(sub.get())
    assert hub.publish("u1", {"n": 1}) == 1
    assert await waiting == {"n": 1}
    hub.publish("u1", {"n": 2})
    hub.publish("u1", {"n": 3})
    hub.unsubscribe(sub)
    assert hub.publish("u1", {"n": 4}) == 0
    assert [await sub.get(), await sub.get(), await sub.get()] == [{"n": 2}, {"n": 3}, None]
    assert hub.listeners("u1") == 0


async def test_a_stuck_subscriber_drops_frames_past_its_limit() -> None:
    hub = LiveHub()
    stuck, fresh = hub.subscribe("u1"), hub.subscribe("u1")
    for n in range(MAX_PENDING):
        assert hub.publish("u1", {"n": n}) == 2
    await fresh.get()
    assert hub.publish("u1", {"n": "more"}) == 1  # the stuck one catches up from history
    assert len(stuck.frames) == MAX_PENDING
