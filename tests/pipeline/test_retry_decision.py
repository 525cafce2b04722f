"""The retry decision (``chatbridge.retry.decide_retry``), property by property: it never
retries past the last attempt, a permanent failure ends the work at once, the backoff stays
within its ceiling and grows with the attempts, and a ``Retry-After`` is a (capped) floor."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from chatbridge.retry import GiveUp, RetryAt, decide_retry

attempts_st = st.integers(min_value=1, max_value=60)
seconds = st.floats(min_value=0.001, max_value=3600.0, allow_nan=False, allow_infinity=False)
now_st = st.floats(min_value=0.0, max_value=4e9, allow_nan=False, allow_infinity=False)
seeds = st.integers(min_value=0, max_value=2**32)


def ceiling(attempts: int, base: float, cap: float) -> float:
    """The largest backoff of attempt ``attempts`` (full jitter draws below it)."""
    return min(cap, base * 2 ** (attempts - 1))


@given(attempts_st, st.integers(min_value=1, max_value=60), seconds, seconds, st.booleans())
def test_a_retryable_failure_is_retried_only_while_attempts_are_left(
    attempts: int, max_attempts: int, base: float, cap: float, droppable: bool
) -> None:
    d = decide_retry(
        attempts=attempts,
        max_attempts=max_attempts,
        kind="retryable",
        error="HTTP 503",
        now=100.0,
        base=base,
        cap=cap,
        droppable=droppable,
    )
    if attempts < max_attempts:
        assert isinstance(d, RetryAt)
    else:
        assert d == GiveUp("dropped" if droppable else "dead", "HTTP 503", attempts)
        assert d.exhausted
        assert d.reason == f"gave up after {attempts} attempts: HTTP 503"


@given(attempts_st, st.integers(min_value=1, max_value=60), st.booleans(), st.text(max_size=40))
def test_a_permanent_failure_ends_the_work_at_once(
    attempts: int, max_attempts: int, droppable: bool, error: str
) -> None:
    d = decide_retry(
        attempts=attempts,
        max_attempts=max_attempts,
        kind="permanent",
        error=error,
        now=0.0,
        base=1.0,
        cap=60.0,
        retry_after=5.0,
        droppable=droppable,
    )
    assert d == GiveUp("dropped" if droppable else "dead", error)
    assert not d.exhausted and d.reason == error  # no "gave up after": it never retried


@given(attempts_st, seconds, seconds, now_st, seeds)
def test_the_delay_is_jittered_below_a_doubling_capped_ceiling(
    attempts: int, base: float, cap: float, now: float, seed: int
) -> None:
    d = decide_retry(
        attempts=attempts,
        max_attempts=attempts + 1,
        kind="retryable",
        error="timeout",
        now=now,
        base=base,
        cap=cap,
        rng=random.Random(seed),
    )
    assert isinstance(d, RetryAt) and d.error == "timeout"
    assert 0.0 <= d.delay <= ceiling(attempts, base, cap)
    assert d.at == now + d.delay


@given(attempts_st, seconds, seconds, seeds)
def test_the_delay_never_shrinks_as_attempts_grow(
    attempts: int, base: float, cap: float, seed: int
) -> None:
    """For the same draw of the jitter, a later attempt waits at least as long: the
    expected delay (half the ceiling) is non-decreasing in the attempts."""

    def delay(n: int) -> float:
        d = decide_retry(
            attempts=n,
            max_attempts=100,
            kind="retryable",
            error="x",
            now=0.0,
            base=base,
            cap=cap,
            rng=random.Random(seed),
        )
        assert isinstance(d, RetryAt)
        return d.delay

    assert delay(attempts) <= delay(attempts + 1)
    assert ceiling(attempts, base, cap) <= ceiling(attempts + 1, base, cap)


@given(attempts_st, seconds, seconds, st.floats(min_value=0.0, max_value=1e9), seeds)
def test_retry_after_is_a_floor_capped_at_ten_times_the_backoff_cap(
    attempts: int, base: float, cap: float, retry_after: float, seed: int
) -> None:
    d = decide_retry(
        attempts=attempts,
        max_attempts=attempts + 1,
        kind="retryable",
        error="HTTP 429",
        now=0.0,
        base=base,
        cap=cap,
        retry_after=retry_after,
        rng=random.Random(seed),
    )
    assert isinstance(d, RetryAt)
    floor = min(retry_after, cap * 10)
    assert d.delay >= floor  # never sooner than the server asked (within the cap)
    assert d.delay <= max(floor, ceiling(attempts, base, cap))  # never later than needed


def test_a_silly_retry_after_is_capped() -> None:
    d = decide_retry(
        attempts=1,
        max_attempts=5,
        kind="retryable",
        error="HTTP 429",
        now=10.0,
        base=1.0,
        cap=300.0,
        retry_after=10**9,
    )
    assert d == RetryAt(10.0 + 3000.0, 3000.0, "HTTP 429")


@given(attempts_st, seconds, seconds, seeds)
def test_the_same_random_source_gives_the_same_decision(
    attempts: int, base: float, cap: float, seed: int
) -> None:
    def decide() -> object:
        return decide_retry(
            attempts=attempts,
            max_attempts=attempts + 1,
            kind="retryable",
            error="x",
            now=1.0,
            base=base,
            cap=cap,
            rng=random.Random(seed),
        )

    assert decide() == decide()
