"""Inbound acceptance: what the bridge does with a channel's parsed events.

``Bridge.accept`` persists what a channel sent before it is acknowledged (a customer's
message and its turn in one transaction), applies owner signals (a human took over, a status
changed), forwards conversation events to the agent, and matches the channels' echoes of our
own sends to their deliveries (receipts). Screening echoes that would look like a human's
message is each channel's job (``Channel.parse``); nothing here knows a channel's JSON.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatbridge import clock, tracing
from chatbridge.channels.whatsapp.base import own_id_forms
from chatbridge.crm.linking import link_inbound
from chatbridge.errors import UnknownInbox
from chatbridge.models import (
    ConversationEvent,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OwnerSignal,
    ParsedWebhook,
    StatusUpdate,
)
from chatbridge.pipeline.admission import decide_inbound
from chatbridge.pipeline.decisions import decide_owner
from chatbridge.policies.keywords import matches
from chatbridge.store.records import ConversationRecord, Route

if TYPE_CHECKING:
    from chatbridge.config import Settings
    from chatbridge.crm.settings import CommsSettings
    from chatbridge.metrics import Metrics
    from chatbridge.store import Store
    from chatbridge.transports.hub import AgentHub

log = logging.getLogger("chatbridge.bridge")

# an ingest's reason when a policy changed the conversation's owner: the agent is told
POLICY_OWNER_CHANGES = {
    "handoff_keyword": "human",
    "outside_hours": "human",
    "resume_keyword": "bot",
}


@dataclass(slots=True)
class Accepted:
    """What the webhook endpoint answers."""

    status: str  # accepted | stored | duplicate | ignored | forwarded
    conversation_id: str | None = None
    message_id: str | None = None
    turn_id: int | None = None
    reason: str | None = None
    response_mode: str = "async"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        for key in ("conversation_id", "message_id", "turn_id", "reason"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value if key != "turn_id" else f"t_{value}"
        return out


class InboundAcceptance:
    """``Bridge``'s inbound half (a mixin: ``Bridge`` provides what is declared here)."""

    store: Store
    settings: Settings
    metrics: Metrics
    hub: AgentHub
    _comms_settings: CommsSettings
    _receipt_events: dict[str, asyncio.Event]

    if TYPE_CHECKING:

        def route_for(self, channel: str, inbox_id: int) -> Route | None: ...
        def wake_turns(self) -> None: ...
        def wake_deliveries(self) -> None: ...
        def wake_turns_later(self, delay: float) -> None: ...
        def supersede(
            self, agent_id: str, turn_id: int, by_turn_id: int, conversation_id: str
        ) -> None: ...
        async def notify_agent_owner(
            self, agent_id: str, conversation_id: str, owner: str, reason: str
        ) -> None: ...

    async def accept(self, parsed: ParsedWebhook, *, mode: str | None = None) -> Accepted:
        """Persist what a channel sent (before it is acknowledged) and wake the workers."""
        if isinstance(parsed, Ignored):
            return Accepted("ignored", reason=parsed.reason)
        if isinstance(parsed, StatusUpdate):
            message_id = await self.store.set_message_status(
                parsed.external_message_id, parsed.status, parsed.error
            )
            if message_id is None and parsed.channel == "whatsapp":
                # a broadcast's template has no message row: its recipient row takes it
                forms = own_id_forms(parsed.external_message_id)
                if await self.store.apply_broadcast_status(
                    forms, parsed.status, parsed.error, callback=parsed.callback_data
                ):
                    return Accepted("stored", reason=f"broadcast:{parsed.status}")
            if message_id is None:
                if parsed.channel_key is not None and parsed.status != "failed":
                    echo = DeliveryReceipt(
                        parsed.channel,
                        None,
                        external_message_id=parsed.external_message_id,
                        channel_key=parsed.channel_key,
                    )
                    if await self._record_echo(echo):
                        self.metrics.receipts.labels(parsed.channel).inc()
                        return Accepted("stored", reason="receipt")
                return Accepted("ignored", reason="status_of_unknown_message")
            return Accepted("stored", message_id=message_id, reason=f"status:{parsed.status}")
        if isinstance(parsed, DeliveryReceipt):
            if await self._record_echo(parsed):
                self.metrics.receipts.labels(parsed.channel).inc()
                return Accepted("stored", reason="receipt")
            if parsed.otherwise is None:
                return Accepted("ignored", reason="own_reply")
            parsed = parsed.otherwise
        route = self.route_for(parsed.channel, parsed.inbox_id)
        if route is None:
            raise UnknownInbox(parsed.channel, parsed.inbox_id)
        if isinstance(parsed, InboundMessage):
            response_mode = mode or route.reply_mode
            msg = parsed
            max_attempts = self.settings.delivery_max_attempts
            ingest = self.store.ingest(
                msg,
                route=route,
                response_mode=response_mode,
                decide=lambda conv: decide_inbound(
                    route, conv, msg, now=clock.now(), max_attempts=max_attempts
                ),
            )
            if tracing.ON:  # the message keeps its trace for the worker that runs its turn
                with tracing.store_ingest(msg.metadata, msg.channel):
                    result = await ingest
            else:
                result = await ingest
            if result.available_at is not None:
                # a debounce window: its turn is claimable when it closes (a merge that
                # pushes the window on sets a later wake-up; the early one finds nothing)
                self.wake_turns_later(result.available_at - clock.now())
            elif result.turn_id is not None:
                self.wake_turns()
            if result.superseded_turn_id is not None and result.turn_id is not None:
                self.supersede(
                    route.agent_id,
                    result.superseded_turn_id,
                    result.turn_id,
                    result.conversation_id or "",
                )
            if result.deliveries:
                self.wake_deliveries()
            if result.conversation_id and result.reason in POLICY_OWNER_CHANGES:
                owner, why = POLICY_OWNER_CHANGES[result.reason], result.reason
                log.info("conversation %s owner → %s (%s)", result.conversation_id, owner, why)
                await self.notify_agent_owner(route.agent_id, result.conversation_id, owner, why)
            if result.conversation_id and result.status != "duplicate":
                await link_inbound(self.store, self._comms_settings, parsed, result.conversation_id)
            return Accepted(
                result.status,
                conversation_id=result.conversation_id,
                message_id=result.message_id,
                turn_id=result.turn_id,
                reason=result.reason,
                response_mode=response_mode,
            )
        if isinstance(parsed, OwnerSignal):
            return await self._accept_owner_signal(parsed, route)
        return await self._accept_event(parsed, route)

    async def _accept_owner_signal(self, sig: OwnerSignal, route: Route) -> Accepted:
        before = await self.store.find_conversation(sig.channel, sig.channel_key)

        resume = route.policies.resume_keywords

        def decide(conv: ConversationRecord) -> str | None:
            if resume and sig.owner == "human" and sig.text and matches(sig.text, resume):
                return "bot"  # an operator's resume keyword gives it back to the bot
            return decide_owner(
                signal_owner=sig.owner,
                external_status=sig.external_status,
                previous_status=sig.previous_status,
                agent_bot_mode=route.agent_bot_mode,
            )

        conv, duplicate = await self.store.apply_owner_signal(
            channel=sig.channel,
            channel_key=sig.channel_key,
            inbox_id=sig.inbox_id,
            decide_owner=decide,
            external_status=sig.external_status,
            note_text=sig.text,
            note_author="human",
            external_message_id=sig.external_message_id,
            delivery_id=sig.delivery_id,
        )
        if duplicate or conv is None:
            return Accepted("duplicate")
        if before is None or before.owner != conv.owner:
            log.info("conversation %s owner → %s (%s)", conv.id, conv.owner, sig.reason)
            await self.notify_agent_owner(route.agent_id, conv.id, conv.owner, sig.reason)
            if conv.owner == "bot":
                self.wake_turns()
        return Accepted("stored", conversation_id=conv.id, reason=f"owner:{conv.owner}")

    async def _accept_event(self, ev: ConversationEvent, route: Route) -> Accepted:
        conversation_id = None
        if ev.channel_key:
            conv, duplicate = await self.store.apply_owner_signal(
                channel=ev.channel,
                channel_key=ev.channel_key,
                inbox_id=ev.inbox_id,
                decide_owner=lambda _c: None,
                external_status=ev.external_status,
                delivery_id=ev.delivery_id,
            )
            if duplicate:
                return Accepted("duplicate")
            conversation_id = conv.id if conv else None
        contact = ev.contact
        sent = await self.hub.send_event(
            route.agent_id,
            {
                "type": "conversation_event",
                "event": ev.event,
                "conversation_id": conversation_id,
                "inbox_id": ev.inbox_id,
                "channel": ev.channel,
                "sender": (
                    {"id": contact.external_id, "name": contact.name, "email": contact.email}
                    if contact
                    else None
                ),
                "data": ev.data,
            },
        )
        return Accepted(
            "forwarded" if sent else "stored",
            conversation_id=conversation_id,
            reason=None if sent else "agent_offline",
        )

    async def record_receipt(self, idempotency_key: str, external_id: str | None) -> bool:
        """A channel echoed one of our messages back: note it, wake a delivery waiting for it."""
        mine = await self.store.record_receipt(idempotency_key, external_id)
        event = self._receipt_events.get(idempotency_key)
        if event is not None:
            event.set()
        return mine

    async def _record_echo(self, echo: DeliveryReceipt) -> bool:
        if echo.idempotency_key is not None:
            return await self.record_receipt(echo.idempotency_key, echo.external_message_id)
        if echo.channel_key is None or echo.external_message_id is None:
            return False
        mine = await self.store.record_receipt_in_conversation(
            echo.channel, echo.channel_key, echo.external_message_id, echo.text
        )
        if mine:
            for event in list(self._receipt_events.values()):
                event.set()  # the waiting delivery re-reads the store
        return mine

    async def wait_for_receipt(self, idempotency_key: str, timeout: float) -> None:
        """Wait up to ``timeout`` for ``record_receipt`` of this key in this process (another
        replica's receipt is only seen in the store, which the caller re-reads)."""
        event = self._receipt_events.setdefault(idempotency_key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._receipt_events.pop(idempotency_key, None)
