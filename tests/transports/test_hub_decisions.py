"""The hub's decisions without I/O: stream assembly, outcomes, percentiles, frame size,
which turns a resumed connection already has."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.protocol import AgentComplete, AgentMessage, ErrorMessage, Handoff, NoReply
from chatbridge.transports.hub import (
    StreamGap,
    assemble_stream,
    frame_too_large,
    outcome_of,
    percentile,
)
from chatbridge.transports.links import Link
from chatbridge.transports.turns import PendingTurn, resume_on
from tests.transports.hub_helpers import turn_request


@given(st.lists(st.text(), max_size=30), st.randoms())
def test_chunks_join_in_index_order_whatever_the_arrival_order(chunks: list[str], rnd) -> None:
    arrivals = list(enumerate(chunks))
    rnd.shuffle(arrivals)
    assert assemble_stream(dict(arrivals)) == "".join(chunks)


@given(st.sets(st.integers(min_value=0, max_value=50), min_size=1))
def test_any_hole_is_a_gap(indexes: set[int]) -> None:
    chunks = {i: "x" for i in indexes}
    if indexes == set(range(max(indexes) + 1)):
        assert assemble_stream(chunks) == "x" * len(indexes)
    else:
        with pytest.raises(StreamGap) as info:
            assemble_stream(chunks)
        assert info.value.missing[0] == min(set(range(max(indexes))) - indexes)


def test_outcomes_of_each_ending_frame() -> None:
    meta = {"agent_id": "a"}
    reply = outcome_of(
        AgentMessage(message_id="t", content="hi", attachments=[{"url": "u"}], metadata=meta), {}
    )
    assert (reply.kind, reply.content, reply.attachments, reply.metadata) == (
        "reply", "hi", [{"url": "u"}], meta,
    )  # fmt: skip
    joined = outcome_of(AgentComplete(message_id="t"), {1: "b", 0: "a"})
    assert (joined.kind, joined.content, joined.streamed_chunks) == ("reply", "ab", 2)
    full = outcome_of(AgentComplete(message_id="t", content="whole"), {0: "a"})
    assert full.content == "whole"
    gap = outcome_of(AgentComplete(message_id="t"), {0: "a", 2: "c"})
    assert (gap.kind, gap.error_code) == ("error", "stream_gap")
    assert gap.error_details == {"missing": [1]}
    handoff = outcome_of(Handoff(message_id="t", reason="r", content="c"), {})
    assert (handoff.kind, handoff.reason, handoff.content) == ("handoff", "r", "c")
    assert outcome_of(NoReply(message_id="t"), {}).kind == "no_reply"
    error = outcome_of(ErrorMessage(message_id="t", error_code="x", error_details=[1]), {})
    assert (error.kind, error.error_code, error.error_details) == ("error", "x", [1])


def test_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(list(reversed(values)), 100) == 100.0


def test_frame_size_counts_utf8_bytes() -> None:
    assert not frame_too_large("a" * 1024, 1024)
    assert frame_too_large("a" * 1025, 1024)
    assert frame_too_large("é" * 600, 1024)  # 1200 bytes
    assert not frame_too_large("é" * 500, 1024)
    assert frame_too_large(b"x" * 1025, 1024)


def _link(link_id: str | None) -> Link:
    async def send(text: str) -> None: ...

    async def close(code: int, reason: str) -> None: ...

    return Link("agent1", send, close, close_timeout=1.0, link_id=link_id)


async def test_a_resumed_connection_takes_only_the_turns_sent_under_its_name() -> None:
    """An agent resuming connection ``a`` has the answers it kept for ``a``'s turns; a turn
    that went out on ``b`` (or on an unnamed connection) must be sent again, or nobody would
    answer it: the agent keeps ``b``'s answers for ``b``."""
    loop = asyncio.get_running_loop()
    old_a, old_b, unnamed = _link("a"), _link("b"), _link(None)
    turns = {}
    for key, seq, link in (("t_a", 1, old_a), ("t_b", 2, old_b), ("t_n", 3, unnamed)):
        turn = PendingTurn(turn_request("agent1", key, seq=seq), loop.create_future())
        turn.sent_on, turn.sent_at = link, 1.0
        turns[key] = turn
    new_a = _link("a")
    resume_on(new_a, turns.values(), "agent1", resume_from=3, trust_mark=True)
    assert {k: t.sent_on for k, t in turns.items()} == {
        "t_a": new_a, "t_b": old_b, "t_n": unnamed,
    }  # fmt: skip
    new_unnamed = _link(None)
    resume_on(new_unnamed, turns.values(), "agent1", resume_from=3, trust_mark=True)
    assert turns["t_n"].sent_on is new_unnamed
    # above resume_from, or not trusted without an ack: sent again whatever the name
    later = _link("b")
    resume_on(later, turns.values(), "agent1", resume_from=1, trust_mark=True)
    resume_on(later, turns.values(), "agent1", resume_from=3, trust_mark=False)
    assert turns["t_b"].sent_on is old_b
