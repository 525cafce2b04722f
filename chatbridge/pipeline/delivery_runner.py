"""The delivery runner: one claimed delivery sent through its channel, then the deliveries of
its conversation that follow it, one by one, in order.

A failed send is settled by the retry decision (``chatbridge.retry``): retried with backoff
(honouring the channel's ``Retry-After``), or ended — dead-lettered, or dropped for a typing
indicator.

What a channel cannot show is finished without a send (``Capabilities``): a typing indicator
where there is none, a private note for the human team where the channel keeps none. A
paced reply's ``typing_on`` (payload ``hold_ms``, ``pipeline.decisions.paced_parts``) holds
the conversation's next delivery — its part — back that long once it is done, shown or not:
the pause is written with the finish, and no lease is held while it runs.

A reply with rich data (protocol 1.3: cards, quick replies, a table, a chart) keeps its
``data`` on the delivery; the web chat renders it from the stored message, every other
channel is sent ``richdata.text_fallback`` of it as the text (``with_data_text``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from chatbridge import clock, logs, tracing
from chatbridge.channels.interactive import with_numbered_choices
from chatbridge.channels.media_links import with_signed_links
from chatbridge.channels.whatsapp.templates import as_text_action
from chatbridge.errors import PermanentDelivery, RetryableDelivery
from chatbridge.models import Attachment, ConversationRef, OutboundAction
from chatbridge.pipeline.host import log_failure
from chatbridge.retry import FailureKind, GiveUp, RetryDecision, decide_retry
from chatbridge.richdata import text_fallback
from chatbridge.store.conversations import OFFER_KEY
from chatbridge.store.outage import hold_on
from chatbridge.store.records import CURRENT_AGENT_KEY, ClaimedDelivery

if TYPE_CHECKING:
    from chatbridge.pipeline.host import Host

log = logging.getLogger("chatbridge.workers")

T = TypeVar("T")

SEND_MARKED = ("message", "note")
"""Kinds a customer (or the team) would see twice if sent twice: marked before the send,
looked up after a cut-off one (see ``DeliveryRunner``)."""


def shown(kind: str, capabilities: Any) -> bool:
    """Whether a delivery of ``kind`` is sent on a channel with ``capabilities`` at all.

    ``notes`` is read with ``getattr``: a ``Capabilities`` without the field keeps none.
    """
    if kind in ("typing_on", "typing_off"):
        return bool(getattr(capabilities, "typing", False))
    if kind == "note":
        return bool(getattr(capabilities, "notes", False))
    return True


def hold_seconds(d: ClaimedDelivery) -> float:
    """How long a finished ``d`` keeps its conversation's next delivery back (0: not)."""
    if d.kind != "typing_on":
        return 0.0
    ms = d.payload.get("hold_ms")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or ms <= 0:
        return 0.0
    return float(ms) / 1000.0


RICH_DATA_CHANNELS = frozenset({"webchat"})
"""Channels that render a reply's rich data themselves; the others get its text fallback."""


def with_data_text(action: OutboundAction, data: object, channel: str) -> OutboundAction:
    """``action`` with its text readable on ``channel``: a message carrying rich data
    (``data``, a JSON object) sent where it cannot be drawn gets the text fallback (the
    reply's words, then the data as plain text). Whatever the data is, a text comes out:
    an unknown or malformed kind degrades to text, it never fails the send."""
    if action.kind != "message" or not isinstance(data, dict) or channel in RICH_DATA_CHANNELS:
        return action
    try:
        text = text_fallback(data, action.text)
    except Exception:  # a fallback bug must not hold the conversation's replies back
        log.exception("rich data without a text fallback; sending the words alone")
        return action
    return replace(action, text=text or action.text)


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
        template=d.payload.get("template"),
        interactive=d.payload.get("interactive"),
    )


class DeliveryRunner:
    """Sends one claimed delivery through its channel adapter.

    A message delivery is marked "send started" (fenced, committed) right before the channel
    is called. After a crash, or after a send that got no answer (``RetryableDelivery`` with
    ``outcome_unknown``: a timeout once the request was written), only a delivery so marked
    whose receipt never came (the channel's echo of our own message,
    ``Bridge.record_receipt``) is uncertain; it looks for its receipt — in the store, then by
    asking the channel (``already_sent``) — for up to ``receipt_wait_seconds`` before it is
    sent again. The wait counts from the cut-off send, or from this runner's start if that is
    later: an echo refused while the bridge was down comes back with the channel's next
    retry, only once the bridge is up again.
    """

    def __init__(self, bridge: Host) -> None:
        self.b = bridge
        self.since = clock.now()
        """When this runner (its process) began to hear echoes."""

    async def run(self, d: ClaimedDelivery) -> None:
        """Send ``d``, then the deliveries of its conversation that follow it, one by one."""
        b = self.b
        current: ClaimedDelivery | None = d
        while current is not None:
            b.held.hold_delivery(current.id)
            following: ClaimedDelivery | None = None
            ids = self._bind_ids(current)  # on every record logged while it is sent
            try:
                if tracing.ON:
                    with tracing.delivery(current):
                        following = await self._send(current)
                else:
                    following = await self._send(current)
            except Exception as exc:
                log_failure(f"delivery {current.id}", current.conversation_id, exc)
                b.metrics.errors.labels("delivery_failed").inc()
                await self._give_back(current)
            finally:
                b.held.drop_delivery(current.id)
                logs.unbind(ids)
            current = following

    def _bind_ids(self, d: ClaimedDelivery) -> logs.Token:
        """Bind ``d``'s ids for the log records of its send (``chatbridge.logs``); its agent
        is the conversation's current one, else its route's."""
        conv = d.conversation
        agent = conv.meta.get(CURRENT_AGENT_KEY)
        if agent is None:
            route = self.b.route_for(conv.channel, conv.inbox_id)
            agent = route.agent_id if route is not None else None
        return logs.bind(
            conversation_id=d.conversation_id,
            delivery_id=d.id,
            turn_id=None if d.turn_id is None else f"t_{d.turn_id}",
            message_id=d.message_id,
            agent_id=agent,
        )

    async def _give_back(self, d: ClaimedDelivery) -> None:
        """After an error the runner could not handle: if the send may have begun (this
        attempt's, or an earlier one whose outcome is still unknown), leave the lease to run
        out (the next claim then looks for a receipt); else retry later."""
        b = self.b
        s = b.settings
        if d.uncertain or b.held.send_started(d.id):
            return
        # Not ``droppable``, a typing indicator included: the same error every time (a reply
        # the runner cannot handle) is dead-lettered, listed for an operator to look at,
        # rather than hold its conversation's later replies back for ever.
        decision = decide_retry(
            attempts=d.attempts,
            max_attempts=d.max_attempts,
            kind="retryable",
            error="internal error",
            now=clock.now(),
            base=s.retry_base_seconds,
            cap=s.retry_max_seconds,
        )
        if isinstance(decision, GiveUp):
            try:
                await b.store.fail_delivery(
                    d.id, s.instance_id, error=decision.reason, state=decision.state
                )
            except Exception:
                log.warning("delivery %s: could not be dead-lettered; its lease will run out", d.id)
                return
            self._count_failure(d, decision.state, decision.error)
            return
        try:
            await b.store.retry_delivery(
                d.id, s.instance_id, next_attempt_at=decision.at, error=decision.error
            )
        except Exception:
            log.warning("delivery %s: could not be given back; its lease will run out", d.id)
            return
        b.schedule_wake(decision.delay)

    async def _persist(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        return await hold_on(op, what=what, give_up_after=self.b.settings.store_retry_seconds)

    async def _send(self, d: ClaimedDelivery) -> ClaimedDelivery | None:
        """Send one delivery; returns the conversation's next one if it was leased with it."""
        b = self.b
        s = b.settings
        me = s.instance_id
        channel = d.conversation.channel
        adapter = b.channels.get(channel)
        if adapter is None:
            end = self._decide(d, "permanent", f"no adapter for {channel}")
            assert isinstance(end, GiveUp)  # a permanent failure always ends the work
            await self._persist(
                lambda: b.store.fail_delivery(d.id, me, error=end.reason, state=end.state),
                f"delivery {d.id}: dead-lettering",
            )
            b.wake_deliveries()
            return None
        if not shown(d.kind, getattr(adapter, "capabilities", None)):
            b.metrics.deliveries.labels(channel, d.kind, "not_shown").inc()
            return await self._finish(d, None)
        action = with_data_text(to_action(d), d.payload.get("data"), channel)
        if d.kind == "message":
            await self._track_offer(d, action)
        capabilities = getattr(adapter, "capabilities", None)
        if action.interactive is not None and not getattr(capabilities, "choices", False):
            action = with_numbered_choices(action)  # choices as "1. Yes\n2. No" in the text
        if channel != "whatsapp":  # WhatsApp sends stored files' bytes; others get a link
            action = with_signed_links(action, b.settings)
        if d.kind in SEND_MARKED:
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
        started = time.perf_counter()
        try:
            if action.template is not None and channel != "whatsapp":
                action = await as_text_action(b.store, action)  # no templates here: its text
            result = await adapter.send(action)
        except RetryableDelivery as exc:
            # A marked send that got no answer may have landed: its retry stays uncertain.
            unknown = exc.outcome_unknown and b.held.send_started(d.id)
            await self._settle(d, self._decide(d, "retryable", str(exc), exc.retry_after), unknown)
            return None
        except PermanentDelivery as exc:
            await self._settle(d, self._decide(d, "permanent", str(exc)))
            return None
        except Exception as exc:  # an adapter bug must not lose the delivery
            log.exception("delivery %s: unexpected adapter error", d.id)
            await self._settle(d, self._decide(d, "retryable", f"{type(exc).__name__}: {exc}"))
            return None
        b.metrics.delivery_seconds.labels(channel).observe(time.perf_counter() - started)
        b.metrics.deliveries.labels(channel, d.kind, "ok").inc()
        log.debug("delivery %s (%s) sent to %s", d.id, d.kind, channel)
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
        # Counted from the send, the wait could have passed while this process was not yet
        # up: a restart slower than the wait would resend before the echo's retry arrives.
        began = max(d.send_started_at or clock.now(), self.since)
        until = began + b.settings.receipt_wait_seconds
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
            "delivery %s: no receipt from %s %.1fs after the cut-off send began; sending again"
            " conversation=%s",
            d.id,
            channel,
            clock.now() - (d.send_started_at or began),
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

    async def _track_offer(self, d: ClaimedDelivery, action: OutboundAction) -> None:
        """Open the choices this message offers for the customer's typed answer, or close
        the conversation's open ones: our newest message is the one answered. Costs a write
        only for a message with choices or while choices are open."""
        if action.interactive is not None:
            await self.b.store.set_offer(d.conversation.id, action.interactive)
        elif OFFER_KEY in (d.conversation.meta or {}):
            await self.b.store.set_offer(d.conversation.id, None)

    async def _finish(self, d: ClaimedDelivery, external_id: str | None) -> ClaimedDelivery | None:
        s = self.b.settings
        pause = hold_seconds(d)
        hold = (d.conversation_id, pause) if pause > 0 else None

        async def finish() -> tuple[bool, ClaimedDelivery | None]:
            result: tuple[bool, ClaimedDelivery | None] = await self.b.store.finish_delivery(
                d.id,
                s.instance_id,
                external_id=external_id,
                claim_next=d,
                lease_seconds=s.lease_seconds,
                hold=hold,
            )
            return result

        # The send is done: keep that knowledge through a database outage.
        _, following = await self._persist(finish, f"delivery {d.id}: recording the send")
        if hold is not None:
            # the held part is due then (a hair later: the loop's timer and the wall clock
            # the due time is written by may differ by a little); nothing is leased meanwhile
            self.b.schedule_wake(pause + 0.005)
        if following is not None:
            self.b.held.hold_delivery(following.id)
        return following

    def _decide(
        self,
        d: ClaimedDelivery,
        kind: FailureKind,
        error: str,
        retry_after: float | None = None,
    ) -> RetryDecision:
        """The retry decision for a failed send of ``d``: a typing indicator that cannot go
        out is dropped (it is worthless once late), anything else dead-lettered."""
        s = self.b.settings
        return decide_retry(
            attempts=d.attempts,
            max_attempts=d.max_attempts,
            kind=kind,
            error=error,
            now=clock.now(),
            base=s.retry_base_seconds,
            cap=s.retry_max_seconds,
            retry_after=retry_after,
            droppable=d.kind.startswith("typing"),
        )

    async def _settle(
        self, d: ClaimedDelivery, decision: RetryDecision, outcome_unknown: bool = False
    ) -> None:
        """Write a failed send's decision: a retry (and a wake-up when it is due) or its end.

        ``outcome_unknown``: the send may have reached the channel (no answer came); the
        delivery stays uncertain, so its next attempt looks for a receipt before sending,
        exactly as after a crash mid-send.
        """
        b = self.b
        me = b.settings.instance_id
        if isinstance(decision, GiveUp):
            end = decision
            await self._persist(
                lambda: b.store.fail_delivery(
                    d.id, me, error=end.reason, state=end.state, outcome_unknown=outcome_unknown
                ),
                f"delivery {d.id}: dead-lettering",
            )
            self._count_failure(d, end.state, end.error)
            return
        delay = decision.delay
        b.metrics.deliveries.labels(d.conversation.channel, d.kind, "retry").inc()
        log.info(
            "delivery %s (%s) attempt %d failed: %s; retry in %.2fs conversation=%s",
            d.id,
            d.kind,
            d.attempts,
            decision.error,
            delay,
            d.conversation_id,
        )
        await self._persist(
            # the due time counts from the write: a retry held up by a database outage
            # still waits its backoff
            lambda: b.store.retry_delivery(
                d.id,
                me,
                next_attempt_at=clock.now() + delay,
                error=decision.error,
                outcome_unknown=outcome_unknown,
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
