"""What a route's policies make of one inbound customer message, as a pure function.

``decide_inbound`` runs inside the ingest transaction with the conversation as the upsert
left it. Without policies it is ``decide_turn`` (a turn unless a human owns the
conversation). With them, in this order:

1. an ignored sender: stored, no turn;
2. bot expiry: after ``expire_after_seconds`` of silence the agent gets a fresh session,
   and a conversation a human held may go back to the bot;
3. a customer's resume keyword gives a human's conversation back to the bot (if allowed);
4. a handoff keyword hands it to a human at once, without a turn;
5. outside business hours: the bot answers, or an away text and a handoff, or a silent
   handoff (hold);
6. otherwise a turn — debounced / merged / superseding as the route says (the store plans
   that against the conversation's open turns: ``policies.window``).
"""

from __future__ import annotations

from chatbridge.models import InboundMessage
from chatbridge.pipeline.decisions import decide_turn
from chatbridge.policies.hours import is_open
from chatbridge.policies.ignore import is_ignored
from chatbridge.policies.keywords import matches
from chatbridge.store.records import ConversationRecord, DeliverySpec, Route, TurnDecision


def decide_inbound(
    route: Route,
    conv: ConversationRecord,
    msg: InboundMessage,
    *,
    now: float,
    max_attempts: int,
) -> TurnDecision:
    """The ingest decision for ``msg`` under ``route``'s policies (see the module doc)."""
    base = decide_turn(route, conv)
    p = route.policies
    if p.is_default():
        return base
    contact = msg.contact
    if is_ignored(
        p.ignore,
        contact_id=contact.external_id if contact else None,
        phone=contact.phone if contact else None,
        chat_id=msg.channel_key,
    ):
        return TurnDecision(create_turn=False, owner=conv.owner, reason="ignored")
    owner = base.owner
    expired = (
        p.expire_after_seconds is not None
        and conv.prev_customer_at is not None
        and now - conv.prev_customer_at > p.expire_after_seconds
    )
    if expired and owner == "human" and p.expire_returns_to_bot and not route.agent_bot_mode:
        owner = "bot"

    def handoff(reason: str, away: str | None = None) -> TurnDecision:
        specs = [DeliverySpec("message", max_attempts, text=away)] if away else []
        specs.append(DeliverySpec("handoff", max_attempts))
        return TurnDecision(
            create_turn=False,
            owner="human",
            reason=reason,
            deliveries=specs,
            summary_messages=p.summary_messages if p.handoff_summary else 0,
        )

    if owner == "human":
        if p.customer_can_resume and matches(msg.text, p.resume_keywords):
            return TurnDecision(create_turn=False, owner="bot", reason="resume_keyword")
        return TurnDecision(create_turn=False, owner="human", reason=base.reason or "human_owner")
    if matches(msg.text, p.handoff_keywords):
        return handoff("handoff_keyword")
    hours = p.business_hours
    if hours is not None and hours.outside != "bot" and not is_open(hours, now):
        if hours.outside == "away_handoff":
            return handoff("outside_hours", hours.away_text)
        return handoff("outside_hours")
    closes = (p.close_on_media and bool(msg.attachments)) or matches(msg.text, p.close_keywords)
    return TurnDecision(
        create_turn=True,
        owner="bot",
        window=p if p.windowed() else None,
        closes_window=closes,
        fresh=bool(expired),
    )
