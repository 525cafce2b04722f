"""What the HTTP agent transports (http-webhook, openai) share: which answers are worth another
try, how a failure reads in logs, and the pause before the next try of a turn's call."""

from __future__ import annotations

import logging
import time

from chatbridge.backoff import backoff_delay
from chatbridge.transports.base import TurnRequest
from chatbridge.transports.log import log_event

# Statuses that say "not now" rather than "no": the same call may succeed later.
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


def describe(exc: BaseException) -> str:
    """``"ConnectError: …"``, or just the type when the exception says nothing."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def retry_pause(
    req: TurnRequest,
    attempt: int,
    problem: str,
    retry_after: float | None,
    *,
    base: float,
    cap: float,
    what: str,
) -> float | None:
    """Seconds to wait before trying ``req``'s call again (full jitter, ``Retry-After`` as a
    floor), logged with ``what``; None when waiting would pass the turn's deadline."""
    delay = backoff_delay(attempt, base=base, cap=cap, retry_after=retry_after)
    log_event(
        logging.WARNING,
        f"{what}; retrying",
        req.agent_id,
        req.turn_key,
        problem=problem,
        attempt=attempt,
        retry_in=round(delay, 2),
    )
    return None if time.time() + delay >= req.deadline else delay
