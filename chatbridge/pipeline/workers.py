"""The two workers: one runs agent turns, one sends deliveries. Both claim work with leases.

Each loop wakes on an in-process event (set when new work is written) or every
``poll_interval`` (work written by another process, retries coming due), claims as much as
its free concurrency allows, and runs each item as its own task. ``run_until_idle`` is the
drain-and-return mode tests use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from chatbridge import clock
from chatbridge.backoff import backoff_delay
from chatbridge.errors import (
    AgentElsewhere,
    AgentTimeout,
    AgentUnavailable,
    PermanentDelivery,
    RetryableDelivery,
)
from chatbridge.models import Attachment, ConversationRef, OutboundAction
from chatbridge.pipeline.decisions import TurnPlan, plan_outcome
from chatbridge.store.outage import hold_on, is_outage
from chatbridge.store.records import ClaimedDelivery, ClaimedTurn, CompletedTurn, Route
from chatbridge.transports.base import AgentOutcome, TurnRequest

if TYPE_CHECKING:
    from chatbridge.channels.base import ChannelAdapter
    from chatbridge.config import Settings
    from chatbridge.metrics import Metrics
    from chatbridge.pipeline.breaker import CircuitBreaker
    from chatbridge.pipeline.leases import HeldWork, SendMarks
    from chatbridge.store import Store
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
    def note_sending(self, d: ClaimedDelivery) -> None: ...
    def note_sent(self, d: ClaimedDelivery) -> None: ...
    async def wait_for_receipt(self, idempotency_key: str, timeout: float) -> None: ...


T = TypeVar("T")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class ClaimLoop(Generic[T]):
    """Claim-and-run loop shared by both workers."""

    def __init__(
        self,
        name: str,
        *,
        claim: Callable[[int], Awaitable[list[T]]],
        run: Callable[[T], Awaitable[None]],
        concurrency: int,
        poll_interval: float,
        batch: int = 100,
        coalesce: float = 0.001,
    ) -> None:
        self.name = name
        self._claim = claim
        self._run = run
        self._concurrency = concurrency
        self._poll = poll_interval
        self._batch = batch
        self._coalesce = coalesce
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots_free = asyncio.Event()
        self._slots_free.set()
        self.running = False
        self.claim_failures = 0  # in a row; the loop backs off while the store is away

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _claim_once(self) -> int:
        free = self._concurrency - len(self._tasks)
        if free <= 0:
            return 0
        try:
            items = await self._claim(min(free, self._batch))
        except Exception as exc:
            self.claim_failures += 1
            if self.claim_failures == 1 or self.claim_failures % 20 == 0:
                log.warning(
                    "%s: claim failed (%d in a row): %s: %s",
                    self.name,
                    self.claim_failures,
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                    exc_info=not is_outage(exc),
                )
            return 0
        self.claim_failures = 0
        for item in items:
            task = asyncio.create_task(self._guarded(item))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        if len(self._tasks) >= self._concurrency:
            self._slots_free.clear()
        return len(items)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots_free.set()
        self._wake.set()

    async def _guarded(self, item: T) -> None:
        try:
            await self._run(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: unexpected error", self.name)

    async def run(self) -> None:
        """Claim whenever woken (or every ``poll_interval``).

        Wake-ups are coalesced: under load every finished item and every new message wakes
        the loop, and one claim a millisecond serves them all far cheaper than one claim each.
        """
        self.running = True
        try:
            while True:
                self._wake.clear()
                claimed = await self._claim_once()
                if claimed >= self._batch and len(self._tasks) < self._concurrency:
                    continue  # a full batch: there may be more waiting
                if len(self._tasks) >= self._concurrency:
                    await self._slots_free.wait()
                    continue
                if self.claim_failures:
                    # the store is away: wake-ups would only hammer it; try again in a while
                    await asyncio.sleep(min(5.0, self._poll * 2 ** min(self.claim_failures, 6)))
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                except TimeoutError:
                    continue
                await asyncio.sleep(self._coalesce)
        finally:
            self.running = False

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for in-flight items, then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def run_until_idle(self) -> int:
        """Claim and finish everything due now; return how many items ran (tests, burst)."""
        total = 0
        while True:
            n = await self._claim_once()
            total += n
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            elif n == 0:
                return total


def _log_failure(what: str, conversation_id: str, exc: Exception) -> None:
    """A runner's unhandled error: the traceback only when it is not a database outage."""
    log.error(
        "%s: failed (%s: %s); giving it back conversation=%s",
        what,
        type(exc).__name__,
        exc,
        conversation_id,
        exc_info=not is_outage(exc),
    )


def build_user_message(turn: ClaimedTurn, deadline: float) -> dict[str, Any]:
    """The ``user_message`` frame of protocol v1 for a claimed turn."""
    msgs = turn.messages
    contact = turn.contact
    context = dict(msgs[-1].meta.get("context", {})) if msgs else {}
    return {
        "type": "user_message",
        "protocol": "chatbridge/1",
        "message_id": turn.key,
        "seq": turn.id,
        "conversation_id": turn.conversation_id,
        "inbox_id": turn.conversation.inbox_id,
        "channel": turn.conversation.channel,
        "content": "\n".join(m.text for m in msgs),
        "messages": [
            {
                "id": m.id,
                "content": m.text,
                "created_at": iso(m.created_at),
                "attachments": m.attachments,
            }
            for m in msgs
        ],
        "sender": (
            {
                "id": contact.external_id,
                "name": contact.name,
                "email": contact.email,
                "phone": contact.phone,
            }
            if contact
            else None
        ),
        "context": context,
        "response_mode": turn.response_mode,
        "deadline": iso(deadline),
        "timestamp": iso(clock.now()),
    }


def to_action(d: ClaimedDelivery) -> OutboundAction:
    conv = d.conversation
    return OutboundAction(
        kind=d.kind,  # type: ignore[arg-type]
        conversation=ConversationRef(
            id=conv.id,
            channel=conv.channel,
            channel_key=conv.channel_key,
            inbox_id=conv.inbox_id,
            metadata=conv.meta,
        ),
        idempotency_key=d.idempotency_key,
        text=d.text,
        attachments=[Attachment(**a) for a in d.payload.get("attachments", [])],
        metadata=d.payload.get("metadata", {}),
    )


class TypingStart:
    """A turn's typing indicator, shown only if its agent is still thinking after ``delay``.

    A fast agent's reply goes out alone: no ``typing_on`` row, no pair of channel calls
    around a reply the customer sees at once. A slow one's ``typing_on`` is written (fenced
    by the turn's lease) while it thinks, so it goes out before the reply and its
    ``typing_off`` after.
    """

    def __init__(self, bridge: Host, turn: ClaimedTurn, delay: float) -> None:
        self._b = bridge
        self._turn = turn
        self._task: asyncio.Task[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        if delay <= 0:
            self._begin()
        else:
            self._timer = asyncio.get_running_loop().call_later(delay, self._begin)

    def _begin(self) -> None:
        self._timer = None
        self._task = asyncio.create_task(self._write())

    async def _write(self) -> bool:
        b, turn = self._b, self._turn
        try:
            written: bool = await b.store.start_typing(
                turn.id, b.settings.instance_id, turn.conversation_id
            )
        except Exception as exc:  # a typing indicator is not worth a retry
            log.info("turn %s: typing indicator not written: %s", turn.key, exc)
            return False
        if written:
            b.wake_deliveries()
        return written

    async def settle(self) -> bool:
        """Stop waiting; True if a ``typing_on`` may exist (so its ``typing_off`` is due)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            return False
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            raise
        except Exception:
            return True


class TurnRunner:
    """Runs one claimed turn on its agent and writes the outcome (see ``Bridge``).

    While it runs, the bridge renews the turn's lease (``Bridge.held``). If the run fails in a
    way it cannot handle (a bug, the database away when the turn is handed back), the turn is
    given back with backoff, or — when even that cannot be written — its lease simply runs
    out and the turn is claimed again. Nothing is left leased to a task that no longer runs.
    """

    def __init__(self, bridge: Host) -> None:
        self.b = bridge

    async def run(self, turn: ClaimedTurn) -> None:
        b = self.b
        try:  # held since its claim (``Bridge._claim_turns``)
            await self._run(turn)
        except Exception as exc:
            _log_failure(f"turn {turn.key}", turn.conversation_id, exc)
            b.metrics.errors.labels("turn_failed").inc()
            if turn.attempts >= b.settings.delivery_max_attempts:
                await self._give_up(turn)
            else:
                await self._give_back(turn)
        finally:
            b.held.drop_turn(turn.id)

    async def _give_up(self, turn: ClaimedTurn) -> None:
        """A turn that failed the same way attempt after attempt (say, an agent's answer the
        store refuses) ends by its route's failure rule, as an agent error would: the
        customer gets the fallback (or a human), and the conversation moves on."""
        b = self.b
        s = b.settings
        route = b.route_by_id(turn.route_id) or b.default_route(turn)
        plan = plan_outcome(
            None,
            route=route,
            default_fallback=s.fallback_text,
            max_attempts=s.delivery_max_attempts,
            failure="internal_error",
        )
        try:
            result = await self._complete(
                turn, plan, error=f"gave up after {turn.attempts} attempts: {plan.error}"
            )
        except Exception:
            log.warning("turn %s: could not be ended; its lease will run out", turn.key)
            return
        if result.ok:
            log.error(
                "turn %s gave up after %d attempts conversation=%s",
                turn.key,
                turn.attempts,
                turn.conversation_id,
            )
            b.metrics.turns.labels(turn.agent_id, plan.outcome).inc()
            b.wake_deliveries()
            b.resolve_waiters(turn.id, plan.outcome, plan.reply_text)

    async def _complete(
        self,
        turn: ClaimedTurn,
        plan: TurnPlan,
        *,
        meta: dict[str, Any] | None = None,
        error: str | None = None,
        typing: bool = True,
    ) -> CompletedTurn:
        """Write ``plan`` as the turn's outcome (fenced by our lease)."""
        return await self.b.store.complete_turn(
            turn.id,
            self.b.settings.instance_id,
            state=plan.state,
            outcome=plan.outcome,
            reply_text=plan.reply_text,
            reply_attachments=plan.attachments,
            reply_meta=meta or {},
            deliveries=plan.deliveries,
            handoff=plan.handoff,
            error=error if error is not None else plan.error,
            typing=typing,
        )

    async def _give_back(self, turn: ClaimedTurn) -> None:
        s = self.b.settings
        delay = backoff_delay(turn.attempts, base=s.retry_base_seconds, cap=s.retry_max_seconds)
        try:
            await self.b.store.release_turn(turn.id, s.instance_id, delay=delay, count_attempt=True)
        except Exception:
            log.warning("turn %s: could not be given back; its lease will run out", turn.key)
            return
        self.b.schedule_wake(delay, what="turns")

    async def _run(self, turn: ClaimedTurn) -> None:
        b = self.b
        s = b.settings
        route: Route | None = b.route_by_id(turn.route_id) or b.route_for(
            turn.conversation.channel, turn.conversation.inbox_id
        )
        agent_id = route.agent_id if route else turn.agent_id
        outcome: AgentOutcome | None = None
        failure: str | None = None
        typed = False  # whether this attempt wrote a typing_on
        started = clock.now()
        if route is None:
            failure = "route_deleted"
        else:
            breaker = b.breaker(agent_id)
            deadline = started + route.timeout_seconds
            if not breaker.allow(started):
                failure = "circuit_open"
            else:
                request = TurnRequest(
                    turn_key=turn.key,
                    seq=turn.id,
                    agent_id=agent_id,
                    conversation_id=turn.conversation_id,
                    frame=build_user_message(turn, deadline),
                    deadline=deadline,
                )
                typing = (
                    TypingStart(b, turn, s.typing_delay_seconds) if b.shows_typing(turn) else None
                )
                try:
                    outcome = await b.hub.run_turn(request)
                except AgentElsewhere as exc:
                    await b.hand_back(turn, exc.replica)
                    return
                except (AgentUnavailable, AgentTimeout) as exc:
                    failure = exc.kind
                finally:
                    if typing is not None:
                        typed = await typing.settle()
                if outcome is not None and outcome.kind != "error":
                    breaker.record_success()
                    b.metrics.turn_seconds.labels(agent_id).observe(clock.now() - started)
                else:
                    breaker.record_failure(clock.now())
        if failure or (outcome is not None and outcome.kind == "error"):
            kind = failure or f"error:{outcome.error_code if outcome else ''}"
            b.metrics.agent_errors.labels(agent_id, kind.split(":")[0]).inc()
            log.warning(
                "turn %s failed (%s) conversation=%s agent=%s",
                turn.key,
                kind,
                turn.conversation_id,
                agent_id,
            )
        plan = plan_outcome(
            outcome,
            route=route or b.default_route(turn),
            default_fallback=s.fallback_text,
            max_attempts=s.delivery_max_attempts,
            failure=failure,
        )

        async def complete() -> CompletedTurn:
            return await self._complete(
                turn,
                plan,
                meta=outcome.metadata if outcome else {},
                # an earlier attempt may have shown typing too
                typing=typed or turn.attempts > 1,
            )

        # The agent's answer is in hand: keep it through a database outage.
        result = await hold_on(
            complete,
            what=f"turn {turn.key}: writing its outcome",
            give_up_after=s.store_retry_seconds,
        )
        if not result.ok:
            log.warning("turn %s: lease lost before completion; result dropped", turn.key)
            b.metrics.errors.labels("lease_lost").inc()
            return
        b.metrics.turns.labels(agent_id, plan.outcome).inc()
        b.wake_deliveries()
        b.resolve_waiters(turn.id, plan.outcome, plan.reply_text)
        if plan.handoff:
            await b.notify_agent_owner(agent_id, turn.conversation_id, "human", "handoff")


class DeliveryRunner:
    """Sends one claimed delivery through its channel adapter.

    A message delivery is marked "send started" (fenced, committed) right before the channel
    is called. After a crash, only a delivery so marked whose receipt never came (the
    channel's echo of our own message, ``Bridge.record_receipt``) is uncertain; it looks for
    its receipt — in the store, then by asking the channel (``already_sent``) — for up to
    ``receipt_wait_seconds`` before it is sent again.
    """

    def __init__(self, bridge: Host) -> None:
        self.b = bridge

    async def run(self, d: ClaimedDelivery) -> None:
        """Send ``d``, then the deliveries of its conversation that follow it, one by one."""
        b = self.b
        current: ClaimedDelivery | None = d
        while current is not None:
            b.held.hold_delivery(current.id)
            following: ClaimedDelivery | None = None
            try:
                following = await self._send(current)
            except Exception as exc:
                _log_failure(f"delivery {current.id}", current.conversation_id, exc)
                b.metrics.errors.labels("delivery_failed").inc()
                await self._give_back(current)
            finally:
                b.held.drop_delivery(current.id)
            current = following

    async def _give_back(self, d: ClaimedDelivery) -> None:
        """After an error the runner could not handle: if the send may have begun, leave the
        lease to run out (the next claim then looks for a receipt); else retry later."""
        b = self.b
        s = b.settings
        if b.held.send_started(d.id):
            return
        if d.attempts >= d.max_attempts:
            # the same error every time (a reply the runner cannot handle): dead-letter it
            # rather than hold its conversation's later replies back for ever
            try:
                await b.store.fail_delivery(
                    d.id,
                    s.instance_id,
                    error=f"gave up after {d.attempts} attempts: internal error",
                    state="dead",
                )
            except Exception:
                log.warning("delivery %s: could not be dead-lettered; its lease will run out", d.id)
                return
            self._count_failure(d, "dead", "internal error")
            return
        delay = backoff_delay(d.attempts, base=s.retry_base_seconds, cap=s.retry_max_seconds)
        try:
            await b.store.retry_delivery(
                d.id, s.instance_id, next_attempt_at=clock.now() + delay, error="internal error"
            )
        except Exception:
            log.warning("delivery %s: could not be given back; its lease will run out", d.id)
            return
        b.schedule_wake(delay)

    async def _persist(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        return await hold_on(op, what=what, give_up_after=self.b.settings.store_retry_seconds)

    async def _send(self, d: ClaimedDelivery) -> ClaimedDelivery | None:
        """Send one delivery; returns the conversation's next one if it was leased with it."""
        b = self.b
        s = b.settings
        me = s.instance_id
        channel = d.conversation.channel
        adapter = b.channels.get(channel)
        final_state = "dropped" if d.kind.startswith("typing") else "dead"
        if adapter is None:
            await self._persist(
                lambda: b.store.fail_delivery(
                    d.id, me, error=f"no adapter for {channel}", state=final_state
                ),
                f"delivery {d.id}: dead-lettering",
            )
            b.wake_deliveries()
            return None
        action = to_action(d)
        if d.kind == "message":
            there, external_id = await self._receipt(d, adapter, action)
            if there:
                log.info("delivery %s already at %s; not sending again", d.id, channel)
                b.metrics.deliveries.labels(channel, d.kind, "already_sent").inc()
                return await self._finish(d, external_id)
            if not await b.send_marks.mark(d.id):
                log.warning("delivery %s: lease lost before sending; not sent", d.id)
                b.metrics.errors.labels("lease_lost").inc()
                return None
            b.held.started(d.id)
        b.note_sending(d)
        started = time.perf_counter()
        try:
            result = await adapter.send(action)
        except RetryableDelivery as exc:
            await self._retry_or_fail(d, str(exc), exc.retry_after, final_state)
            return None
        except PermanentDelivery as exc:
            error = str(exc)
            await self._persist(
                lambda: b.store.fail_delivery(d.id, me, error=error, state=final_state),
                f"delivery {d.id}: dead-lettering",
            )
            self._count_failure(d, final_state, error)
            return None
        except Exception as exc:  # an adapter bug must not lose the delivery
            log.exception("delivery %s: unexpected adapter error", d.id)
            await self._retry_or_fail(d, f"{type(exc).__name__}: {exc}", None, final_state)
            return None
        finally:
            b.note_sent(d)
        b.metrics.delivery_seconds.labels(channel).observe(time.perf_counter() - started)
        b.metrics.deliveries.labels(channel, d.kind, "ok").inc()
        return await self._finish(d, result.external_id)

    async def _receipt(
        self, d: ClaimedDelivery, adapter: Any, action: OutboundAction
    ) -> tuple[bool, str | None]:
        """Whether ``d`` is known to be at the channel already, and the channel's id for it.

        Only a delivery with a receipt, or one whose earlier send began and never finished
        (``uncertain``), can be there; the others are not looked up at all.
        """
        if d.receipt_at is not None:
            return True, d.receipt_external_id
        if not d.uncertain:
            return False, None
        b = self.b
        channel = d.conversation.channel
        log.info(
            "delivery %s: an earlier send was cut off; looking for its receipt conversation=%s",
            d.id,
            d.conversation_id,
        )
        seen = await self._ask_channel(adapter, action)
        if seen is not None:
            return seen, None  # the channel knows (or a repeat is harmless): no waiting
        until = (d.send_started_at or clock.now()) + b.settings.receipt_wait_seconds
        while True:
            receipt_at, external_id = await b.store.delivery_receipt(d.id)
            if receipt_at is not None:
                return True, external_id
            remaining = until - clock.now()
            if remaining <= 0:
                break
            await b.wait_for_receipt(d.idempotency_key, min(remaining, 0.25))
        if await self._ask_channel(adapter, action):
            return True, None
        b.metrics.delivery_uncertain.labels(channel).inc()
        log.warning(
            "delivery %s: no receipt from %s within %.1fs of the cut-off send; sending again"
            " conversation=%s",
            d.id,
            channel,
            b.settings.receipt_wait_seconds,
            d.conversation_id,
        )
        return False, None

    @staticmethod
    async def _ask_channel(adapter: Any, action: OutboundAction) -> bool | None:
        try:
            seen: bool | None = await adapter.already_sent(action)
        except Exception:
            log.warning("already_sent check failed", exc_info=True)
            return None
        return seen

    async def _finish(self, d: ClaimedDelivery, external_id: str | None) -> ClaimedDelivery | None:
        s = self.b.settings

        async def finish() -> tuple[bool, ClaimedDelivery | None]:
            result: tuple[bool, ClaimedDelivery | None] = await self.b.store.finish_delivery(
                d.id,
                s.instance_id,
                external_id=external_id,
                claim_next=d,
                lease_seconds=s.lease_seconds,
            )
            return result

        # The send is done: keep that knowledge through a database outage.
        _, following = await self._persist(finish, f"delivery {d.id}: recording the send")
        if following is not None:
            self.b.held.hold_delivery(following.id)
        return following

    async def _retry_or_fail(
        self, d: ClaimedDelivery, error: str, retry_after: float | None, final_state: str
    ) -> None:
        b = self.b
        s = b.settings
        channel = d.conversation.channel
        if d.attempts >= d.max_attempts:
            await self._persist(
                lambda: b.store.fail_delivery(
                    d.id,
                    s.instance_id,
                    error=f"gave up after {d.attempts} attempts: {error}",
                    state=final_state,
                ),
                f"delivery {d.id}: dead-lettering",
            )
            self._count_failure(d, final_state, error)
            return
        delay = backoff_delay(
            d.attempts, base=s.retry_base_seconds, cap=s.retry_max_seconds, retry_after=retry_after
        )
        b.metrics.deliveries.labels(channel, d.kind, "retry").inc()
        log.info(
            "delivery %s (%s) attempt %d failed: %s; retry in %.2fs conversation=%s",
            d.id,
            d.kind,
            d.attempts,
            error,
            delay,
            d.conversation_id,
        )
        await self._persist(
            lambda: b.store.retry_delivery(
                d.id, s.instance_id, next_attempt_at=clock.now() + delay, error=error
            ),
            f"delivery {d.id}: scheduling a retry",
        )
        b.schedule_wake(delay)

    def _count_failure(self, d: ClaimedDelivery, state: str, error: str) -> None:
        b = self.b
        channel = d.conversation.channel
        b.metrics.deliveries.labels(channel, d.kind, state).inc()
        if state == "dead":
            b.metrics.dead_letters.labels(channel).inc()
            log.error(
                "delivery %s dead-lettered: %s conversation=%s", d.id, error, d.conversation_id
            )
        b.wake_deliveries()
