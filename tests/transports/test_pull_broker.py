"""PullBroker: offers, leases, re-offers and replies, without HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from chatbridge.errors import AgentTimeout, AgentUnavailable, TurnCancelled
from chatbridge.protocol import ProtocolError
from chatbridge.transports.base import TurnRequest
from chatbridge.transports.pull import LeaseExpired, PullBroker, PullPolicy, UnknownTurn


def request(n: int, *, agent: str = "a1", deadline: float = 5.0) -> TurnRequest:
    return TurnRequest(
        turn_key=f"t_{n}",
        seq=n,
        agent_id=agent,
        conversation_id=f"c_{n}",
        frame={"type": "user_message", "message_id": f"t_{n}", "content": f"m{n}"},
        deadline=time.time() + deadline,
    )


def broker(lease: float = 5.0, max_offers: int | None = None, **kw: object) -> PullBroker:
    return PullBroker(lambda _agent: PullPolicy(lease, max_offers), **kw)  # type: ignore[arg-type]


async def offered(b: PullBroker, *reqs: TurnRequest) -> list[asyncio.Task[object]]:
    tasks = [asyncio.create_task(b.run_turn(r)) for r in reqs]
    await asyncio.sleep(0)
    return tasks  # type: ignore[return-value]


async def test_offers_are_leased_oldest_first_and_never_twice() -> None:
    b = broker()
    tasks = await offered(b, *(request(n) for n in range(5)))
    first = b.take("a1", 2)
    second = b.take("a1", 10)
    assert [o.key for o in first] == ["t_0", "t_1"]
    assert [o.key for o in second] == ["t_2", "t_3", "t_4"]
    assert b.take("a1", 10) == [] and b.available("a1") == 0
    for o in first + second:
        assert await b.reply("a1", o.key, o.lease_id, {"type": "no_reply"}) == "answered"
    assert [o.kind for o in await asyncio.gather(*tasks)] == ["no_reply"] * 5  # type: ignore[attr-defined]


async def test_an_expired_lease_is_offered_again_and_the_old_lease_is_refused() -> None:
    b = broker(lease=0.1)
    [task] = await offered(b, request(1))
    [taken] = b.take("a1", 1)
    old_lease = taken.lease_id
    again = await b.pull("a1", limit=1, wait=2)
    assert [o.key for o in again] == ["t_1"] and again[0].lease_id != old_lease
    assert again[0].offers == 2
    with pytest.raises(LeaseExpired):
        await b.reply("a1", "t_1", old_lease, {"type": "agent_message", "content": "late"})
    await b.reply("a1", "t_1", again[0].lease_id, {"type": "agent_message", "content": "ok"})
    outcome = await task
    assert (outcome.kind, outcome.content) == ("reply", "ok")  # type: ignore[attr-defined]


async def test_after_max_offers_the_turn_times_out() -> None:
    b = broker(lease=0.05, max_offers=2)
    [task] = await offered(b, request(1))
    assert len(await b.pull("a1", limit=1, wait=1)) == 1
    assert len(await b.pull("a1", limit=1, wait=1)) == 1
    assert await b.pull("a1", limit=1, wait=0.2) == []
    with pytest.raises(AgentTimeout, match="2 offer"):
        await task


async def test_a_turn_nobody_pulls_is_unavailable_at_its_deadline() -> None:
    b = broker()
    [task] = await offered(b, request(1, deadline=0.1))
    with pytest.raises(AgentUnavailable):
        await task
    assert b.in_flight("a1") == 0


async def test_streamed_chunks_are_passed_on_and_joined() -> None:
    seen: list[tuple[str, int, str]] = []

    async def on_chunk(turn: str, _conv: str, index: int, content: str) -> None:
        seen.append((turn, index, content))

    b = broker(on_chunk=on_chunk)
    [task] = await offered(b, request(1))
    [o] = b.take("a1", 1)
    for i, piece in enumerate(["Hel", "lo"]):
        frame = {"type": "agent_streaming", "stream_index": i, "content": piece}
        assert await b.reply("a1", "t_1", o.lease_id, frame) == "chunk"
    # a repeated chunk (a retried POST) is not passed on twice
    await b.reply(
        "a1", "t_1", o.lease_id, {"type": "agent_streaming", "stream_index": 1, "content": "lo"}
    )
    assert await b.reply("a1", "t_1", o.lease_id, {"type": "agent_complete"}) == "answered"
    assert (await task).content == "Hello"  # type: ignore[attr-defined]
    assert seen == [("t_1", 0, "Hel"), ("t_1", 1, "lo")]


async def test_replies_to_unknown_or_answered_turns_and_bad_frames_are_refused() -> None:
    b = broker()
    [task] = await offered(b, request(1))
    [o] = b.take("a1", 1)
    with pytest.raises(UnknownTurn):
        await b.reply("a1", "t_404", o.lease_id, {"type": "no_reply"})
    with pytest.raises(UnknownTurn):
        await b.reply("other-agent", "t_1", o.lease_id, {"type": "no_reply"})
    with pytest.raises(ProtocolError):
        await b.reply("a1", "t_1", o.lease_id, {"type": "agent_streaming"})
    await b.reply("a1", "t_1", o.lease_id, {"type": "no_reply"})
    await task
    with pytest.raises(UnknownTurn):
        await b.reply("a1", "t_1", o.lease_id, {"type": "no_reply"})


async def test_concurrent_pollers_split_the_offers() -> None:
    b = broker()
    tasks = await offered(b, *(request(n) for n in range(40)))
    got = await asyncio.gather(*(b.pull("a1", limit=3, wait=0.5) for _ in range(20)))
    keys = [o.key for batch in got for o in batch]
    assert sorted(keys) == sorted(f"t_{n}" for n in range(40))
    for batch in got:
        for o in batch:
            await b.reply("a1", o.key, o.lease_id, {"type": "no_reply"})
    await asyncio.gather(*tasks)


async def test_a_withdrawn_turn_is_never_offered_and_its_answer_is_refused() -> None:
    b = broker()
    leased_turn, pending_turn, kept_turn = await offered(b, request(1), request(2), request(3))
    [lease] = b.take("a1", 1)
    assert b.withdraw("a1", "t_1") and b.withdraw("a1", "t_2", "superseded")
    for task in (leased_turn, pending_turn):
        with pytest.raises(TurnCancelled):
            await task
    assert [o.key for o in b.take("a1", 10)] == ["t_3"]  # t_2 is not offered any more
    with pytest.raises(UnknownTurn):
        await b.reply("a1", "t_1", lease.lease_id, {"type": "agent_message", "content": "late"})
    assert not b.withdraw("a1", "t_1") and not b.withdraw("a1", "t_404")
    assert not b.withdraw("nobody", "t_3")
    assert b.in_flight("a1") == 1
    kept_turn.cancel()
    await asyncio.gather(kept_turn, return_exceptions=True)


# -- protocol 1.3: live frames and notices on a pulled (or webhook) turn ------------------------


async def test_live_frames_and_notices_on_a_leased_turn_are_passed_on_in_its_conversation() -> None:
    live: list[tuple[str, dict[str, object]]] = []
    notices: list[tuple[str, dict[str, object]]] = []

    async def on_live(agent_id: str, frame: dict[str, object]) -> None:
        live.append((agent_id, frame))

    async def on_notice(agent_id: str, frame: dict[str, object]) -> None:
        notices.append((agent_id, frame))

    b = broker(on_live=on_live, on_notice=on_notice)
    [task] = await offered(b, request(1))
    [offer] = b.take("a1", 1)

    async def reply(frame: dict[str, object]) -> str:
        return await b.reply("a1", "t_1", offer.lease_id, frame)

    assert await reply({"type": "status_update", "content": "Looking"}) == "live"
    assert await reply({"type": "progress_update", "progress": 1.0}) == "live"
    assert await reply({"type": "file_error", "file_id": "f", "error": "too big"}) == "live"
    # a notice posted for a turn goes into that turn's conversation, whatever it names
    assert await reply({"type": "system_message", "content": "Note"}) == "notice"
    assert await reply({"type": "warning_message", "conversation_id": "c_2", "content": "W"}) == (
        "notice"
    )
    with pytest.raises(ProtocolError) as info:
        await reply({"type": "progress_update", "progress": 2})
    assert info.value.code == "invalid_message"
    assert [(a, f["type"], f["conversation_id"], f["message_id"]) for a, f in live] == [
        ("a1", "status_update", "c_1", "t_1"),
        ("a1", "progress_update", "c_1", "t_1"),
        ("a1", "file_error", "c_1", "t_1"),
    ]
    assert [(f["type"], f["conversation_id"], f["content"]) for _, f in notices] == [
        ("system_message", "c_1", "Note"),
        ("warning_message", "c_1", "W"),
    ]
    assert not task.done()
    handing = {"type": "agent_handoff", "to_agent": "specialist", "reason": "tax question"}
    assert await reply(handing) == "answered"
    outcome = await task
    assert (outcome.kind, outcome.to_agent, outcome.reason) == (  # type: ignore[attr-defined]
        "agent_handoff",
        "specialist",
        "tax question",
    )
