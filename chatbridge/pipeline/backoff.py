"""Retry timing: exponential backoff with full jitter, honouring a server's Retry-After."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1).

    Full jitter (uniform in ``[0, min(cap, base * 2**(attempt-1))]``) spreads retries of many
    deliveries that failed together. A ``Retry-After`` is a floor: we never come back sooner
    than the server asked, but never later than ``cap`` past it either.
    """
    r = rng or random
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = r.uniform(0, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, cap * 10))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only); None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
