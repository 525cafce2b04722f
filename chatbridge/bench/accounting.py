"""What a run sent, what came back, and what went wrong: pure functions, no I/O.

Every benchmark message carries a marker ``b:<conversation>:<seq>`` in its text; the echo
agent answers ``Echo: <text>``, so each reply names the message it answers. From the messages
sent (``Sent``) and the replies the channel recorded, in arrival order (``Reply``), ``tally``
counts:

* **lost**: acknowledged, never replied (after the grace period the runner waited);
* **duplicated**: acknowledged and replied more than once;
* **out of order**: in one conversation, a reply that arrived after the reply to a message
  that was acknowledged *later* (a customer types sequentially: each message is sent only
  after the previous one was acknowledged, so acknowledgement order is the order the replies
  must come in);
* **unexpected**: a reply that names no message of the run, or one of another conversation
  (posted to the wrong conversation: its message counts as lost too).

A result counts only when lost, duplicated and out of order are all 0 (``Tally.valid``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_MARKER_RE = re.compile(r"\bb:(\d+):(\d+)\b")

MessageKey = tuple[int, int]
"""(conversation, seq): one benchmark message."""


def marker(conversation: int, seq: int) -> str:
    """The text that identifies message ``seq`` of ``conversation`` (and its reply)."""
    return f"b:{conversation}:{seq}"


def parse_marker(text: str | None) -> MessageKey | None:
    """The (conversation, seq) a message or reply text names, or ``None``."""
    if not text:
        return None
    found = _MARKER_RE.search(text)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2))


def parse_markers(text: str | None) -> list[MessageKey]:
    """Every (conversation, seq) a text names, in order: a reply to a turn that merged
    several messages names them all."""
    if not text:
        return []
    return [(int(m.group(1)), int(m.group(2))) for m in _MARKER_RE.finditer(text)]


@dataclass(slots=True)
class Sent:
    """One message the load generator sent (or tried to).

    Times are ``time.time()`` floats (the channel stamps replies with the same clock); the
    acknowledgement latency is measured with ``perf_counter`` and kept apart.
    """

    conversation: int
    seq: int
    sent_at: float
    intended_at: float | None = None
    acked_at: float | None = None
    ack_latency: float | None = None
    ack_order: int | None = None
    attempts: int = 0
    error: str | None = None

    @property
    def key(self) -> MessageKey:
        return (self.conversation, self.seq)

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None


@dataclass(slots=True)
class Reply:
    """One reply the channel received, in arrival order."""

    conversation: int
    content: str | None
    received_at: float


@dataclass
class Tally:
    """The counts and latencies of one run (see the module docstring)."""

    sent: int = 0
    acknowledged: int = 0
    replied: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    replied_unacknowledged: int = 0
    errors: int = 0
    ack_latencies: list[float] = field(default_factory=list)
    e2e_latencies: list[float] = field(default_factory=list)
    lost_examples: list[MessageKey] = field(default_factory=list)
    duplicated_examples: list[MessageKey] = field(default_factory=list)
    out_of_order_examples: list[MessageKey] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """The result counts: nothing lost, doubled or reordered, and something acknowledged."""
        return (
            self.acknowledged > 0
            and self.lost == 0
            and self.duplicated == 0
            and self.out_of_order == 0
        )


_EXAMPLES = 10


def tally(sent: Sequence[Sent], replies: Iterable[Reply], *, expects_replies: bool = True) -> Tally:
    """Count what was sent, acknowledged and replied, and what was lost, doubled or reordered.

    Args:
        sent: every message the generator sent, acknowledged or not.
        replies: the replies the channel received, in arrival order.
        expects_replies: ``False`` for targets that only acknowledge (the no-op baseline):
            nothing then counts as lost.

    Returns:
        The ``Tally``; its end-to-end latencies are taken from the first reply of each
        acknowledged message (``received_at - sent_at``).
    """
    result = Tally(sent=len(sent))
    by_key: dict[MessageKey, Sent] = {}
    for message in sent:
        by_key[message.key] = message
        if message.acknowledged:
            result.acknowledged += 1
            if message.ack_latency is not None:
                result.ack_latencies.append(message.ack_latency)
        else:
            result.errors += 1
    reply_counts: dict[MessageKey, int] = {}
    # per conversation, the highest acknowledgement order whose reply has arrived
    highest: dict[int, int] = {}
    for reply in replies:
        key = parse_marker(reply.content)
        found = by_key.get(key) if key is not None else None
        if key is None or found is None or key[0] != reply.conversation:
            result.unexpected += 1
            continue
        count = reply_counts.get(key, 0) + 1
        reply_counts[key] = count
        if count > 1:
            continue
        if found.ack_order is None:
            result.replied_unacknowledged += 1
            continue
        result.replied += 1
        result.e2e_latencies.append(reply.received_at - found.sent_at)
        top = highest.get(reply.conversation)
        if top is not None and found.ack_order < top:
            result.out_of_order += 1
            if len(result.out_of_order_examples) < _EXAMPLES:
                result.out_of_order_examples.append(key)
        else:
            highest[reply.conversation] = found.ack_order
    for key, count in reply_counts.items():
        if count > 1:
            result.duplicated += 1
            if len(result.duplicated_examples) < _EXAMPLES:
                result.duplicated_examples.append(key)
    if expects_replies:
        for message in sent:
            if message.acknowledged and message.key not in reply_counts:
                result.lost += 1
                if len(result.lost_examples) < _EXAMPLES:
                    result.lost_examples.append(message.key)
    return result


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0 to 100) by linear interpolation between closest ranks.

    The same definition as numpy's default; ``None`` for no values.
    """
    if not values:
        return None
    return _interpolate(sorted(values), q)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": …, "p95": …, "p99": …}`` of ``values``; empty when there are none."""
    if not values:
        return {}
    ordered = sorted(values)
    return {f"p{q:g}": _interpolate(ordered, q) for q in qs}


def _interpolate(ordered: Sequence[float], q: float) -> float:
    rank = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rate(times: Iterable[float], start: float, end: float) -> float:
    """Events per second among ``times`` that fall in ``[start, end]``."""
    span = end - start
    if span <= 0:
        return 0.0
    return sum(1 for t in times if start <= t <= end) / span


@dataclass
class Bucket:
    """One interval of a run's time series (``t`` = seconds since the load started)."""

    t: float
    sent: int = 0
    acknowledged: int = 0
    replied: int = 0
    ack_p50: float | None = None
    ack_p99: float | None = None
    e2e_p50: float | None = None
    e2e_p95: float | None = None
    e2e_p99: float | None = None


def time_series(
    sent: Sequence[Sent],
    replies: Iterable[Reply],
    *,
    start: float,
    end: float,
    width: float = 1.0,
) -> list[Bucket]:
    """Per-interval counts and latency percentiles from ``start`` to ``end``.

    A message counts in the interval it was sent and in the one it was acknowledged; a reply
    in the interval it arrived, with its end-to-end latency (first replies only).
    """
    count = max(1, math.ceil((end - start) / width))
    buckets = [Bucket(t=round(i * width, 6)) for i in range(count)]
    acks: list[list[float]] = [[] for _ in range(count)]
    e2e: list[list[float]] = [[] for _ in range(count)]

    def index(t: float) -> int | None:
        i = math.floor((t - start) / width)
        return i if 0 <= i < count else None

    by_key: dict[MessageKey, Sent] = {}
    for message in sent:
        by_key[message.key] = message
        i = index(message.sent_at)
        if i is not None:
            buckets[i].sent += 1
        if message.acked_at is not None:
            j = index(message.acked_at)
            if j is not None:
                buckets[j].acknowledged += 1
                if message.ack_latency is not None:
                    acks[j].append(message.ack_latency)
    seen: set[MessageKey] = set()
    for reply in replies:
        key = parse_marker(reply.content)
        if key is None or key in seen or key not in by_key:
            continue
        seen.add(key)
        i = index(reply.received_at)
        if i is None:
            continue
        buckets[i].replied += 1
        e2e[i].append(reply.received_at - by_key[key].sent_at)
    for bucket, ack_values, e2e_values in zip(buckets, acks, e2e, strict=True):
        bucket.ack_p50 = percentile(ack_values, 50)
        bucket.ack_p99 = percentile(ack_values, 99)
        bucket.e2e_p50 = percentile(e2e_values, 50)
        bucket.e2e_p95 = percentile(e2e_values, 95)
        bucket.e2e_p99 = percentile(e2e_values, 99)
    return buckets
