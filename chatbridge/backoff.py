"""Retry timing: exponential backoff with full jitter, honouring a server's Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Jitter from a generator of our own: the global ``random`` state belongs to the application
# (and to test tools such as Hypothesis, which treat a change to it as a bug).
_JITTER = random.Random()


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
    r = rng or _JITTER
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = r.uniform(0, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, cap * 10))
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds, or an HTTP date (a past one is
    0). None when absent or unreadable (a negative delta, NaN, not a date). Every HTTP client
    of the bridge (Chatwoot, WhatsApp gateways, the pull client) reads the header with this."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if seconds != seconds or seconds < 0:  # NaN, or a negative delta
        return None
    return seconds
