"""The counting that decides whether a benchmark result counts: each failure is caught."""

from __future__ import annotations

import pytest

from chatbridge.bench.accounting import (
    Reply,
    Sent,
    marker,
    parse_marker,
    percentile,
    percentiles,
    rate,
    tally,
    time_series,
)


def conversation(conv: int, count: int, *, start: float = 100.0) -> list[Sent]:
    """``count`` messages of ``conv``, each acknowledged 10 ms after it was sent."""
    return [
        Sent(
            conversation=conv,
            seq=seq,
            sent_at=start + seq,
            acked_at=start + seq + 0.01,
            ack_latency=0.01,
            ack_order=seq,
        )
        for seq in range(count)
    ]


def reply(conv: int, seq: int, at: float, *, into: int | None = None) -> Reply:
    return Reply(
        conversation=conv if into is None else into,
        content=f"Echo: {marker(conv, seq)}",
        received_at=at,
    )


def in_order(sent: list[Sent]) -> list[Reply]:
    return [reply(m.conversation, m.seq, m.sent_at + 0.05) for m in sent]


def test_marker_round_trip() -> None:
    assert parse_marker(f"Echo: {marker(12, 345)}") == (12, 345)
    assert parse_marker("Thanks for your message! We can't answer right now") is None
    assert parse_marker(None) is None


def test_every_message_answered_once_in_order_counts() -> None:
    sent = conversation(1, 5) + conversation(2, 5)
    result = tally(sent, in_order(sent))
    assert (result.acknowledged, result.replied) == (10, 10)
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
    assert result.valid
    assert result.e2e_latencies == pytest.approx([0.05] * 10)


def test_a_dropped_reply_is_lost() -> None:
    sent = conversation(1, 5)
    replies = [r for r in in_order(sent) if parse_marker(r.content) != (1, 2)]
    result = tally(sent, replies)
    assert result.lost == 1 and result.lost_examples == [(1, 2)]
    assert result.replied == 4
    assert not result.valid


def test_a_duplicated_reply_is_caught() -> None:
    sent = conversation(1, 3)
    replies = in_order(sent)
    replies.append(reply(1, 1, 200.0))
    result = tally(sent, replies)
    assert result.duplicated == 1 and result.duplicated_examples == [(1, 1)]
    assert result.replied == 3 and result.lost == 0
    assert not result.valid


def test_reordered_replies_in_a_conversation_are_caught() -> None:
    sent = conversation(1, 4) + conversation(2, 2)
    replies = [
        reply(1, 0, 101.0),
        reply(1, 2, 103.0),
        reply(2, 0, 103.1),
        reply(1, 1, 103.5),  # acknowledged before 2, answered after it
        reply(1, 3, 104.0),
        reply(2, 1, 104.1),
    ]
    result = tally(sent, replies)
    assert result.out_of_order == 1 and result.out_of_order_examples == [(1, 1)]
    assert result.lost == 0 and result.duplicated == 0
    assert not result.valid


def test_order_is_per_conversation() -> None:
    """Replies of different conversations may interleave in any way."""
    sent = conversation(1, 3) + conversation(2, 3)
    replies = [reply(2, 0, 1), reply(2, 1, 2), reply(1, 0, 3), reply(2, 2, 4), reply(1, 1, 5)]
    replies.append(reply(1, 2, 6))
    assert tally(sent, replies).out_of_order == 0


def test_a_reply_posted_to_another_conversation_is_lost_and_unexpected() -> None:
    sent = conversation(1, 2) + conversation(2, 1)
    replies = [reply(1, 0, 101), reply(1, 1, 102, into=2), reply(2, 0, 103)]
    result = tally(sent, replies)
    assert result.unexpected == 1
    assert result.lost == 1 and result.lost_examples == [(1, 1)]


def test_unacknowledged_messages_are_errors_not_losses() -> None:
    sent = conversation(1, 2)
    sent.append(Sent(conversation=1, seq=2, sent_at=103.0, error="HTTP 500"))
    result = tally(sent, in_order(sent[:2]))
    assert result.errors == 1 and result.lost == 0 and result.valid


def test_a_reply_to_an_unacknowledged_message_is_counted_apart() -> None:
    sent = [Sent(conversation=1, seq=0, sent_at=1.0, error="timeout")]
    result = tally(sent, [reply(1, 0, 2.0)])
    assert result.replied_unacknowledged == 1 and result.replied == 0
    assert not result.valid  # nothing acknowledged: nothing to count


def test_a_target_without_replies_loses_nothing() -> None:
    sent = conversation(1, 3)
    result = tally(sent, [], expects_replies=False)
    assert result.lost == 0 and result.valid


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 95) == pytest.approx(8.8)
    assert percentile([], 50) is None
    assert percentiles([5.0]) == {"p50": 5.0, "p95": 5.0, "p99": 5.0}


def test_rate_counts_only_the_window() -> None:
    assert rate([0.5, 1.0, 1.5, 2.0, 3.5], 1.0, 3.0) == 1.5


def test_time_series_buckets_by_second() -> None:
    sent = conversation(1, 3, start=0.0)  # sent at 0, 1, 2
    replies = [reply(1, 0, 0.5), reply(1, 1, 1.2), reply(1, 1, 1.3), reply(1, 2, 2.9)]
    buckets = time_series(sent, replies, start=0.0, end=3.0)
    assert [b.sent for b in buckets] == [1, 1, 1]
    assert [b.acknowledged for b in buckets] == [1, 1, 1]
    assert [b.replied for b in buckets] == [1, 1, 1]  # the duplicate is not throughput
    assert buckets[2].e2e_p50 == pytest.approx(0.9)
