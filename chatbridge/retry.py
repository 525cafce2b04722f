"""The retry decision: after a failed attempt, try again (when) or give up (how).

One plain function, no I/O, shared by every worker that retries durable work — channel
deliveries (``pipeline.delivery_runner``), agent turns a runner could not finish
(``pipeline.turn_runner``) and call transcriptions (``crm.transcription``). The caller
says how the attempt failed; the decision says what to write:

- a *retryable* failure with attempts left → ``RetryAt``: pending again after a jittered
  exponential backoff (``backoff.backoff_delay``), never sooner than a ``Retry-After``;
- a *retryable* failure on the last attempt → ``GiveUp`` (``exhausted``);
- a *permanent* failure → ``GiveUp`` at once, whatever the attempts left.

A ``GiveUp`` is ``dead`` (kept, listed, replayable) or, for work that is worthless once
late (a typing indicator), ``dropped``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from chatbridge.backoff import backoff_delay

FailureKind = Literal["retryable", "permanent"]


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at ``at`` (``delay`` seconds after the decision's ``now``); ``error`` is
    what this attempt recorded."""

    at: float
    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No more attempts: end the work in ``state`` with ``error``.

    ``attempts`` is set when a retryable failure used up the last attempt, and None for a
    permanent failure (which ends it whatever the attempts left).
    """

    state: Literal["dead", "dropped"]
    error: str
    attempts: int | None = None

    @property
    def exhausted(self) -> bool:
        return self.attempts is not None

    @property
    def reason(self) -> str:
        """The error to record: says so when the attempts ran out."""
        if self.attempts is None:
            return self.error
        return f"gave up after {self.attempts} attempts: {self.error}"


RetryDecision = RetryAt | GiveUp


def decide_retry(
    *,
    attempts: int,
    max_attempts: int,
    kind: FailureKind,
    error: str,
    now: float,
    base: float,
    cap: float,
    retry_after: float | None = None,
    droppable: bool = False,
    rng: random.Random | None = None,
) -> RetryDecision:
    """What to do after attempt number ``attempts`` (counted from 1) failed.

    Args:
        attempts: attempts made so far, this one included.
        max_attempts: attempts allowed in all.
        kind: ``retryable`` (may succeed later) or ``permanent`` (will fail the same way).
        error: what went wrong, as recorded on the work.
        now: the time the retry is counted from.
        base, cap: the backoff's first ceiling and its largest one (seconds).
        retry_after: the far side's ``Retry-After`` in seconds, if it sent one: a floor for
            the delay (itself capped at ten times ``cap``, as ``backoff_delay`` does).
        droppable: the work is worthless once late: it ends ``dropped``, not ``dead``.
        rng: the jitter's random source (tests pass a seeded one).
    """
    state: Literal["dead", "dropped"] = "dropped" if droppable else "dead"
    if kind == "permanent":
        return GiveUp(state, error)
    if attempts >= max_attempts:
        return GiveUp(state, error, attempts)
    delay = backoff_delay(attempts, base=base, cap=cap, retry_after=retry_after, rng=rng)
    return RetryAt(now + delay, delay, error)
