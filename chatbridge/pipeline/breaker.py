"""A per-agent circuit breaker: stop hammering an agent that keeps failing.

closed ──N consecutive failures──▶ open ──reset_seconds──▶ half-open ──success──▶ closed
                                     ▲                         │
                                     └────────failure──────────┘
While open, turns fail fast to the route's fallback. In half-open one trial turn goes through.
Time is passed in, so the state machine is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int
    reset_seconds: float
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        if now - self.opened_at >= self.reset_seconds:
            return "half_open"
        return "open"

    def allow(self, now: float) -> bool:
        """May a turn be sent now? In half-open only one trial at a time."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half_open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def record_failure(self, now: float) -> None:
        self.trial_in_flight = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            self.opened_at = now
