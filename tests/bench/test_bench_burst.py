"""``chatbridge bench burst``: the counting (pure), and a small run end to end."""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from chatbridge.bench.accounting import MessageKey, Reply, marker
from chatbridge.bench.burst_accounting import Burst, Fragment, ModelCall, tally_bursts
from chatbridge.bench.burst_runner import ReplyWatch
from chatbridge.cli import app


def typed(conversation: int, sizes: list[int]) -> tuple[list[Fragment], list[Burst]]:
    """Bursts of ``sizes`` fragments in one conversation, 0.3 s apart, 10 s between bursts."""
    fragments, bursts, seq = [], [], 0
    for index, size in enumerate(sizes):
        start = 100.0 + 10 * index
        burst = [
            Fragment(conversation, seq + i, index, sent_at=start + 0.3 * i, acked_at=start)
            for i in range(size)
        ]
        fragments += burst
        bursts.append(Burst(conversation, index, tuple(f.seq for f in burst), burst[-1].sent_at))
        seq += size
    return fragments, bursts


def answer(keys: list[MessageKey], at: float) -> tuple[ModelCall, Reply]:
    """The turn carrying ``keys`` and its echo, as the burst agent and the channel see them."""
    text = "Echo: " + "\n".join(marker(*k) for k in keys)
    return ModelCall(at=at - 0.1, keys=tuple(keys)), Reply(keys[0][0], text, at)


@st.composite
def burst_splits(draw: st.DrawFn) -> list[int]:
    """A burst of 3 to 5 fragments cut into consecutive turns: the turns' sizes."""
    size = draw(st.integers(min_value=3, max_value=5))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=size - 1))))
    bounds = [0, *cuts, size]
    return [b - a for a, b in pairwise(bounds)]


@given(st.lists(burst_splits(), min_size=1, max_size=6))
def test_any_split_of_bursts_into_turns_counts_one_call_per_turn(splits: list[list[int]]) -> None:
    """However the bridge groups a burst's fragments into consecutive turns, each fragment is
    in one turn and one reply, the calls are the turns, and the burst is answered by its
    last reply."""
    fragments, bursts = typed(1, [sum(cuts) for cuts in splits])
    calls, replies = [], []
    for burst, cuts in zip(bursts, splits, strict=True):
        keys, at = burst.keys, burst.last_sent_at
        for n, size in enumerate(cuts):
            call, reply = answer(keys[:size], at + 1 + n)
            keys = keys[size:]
            calls.append(call)
            replies.append(reply)
    t = tally_bursts(fragments, bursts, calls, replies)
    assert t.valid, t.problems()
    turns = sum(len(cuts) for cuts in splits)
    assert t.model_calls == turns == t.replies
    assert t.calls_per_message == turns / len(fragments)
    assert t.latencies == [float(len(cuts)) for cuts in splits]


def test_a_fragment_given_twice_missing_or_unanswered_is_reported() -> None:
    fragments, bursts = typed(1, [3, 3])
    first, second = bursts
    call_a, reply_a = answer(first.keys, 102.0)
    call_b, _ = answer(first.keys[2:], 102.5)  # the last fragment of burst 0 run again
    call_c, reply_c = answer(second.keys[:2], 112.0)  # burst 1's last fragment: no turn, no reply
    t = tally_bursts(fragments, bursts, [call_a, call_b, call_c], [reply_a, reply_c])
    assert not t.valid
    assert t.problems() == {
        "not_in_a_turn": 1,
        "in_several_turns": 1,
        "misordered_turns": 0,
        "lost": 1,
        "duplicated": 0,
        "unanswered_bursts": 1,
        "unexpected": 0,
    }
    assert t.examples["in_several_turns"] == [(1, 2)]
    assert t.examples["lost"] == t.examples["not_in_a_turn"] == [(1, 5)]
    assert t.latencies == [pytest.approx(2.0 - 0.6)]


def test_a_turn_out_of_order_or_a_reply_in_another_conversation_is_reported() -> None:
    fragments, bursts = typed(1, [2])
    (burst,) = bursts
    misordered = ModelCall(at=100.5, keys=tuple(reversed(burst.keys)))
    elsewhere = Reply(2, "Echo: " + "\n".join(marker(*k) for k in burst.keys), 101.0)
    t = tally_bursts(fragments, bursts, [misordered], [elsewhere])
    assert (t.misordered_turns, t.unexpected, t.lost, t.unanswered_bursts) == (1, 1, 2, 1)


async def test_a_customer_waits_until_every_fragment_of_its_burst_is_answered() -> None:
    watch = ReplyWatch()
    keys = [(7, 0), (7, 1)]
    waiting = asyncio.create_task(watch.wait_answered(7, keys, timeout=5))
    watch.on_reply(Reply(7, "Echo: b:7:0", 1.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    watch.on_reply(Reply(7, "Echo: b:7:1", 2.0))
    assert await asyncio.wait_for(waiting, 5) is True
    assert await watch.wait_answered(7, [(7, 2)], timeout=0.01) is False


@pytest.mark.timeout(120)
def test_bench_burst_merges_each_burst_into_one_model_call(tmp_path: Path) -> None:
    """Without debounce every fragment is a model call and a reply; with it, each burst is
    one of each — and no fragment is lost or given to the model twice either way."""
    out = tmp_path / "burst.json"
    result = CliRunner().invoke(
        app,
        ["bench", "burst", "--quick", "--conversations", "3", "--duration", "3",
         "--debounce-ms", "1500", "--jitter-ms", "50", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plain, debounced = json.loads(out.read_text())["runs"]
    for run in (plain, debounced):
        counts = run["counts"]
        assert run["valid"] is True and counts["acknowledged"] == counts["fragments"] > 0
        assert set(counts["problems"].values()) == {0}
        assert 3 <= counts["fragments_per_burst"] <= 5
        assert set(counts["latency_after_last_fragment_seconds"]) == {"p50", "p95", "p99"}
        assert run["bridge_cpu_ms_per_customer_message"] > 0
    assert plain["policies"] is None
    assert plain["counts"]["model_calls_per_customer_message"] == 1.0
    assert (
        plain["counts"]["model_calls"] == plain["counts"]["replies"] == plain["counts"]["fragments"]
    )
    assert debounced["policies"] == {"debounce_ms": 1500, "max_wait_ms": 5000}
    assert debounced["counts"]["model_calls"] == debounced["counts"]["bursts"]
    assert debounced["counts"]["replies_per_burst"] == 1.0
    # the window closes 1.5 s after the last fragment: the reply cannot come sooner
    assert debounced["counts"]["latency_after_last_fragment_seconds"]["p50"] >= 1.5
    said = " ".join(result.output.split())
    assert "model calls per customer message 1.00 →" in said
