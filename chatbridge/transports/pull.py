"""The http-pull transport: agents with no inbound port fetch their turns and post replies.

Why our own broker instead of a queue library: a pulled turn is already a claimed, leased row
in the database (the ``TurnRunner`` holds it, renews its lease and writes its outcome); what
is left is handing the ``user_message`` frame to whichever poller asks first, taking it back
when that poller goes quiet, and matching the reply to the turn. That is a few dicts and
futures in one process, with the database lease as the durable layer underneath: if this
process dies, the turn's lease expires and a new process offers it again under the same
``message_id``.

- ``run_turn`` (called by the ``AgentHub`` for ``http-pull`` agents) publishes an *offer* and
  waits for the outcome until the turn's deadline.
- ``pull`` leases up to ``limit`` available offers to a caller for ``lease_seconds``; each
  lease has its own ``lease_id``. Two pollers never hold the same offer: the event loop runs
  ``pull`` to completion between awaits.
- A lease that runs out makes the offer available again (a *re-offer*), up to ``max_offers``
  times when the agent's policy sets one; after that the turn ends as ``AgentTimeout``
  (the route's fallback or handoff applies, and the failure is visible on the turn).
- ``reply`` takes any agent → bridge frame for a leased offer: chunks are collected (and
  passed on for live widgets), live frames and notices (protocol 1.3) are passed on in the
  turn's conversation, a turn-ending frame settles the offer.
- ``withdraw`` takes an offer back, leased or not (the pipeline cancelled the turn, e.g. a
  newer customer message superseded it): its ``run_turn`` raises ``TurnCancelled`` at once and
  the offer is gone, so no later poll gets it and a reply to it is refused as ``UnknownTurn``
  (404 ``unknown_turn`` on the reply endpoint). A poller is not told otherwise: nothing
  reaches it but its turns.

``PullTransport`` is an http-pull agent's ``AgentTransport``: its turns are offers in the
hub's one broker (``GET /api/agent/turns`` and the action API lease them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatbridge.errors import AgentTimeout, AgentUnavailable, TurnCancelled
from chatbridge.models import JsonObject
from chatbridge.protocol import (
    NOTICE_TYPES,
    AgentComplete,
    AgentHandoff,
    AgentMessage,
    AgentStreaming,
    ErrorMessage,
    FileComplete,
    FileError,
    FileProcessing,
    Handoff,
    NoReply,
    ProgressUpdate,
    StatusUpdate,
    SystemMessage,
    Typing,
    WarningMessage,
    parse_agent_frame,
)
from chatbridge.transports.base import (
    AgentOutcome,
    AgentStatus,
    AgentTransport,
    Capabilities,
    ChunkCallback,
    LiveCallback,
    NoticeCallback,
    TurnRequest,
    TypingCallback,
)
from chatbridge.transports.registry import spec
from chatbridge.transports.turns import outcome_of, placed

if TYPE_CHECKING:
    from chatbridge.transports.context import TransportContext

PULL_GRACE = 15.0
"""Seconds past the longest long-poll a puller still counts as connected without polling."""


class LeaseExpired(Exception):
    """The reply names a lease that is no longer the caller's (expired or re-offered)."""


class UnknownTurn(Exception):
    """No open turn with that id for this agent (never existed, or already answered)."""


@dataclass(frozen=True, slots=True)
class PullPolicy:
    lease_seconds: float
    max_offers: int | None = None  # None: offer again until the turn's deadline


@dataclass(eq=False, slots=True)
class Offer:
    req: TurnRequest
    result: asyncio.Future[AgentOutcome]
    policy: PullPolicy
    created_at: float = field(default_factory=time.time)
    offers: int = 0
    lease_id: str | None = None
    lease_expires_at: float = 0.0
    chunks: dict[int, str] = field(default_factory=dict)
    # set when the offer is leased, so ``run_turn`` learns when the lease will run out
    leased_signal: asyncio.Future[None] | None = None

    @property
    def key(self) -> str:
        return self.req.turn_key

    def leased(self, now: float) -> bool:
        return self.lease_id is not None and self.lease_expires_at > now

    def exhausted(self) -> bool:
        return self.policy.max_offers is not None and self.offers >= self.policy.max_offers

    def available(self, now: float) -> bool:
        return not self.result.done() and not self.leased(now) and not self.exhausted()


@dataclass(slots=True)
class _AgentQueue:
    offers: dict[str, Offer] = field(default_factory=dict)  # insertion order = turn order
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_seen: float | None = None
    answered: int = 0


class PullBroker:
    """Offers turns to polling agents (see the module docstring)."""

    def __init__(
        self,
        policy: Callable[[str], PullPolicy],
        *,
        on_chunk: ChunkCallback | None = None,
        on_typing: TypingCallback | None = None,
        on_live: LiveCallback | None = None,
        on_notice: NoticeCallback | None = None,
    ) -> None:
        self._policy = policy
        self._on_chunk = on_chunk
        self._on_typing = on_typing
        self._on_live = on_live
        self._on_notice = on_notice
        self._agents: dict[str, _AgentQueue] = {}
        self._closing = False
        self._polls_closing = False

    def _queue(self, agent_id: str) -> _AgentQueue:
        q = self._agents.get(agent_id)
        if q is None:
            q = self._agents[agent_id] = _AgentQueue()
        return q

    def _notify(self, q: _AgentQueue) -> None:
        q.changed.set()
        q.changed = asyncio.Event()

    # -- the pipeline side -------------------------------------------------------------------

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        """Offer ``req`` to the agent's pollers; return the outcome or raise when the deadline
        passes (``AgentUnavailable`` if nobody ever took it, ``AgentTimeout`` otherwise)."""
        if self._closing:
            raise AgentUnavailable("bridge is stopping")
        q = self._queue(req.agent_id)
        existing = q.offers.get(req.turn_key)
        if existing is not None:  # the same turn again (a lease renewed after a hiccup)
            return await asyncio.shield(existing.result)
        loop = asyncio.get_running_loop()
        offer = Offer(req, loop.create_future(), self._policy(req.agent_id))
        q.offers[req.turn_key] = offer
        self._notify(q)
        try:
            while True:
                now = time.time()
                if offer.result.done():
                    return offer.result.result()
                if offer.exhausted() and not offer.leased(now):
                    raise AgentTimeout(
                        f"not answered after {offer.offers} offer(s) of "
                        f"{offer.policy.lease_seconds:g}s"
                    )
                if now >= req.deadline:
                    if offer.offers == 0:
                        raise AgentUnavailable("no poller took the turn before the deadline")
                    raise AgentTimeout("pulled but not answered before the deadline")
                wake = req.deadline
                if offer.lease_id is not None and offer.lease_expires_at > now:
                    wake = min(wake, offer.lease_expires_at)
                if offer.leased_signal is None or offer.leased_signal.done():
                    offer.leased_signal = loop.create_future()
                waiters: set[asyncio.Future[Any]] = {offer.result, offer.leased_signal}
                await asyncio.wait(
                    waiters,
                    timeout=max(0.0, wake - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if offer.lease_id is not None and offer.lease_expires_at <= time.time():
                    offer.lease_id = None  # lease ran out: offer it again
                    self._notify(q)
        finally:
            q.offers.pop(req.turn_key, None)
            for fut in (offer.result, offer.leased_signal):
                if fut is not None and not fut.done():
                    fut.cancel()

    def end_polls(self) -> None:
        """Answer every waiting long-poll now (empty) and every later one at once: the
        server is shutting down and waits for open requests. Offers stay as they are."""
        self._polls_closing = True
        for q in self._agents.values():
            self._notify(q)

    def stop(self) -> None:
        self._closing = True
        for q in self._agents.values():
            for offer in q.offers.values():
                if not offer.result.done():
                    offer.result.set_exception(AgentUnavailable("bridge is stopping"))
            self._notify(q)

    # -- the poller side ---------------------------------------------------------------------

    def available(self, agent_id: str) -> int:
        """How many offers a poll could lease right now."""
        now = time.time()
        q = self._agents.get(agent_id)
        return sum(1 for o in q.offers.values() if o.available(now)) if q else 0

    def take(self, agent_id: str, limit: int, lease_seconds: float | None = None) -> list[Offer]:
        """Lease up to ``limit`` available offers, oldest first, without waiting."""
        q = self._queue(agent_id)
        now = time.time()
        q.last_seen = now
        taken: list[Offer] = []
        for offer in q.offers.values():
            if len(taken) >= limit:
                break
            if offer.available(now):
                self.lease(offer, now, lease_seconds)
                taken.append(offer)
        return taken

    def find(self, agent_id: str, turn_key: str) -> Offer | None:
        """The agent's offer of ``turn_key`` while its turn runs here."""
        q = self._agents.get(agent_id)
        return q.offers.get(turn_key) if q else None

    def open_offers(self, agent_id: str) -> list[Offer]:
        """The agent's offers whose turn is still open, in turn order (leased or not)."""
        q = self._agents.get(agent_id)
        return [o for o in q.offers.values() if not o.result.done()] if q else []

    def lease(self, offer: Offer, now: float, lease_seconds: float | None = None) -> None:
        """Lease one chosen offer (``take`` leases the oldest ones); its ``run_turn`` is woken
        to time the lease: offered again when it lapses, given up after the last offer."""
        offer.offers += 1
        offer.lease_id = os.urandom(12).hex()
        offer.lease_expires_at = now + (lease_seconds or offer.policy.lease_seconds)
        self._queue(offer.req.agent_id).last_seen = now
        if offer.leased_signal is not None and not offer.leased_signal.done():
            offer.leased_signal.set_result(None)

    async def pull(
        self, agent_id: str, *, limit: int, wait: float, lease_seconds: float | None = None
    ) -> list[Offer]:
        """``take``, waiting up to ``wait`` seconds for at least one offer."""
        deadline = time.monotonic() + wait
        while True:
            taken = self.take(agent_id, limit, lease_seconds)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0 or self._closing or self._polls_closing:
                return taken
            changed = self._queue(agent_id).changed
            try:
                # Wake now and then anyway: a lease may have run out without anyone noticing.
                await asyncio.wait_for(changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    def release(self, offers: list[Offer]) -> None:
        """Give back leases nobody will use (the poll's client hung up): offered again at
        once, and not counted as an offer."""
        for offer in offers:
            if offer.lease_id is not None and not offer.result.done():
                offer.lease_id = None
                offer.offers = max(0, offer.offers - 1)
        for agent_id in {o.req.agent_id for o in offers}:
            self._notify(self._queue(agent_id))

    def leased_for(self, agent_id: str, conversation_id: str) -> list[Offer]:
        """The offers of one conversation currently leased to (any poller of) ``agent_id``."""
        q = self._agents.get(agent_id)
        if q is None:
            return []
        now = time.time()
        return [
            o
            for o in q.offers.values()
            if o.req.conversation_id == conversation_id and o.leased(now)
        ]

    async def reply(
        self, agent_id: str, turn_key: str, lease_id: str | None, data: JsonObject
    ) -> str:
        """Apply one agent → bridge frame to a leased turn. Returns what happened.

        Raises:
            UnknownTurn: no open turn ``turn_key`` for this agent.
            LeaseExpired: ``lease_id`` is not the turn's current, unexpired lease.
            chatbridge.protocol.ProtocolError: the frame is not a valid agent message.
        """
        q = self._agents.get(agent_id)
        offer = q.offers.get(turn_key) if q else None
        if q is None or offer is None or offer.result.done():
            raise UnknownTurn(turn_key)
        now = time.time()
        if lease_id is None or offer.lease_id != lease_id or not offer.leased(now):
            raise LeaseExpired(turn_key)
        q.last_seen = now
        conversation = offer.req.conversation_id
        obj: JsonObject = {"message_id": turn_key, **data}
        if obj.get("type") in NOTICE_TYPES:  # posted for a turn: into that turn's conversation
            obj["conversation_id"] = conversation
        frame = parse_agent_frame(obj)
        # Any frame on a live lease shows the agent is still at it: the lease starts over, so
        # a long reply that keeps streaming (or sends typing) is not offered to someone else.
        offer.lease_expires_at = max(offer.lease_expires_at, now + offer.policy.lease_seconds)
        match frame:
            case AgentStreaming():
                if frame.stream_index not in offer.chunks:
                    offer.chunks[frame.stream_index] = frame.content
                    if self._on_chunk is not None:
                        await self._on_chunk(
                            turn_key, offer.req.conversation_id, frame.stream_index, frame.content
                        )
                return "chunk"
            case Typing():
                if self._on_typing is not None:
                    await self._on_typing(agent_id, offer.req.conversation_id, frame.on)
                return "typing"
            case (
                StatusUpdate() | ProgressUpdate() | FileProcessing() | FileComplete() | FileError()
            ):
                live = placed(frame.model_dump(mode="json", exclude_none=True), conversation)
                if self._on_live is not None and live is not None:
                    await self._on_live(agent_id, live)
                return "live"
            case SystemMessage() | WarningMessage():
                if self._on_notice is not None:
                    await self._on_notice(
                        agent_id, frame.model_dump(mode="json", exclude_none=True)
                    )
                return "notice"
            case (
                AgentMessage()
                | AgentComplete()
                | Handoff()
                | AgentHandoff()
                | NoReply()
                | ErrorMessage()
            ):
                outcome = outcome_of(frame, offer.chunks)
                offer.result.set_result(outcome)
                q.answered += 1
                return "answered"
            case _:
                return "ignored"

    def withdraw(self, agent_id: str, turn_key: str, reason: str = "superseded") -> bool:
        """Take back the open offer of ``turn_key`` (see the module docstring).

        Returns:
            True when an open offer was withdrawn; False for an unknown or ended turn.
        """
        q = self._agents.get(agent_id)
        offer = q.offers.get(turn_key) if q else None
        if q is None or offer is None or offer.result.done():
            return False
        offer.result.set_exception(TurnCancelled(turn_key, reason))
        offer.lease_id = None
        self._notify(q)
        return True

    def fail(self, agent_id: str, error: AgentUnavailable) -> None:
        """End every open offer of ``agent_id`` with ``error`` (its transport was closed)."""
        for offer in self.open_offers(agent_id):
            offer.result.set_exception(error)
        q = self._agents.get(agent_id)
        if q is not None:
            self._notify(q)

    def settle(self, offer: Offer, outcome: AgentOutcome) -> bool:
        """End a leased offer with ``outcome`` (the action API's ``outbox``)."""
        if offer.result.done():
            return False
        offer.result.set_result(outcome)
        self._queue(offer.req.agent_id).answered += 1
        return True

    # -- status ------------------------------------------------------------------------------

    def last_seen(self, agent_id: str) -> float | None:
        q = self._agents.get(agent_id)
        return q.last_seen if q else None

    def answered(self, agent_id: str) -> int:
        q = self._agents.get(agent_id)
        return q.answered if q else 0

    def in_flight(self, agent_id: str) -> int:
        q = self._agents.get(agent_id)
        return len(q.offers) if q else 0


class PullTransport(AgentTransport):
    """An agent that polls for its turns and posts its replies (see the module docstring)."""

    spec = spec("http-pull")
    capabilities = Capabilities(events=False, cancel=False)  # a poller gets only its turns

    def __init__(
        self,
        agent_id: str,
        url: str | None,
        options: JsonObject,
        context: TransportContext,
    ) -> None:
        super().__init__(agent_id, url, options)
        self.context = context

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        if self.closed:
            raise AgentUnavailable(f"agent {self.agent_id!r} transport is closed")
        return await self.context.pull.run_turn(req)

    @property
    def connected(self) -> bool:
        """Polled lately: within the longest long-poll and a grace period."""
        seen = self.context.pull.last_seen(self.agent_id)
        if self.closed or seen is None:
            return False
        return time.time() - seen < self.context.settings.pull_max_wait + PULL_GRACE

    def cancel_turn(self, turn_key: str, conversation_id: str, reason: str = "superseded") -> bool:
        return self.context.pull.withdraw(self.agent_id, turn_key, reason)

    def in_flight(self) -> int:
        return self.context.pull.in_flight(self.agent_id)

    def status(self) -> AgentStatus:
        broker = self.context.pull
        self.stats.last_seen = broker.last_seen(self.agent_id)
        self.stats.answered = broker.answered(self.agent_id)
        return super().status()

    async def aclose(self, reason: str = "bridge shutting down") -> None:
        self.closed = True
        self.context.pull.fail(
            self.agent_id, AgentUnavailable(f"agent {self.agent_id!r}: {reason}")
        )
