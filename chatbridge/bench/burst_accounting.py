"""What a burst run cost and whether it lost anything: pure functions, no I/O.

A customer types a burst of fragments (``Fragment``: each one webhook, its text the marker
``b:<conversation>:<seq>``), then waits for the bot. The agent logs every turn it runs — one
model call — with the fragments its ``user_message`` carried (``ModelCall``); it echoes them
all, so a reply names every fragment it answers. From these ``tally_bursts`` counts:

* **model calls per customer message**: turns run / fragments acknowledged (1.0 without
  debounce; 1 / fragments-per-burst when every burst merges into one turn);
* **replies per burst**: replies naming a fragment of the run / bursts;
* **added latency**: per burst, from its last fragment's send to the moment every fragment of
  it has been answered (the reply the customer waits for), p50/p95/p99;

and checks that nothing is lost or doubled on the way:

* **not in a turn** / **in several turns**: an acknowledged fragment that reached the model in
  no ``user_message``, or in more than one;
* **misordered turns**: a turn whose fragments are not one conversation's, in the order typed;
* **lost** / **duplicated**: an acknowledged fragment no reply names, or more than one does;
* **unanswered bursts**: a burst not fully answered when its customer stopped waiting;
* **unexpected**: a turn or reply that names no fragment of the run.

A run counts only when all of these are 0 (``BurstTally.valid``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatbridge.bench.accounting import MessageKey, Reply, parse_marker, parse_markers, percentiles

_EXAMPLES = 10


@dataclass(slots=True)
class Fragment:
    """One message of a burst, as the customer sent it (``time.time()`` floats)."""

    conversation: int
    seq: int
    burst: int
    """The burst's index in its conversation (0, 1, …)."""
    sent_at: float
    acked_at: float | None = None
    error: str | None = None

    @property
    def key(self) -> MessageKey:
        return (self.conversation, self.seq)


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst: its fragments' seqs, in order, and when the last one was sent."""

    conversation: int
    index: int
    seqs: tuple[int, ...]
    last_sent_at: float

    @property
    def keys(self) -> list[MessageKey]:
        return [(self.conversation, s) for s in self.seqs]


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One turn the agent ran: when it began, and the fragments it carried, in order
    (``None`` for a message that names no fragment)."""

    at: float
    keys: tuple[MessageKey | None, ...]


def model_calls(rows: Iterable[Mapping[str, Any]]) -> list[ModelCall]:
    """The agent's turn log (``burst_agent.turn_record`` rows) as ``ModelCall`` s."""
    return [
        ModelCall(
            at=float(row["at"]),
            keys=tuple(parse_marker(m.get("content")) for m in row.get("messages", [])),
        )
        for row in rows
    ]


def burst_gaps(rng: random.Random, size: int, gap: float, jitter: float) -> list[float]:
    """Seconds between a burst's ``size`` fragments: ``gap`` each, plus or minus up to
    ``jitter`` (never below 0)."""
    return [max(0.0, gap + rng.uniform(-jitter, jitter)) for _ in range(size - 1)]


@dataclass
class BurstTally:
    """The counts and latencies of one burst run (see the module docstring)."""

    fragments: int = 0
    acknowledged: int = 0
    errors: int = 0
    bursts: int = 0
    model_calls: int = 0
    fragments_per_call_max: int = 0
    replies: int = 0
    not_in_a_turn: int = 0
    in_several_turns: int = 0
    misordered_turns: int = 0
    lost: int = 0
    duplicated: int = 0
    unanswered_bursts: int = 0
    unexpected: int = 0
    latencies: list[float] = field(default_factory=list)
    """Per answered burst: last fragment sent → every fragment answered, seconds."""
    examples: dict[str, list[MessageKey]] = field(default_factory=dict)

    @property
    def calls_per_message(self) -> float | None:
        return self.model_calls / self.acknowledged if self.acknowledged else None

    @property
    def replies_per_burst(self) -> float | None:
        return self.replies / self.bursts if self.bursts else None

    @property
    def fragments_per_burst(self) -> float | None:
        return self.fragments / self.bursts if self.bursts else None

    @property
    def latency(self) -> dict[str, float]:
        return percentiles(self.latencies)

    def problems(self) -> dict[str, int]:
        """Every check, by name (all 0 in a run that counts)."""
        return {
            "not_in_a_turn": self.not_in_a_turn,
            "in_several_turns": self.in_several_turns,
            "misordered_turns": self.misordered_turns,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unanswered_bursts": self.unanswered_bursts,
            "unexpected": self.unexpected,
        }

    @property
    def valid(self) -> bool:
        """The run counts: something acknowledged, and every check at 0."""
        return self.acknowledged > 0 and not any(self.problems().values())

    def to_json(self) -> dict[str, Any]:
        return {
            "fragments": self.fragments,
            "acknowledged": self.acknowledged,
            "errors": self.errors,
            "bursts": self.bursts,
            "fragments_per_burst": self.fragments_per_burst,
            "model_calls": self.model_calls,
            "model_calls_per_customer_message": self.calls_per_message,
            "fragments_per_call_max": self.fragments_per_call_max,
            "replies": self.replies,
            "replies_per_burst": self.replies_per_burst,
            "latency_after_last_fragment_seconds": self.latency,
            "problems": self.problems(),
            "examples": {k: [list(key) for key in v] for k, v in self.examples.items()},
            "valid": self.valid,
        }


def tally_bursts(
    fragments: Sequence[Fragment],
    bursts: Sequence[Burst],
    calls: Sequence[ModelCall],
    replies: Sequence[Reply],
) -> BurstTally:
    """Count a burst run (see the module docstring).

    Args:
        fragments: every fragment the customers sent, acknowledged or not.
        bursts: every burst they typed to the end.
        calls: the turns the agent ran.
        replies: the replies the channel received, in arrival order.
    """
    t = BurstTally(fragments=len(fragments), bursts=len(bursts), model_calls=len(calls))
    acked = {f.key: f for f in fragments if f.acked_at is not None}
    t.acknowledged = len(acked)
    t.errors = sum(1 for f in fragments if f.error is not None and f.acked_at is None)
    examples: dict[str, list[MessageKey]] = {}

    def note(kind: str, key: MessageKey, count: int = 1) -> None:
        setattr(t, kind, getattr(t, kind) + count)
        shown = examples.setdefault(kind, [])
        if len(shown) < _EXAMPLES:
            shown.append(key)

    # Each fragment reaches the model in exactly one turn, with its burst's order kept.
    in_turns: Counter[MessageKey] = Counter()
    for call in calls:
        keys = [k for k in call.keys if k is not None]
        t.unexpected += len(call.keys) - len(keys)
        t.fragments_per_call_max = max(t.fragments_per_call_max, len(call.keys))
        in_turns.update(keys)
        ordered = sorted(keys)
        if keys and (keys != ordered or len({c for c, _ in keys}) > 1):
            note("misordered_turns", keys[0])
    for key in acked:
        if in_turns[key] == 0:
            note("not_in_a_turn", key)
        elif in_turns[key] > 1:
            note("in_several_turns", key)

    # Each fragment is answered by exactly one reply; the first reply naming it answers it.
    answered_at: dict[MessageKey, float] = {}
    in_replies: Counter[MessageKey] = Counter()
    for reply in replies:
        keys = parse_markers(reply.content)
        if not keys or any(c != reply.conversation for c, _ in keys):
            t.unexpected += 1
            continue
        t.replies += 1
        in_replies.update(keys)
        for key in keys:
            answered_at.setdefault(key, reply.received_at)
    for key in acked:
        if in_replies[key] == 0:
            note("lost", key)
        elif in_replies[key] > 1:
            note("duplicated", key)

    for burst in bursts:
        keys = [k for k in burst.keys if k in acked]
        if not keys:
            continue
        if any(k not in answered_at for k in keys):
            note("unanswered_bursts", keys[-1])
            continue
        t.latencies.append(max(answered_at[k] for k in keys) - burst.last_sent_at)
    t.examples = examples
    return t
