"""What the workers' runners (``TurnRunner``, ``DeliveryRunner``) need of the service that
runs them, and how they report a failure they could not handle."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from chatbridge.store.outage import is_outage

if TYPE_CHECKING:
    from chatbridge.channels.base import ChannelAdapter
    from chatbridge.config import Settings
    from chatbridge.metrics import Metrics
    from chatbridge.pipeline.breaker import CircuitBreaker
    from chatbridge.pipeline.leases import HeldWork, SendMarks
    from chatbridge.store import Store
    from chatbridge.store.records import ClaimedTurn, Route
    from chatbridge.transports.hub import AgentHub

log = logging.getLogger("chatbridge.workers")


class Host(Protocol):
    """What the runners use of the service that runs them (``Bridge``): its parts, the
    route table, and the wake-ups and notices a finished item sends on."""

    settings: Settings
    metrics: Metrics
    store: Store
    hub: AgentHub
    held: HeldWork
    send_marks: SendMarks
    channels: dict[str, ChannelAdapter]

    def route_by_id(self, route_id: int | None) -> Route | None: ...
    def route_for(self, channel: str, inbox_id: int) -> Route | None: ...
    def default_route(self, turn: ClaimedTurn) -> Route: ...
    def breaker(self, agent_id: str) -> CircuitBreaker: ...
    def shows_typing(self, turn: ClaimedTurn) -> bool: ...
    def wake_deliveries(self) -> None: ...
    def schedule_wake(self, delay: float, what: str = "deliveries") -> None: ...
    async def hand_back(self, turn: ClaimedTurn, replica: str) -> None: ...
    def resolve_waiters(self, turn_id: int, outcome: str, text: str | None) -> None: ...
    async def notify_agent_owner(
        self, agent_id: str, conversation_id: str, owner: str, reason: str
    ) -> None: ...
    async def wait_for_receipt(self, idempotency_key: str, timeout: float) -> None: ...


def log_failure(what: str, conversation_id: str, exc: Exception) -> None:
    """A runner's unhandled error: the traceback only when it is not a database outage."""
    log.error(
        "%s: failed (%s: %s); giving it back conversation=%s",
        what,
        type(exc).__name__,
        exc,
        conversation_id,
        exc_info=not is_outage(exc),
    )
