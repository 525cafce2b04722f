"""The pull agent's actions: ``inbox`` (what is offered, leased as shown) and ``outbox``
(the reply that settles them, or a proactive message)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi.responses import Response

from chatbridge.api.webchat_compat.call import Call, active_session, session_and_text
from chatbridge.api.webchat_compat.envelope import (
    Refusal,
    iso_to_ts,
    newer,
    pagination,
    parse_since,
    php_int,
    php_time,
    success,
)
from chatbridge.store.records import DeliverySpec
from chatbridge.store.webchat import WEBCHAT
from chatbridge.transports.base import AgentOutcome
from chatbridge.transports.pull import Offer

log = logging.getLogger("chatbridge.webchat_compat")

REPLY_WAIT_SECONDS = 10.0


def offer_messages(offer: Offer) -> list[dict[str, Any]]:
    """The inbox entries of one offered turn: one per visitor message."""
    frame = offer.req.frame
    context = frame.get("context") or {}
    uid = context.get("uid") or (frame.get("sender") or {}).get("id")
    out = []
    for m in frame.get("messages") or []:
        created = iso_to_ts(m.get("created_at"))
        out.append(
            {
                "id": str(m.get("id")),
                "session_id": context.get("session_id"),
                "message": m.get("content") or "",
                "timestamp": php_time(created),
                "uid": uid,
                "_ts": created,
            }
        )
    return out


async def act_inbox(call: Call) -> Response:
    limit = max(0, min(php_int(call.param("limit"), 50), 100))
    offset = max(0, php_int(call.param("offset"), 0))
    since = parse_since(call.param("since"))
    call.pull.take(call.agent_id, 0)  # leases nothing; records that the agent polled
    now = time.time()
    entries: list[tuple[Offer, dict[str, Any]]] = [
        (offer, entry)
        for offer in call.pull.open_offers(call.agent_id)
        if offer.available(now) and offer.req.frame.get("channel") == WEBCHAT
        for entry in offer_messages(offer)
        if newer(entry["_ts"], since)
    ]
    entries.sort(key=lambda pair: pair[1]["_ts"])
    total = len(entries)
    page = entries[offset : offset + limit]
    leased: set[int] = set()
    for offer, _ in page:
        if id(offer) not in leased:
            leased.add(id(offer))
            call.pull.lease(offer, now)
    if page:
        log.info("action API inbox: leased %d turn(s) to %s", len(leased), call.agent_id)
    return success(
        {
            "messages": [{k: v for k, v in e.items() if k != "_ts"} for _, e in page],
            "pagination": pagination(total, limit, offset),
        }
    )


async def act_outbox(call: Call) -> Response:
    body = await call.body()
    session_id, text = session_and_text(body, "response")
    session = await active_session(call, session_id)
    conversation_id = await call.svc.conversation_id(session)
    if conversation_id is None:
        raise Refusal(400, "Invalid or expired session")
    response_id, at = await _settle(call, conversation_id, text)
    if response_id is None:
        response_id, at = await _proactive(call, conversation_id, text)
    return success(
        {"response_id": response_id, "session_id": session.id, "timestamp": php_time(at)},
        "Response sent successfully",
    )


async def _settle(call: Call, conversation_id: str, text: str) -> tuple[str | None, float]:
    """Answer the conversation's turns handed out by ``inbox`` (leased, or lapsed but not
    yet re-offered): the first gets the reply, any others end without one."""
    handed_out = [
        o
        for o in call.pull.open_offers(call.agent_id)
        if o.req.conversation_id == conversation_id and o.offers > 0
    ]
    answered: Offer | None = None
    for offer in handed_out:
        outcome = AgentOutcome("reply", content=text) if answered is None else None
        if call.pull.settle(offer, outcome or AgentOutcome("no_reply")) and outcome:
            answered = offer
    if answered is None:
        return None, time.time()
    turn_id = answered.req.seq
    await call.bridge.wait_for_reply(turn_id, REPLY_WAIT_SECONDS)
    row = await call.bridge.store.get_turn(turn_id)
    if row is None or not row.get("reply_message_id"):
        log.warning("action API outbox: turn %s has no reply message yet", turn_id)
        return f"t_{turn_id}", time.time()
    return str(row["reply_message_id"]), float(row.get("finished_at") or time.time())


async def _proactive(call: Call, conversation_id: str, text: str) -> tuple[str, float]:
    """A message nobody asked for (no turn handed out): sent like the agent's own message."""
    b = call.bridge
    conv = await b.store.get_conversation(conversation_id)
    route = b.route_for(conv.channel, conv.inbox_id) if conv else None
    if conv is None or route is None or route.agent_id != call.agent_id:
        # Agents may only write into conversations routed to them.
        raise Refusal(400, "Invalid or expired session")
    done = await b.store.add_outbound(
        conv.id,
        text=text,
        author="agent",
        deliveries=[DeliverySpec("message", b.settings.delivery_max_attempts, text=text)],
        meta={"proactive": True, "agent_id": call.agent_id, "via": "action_api"},
    )
    if not done.ok or done.reply_message_id is None:
        raise Refusal(400, "Invalid or expired session")
    b.wake_deliveries()
    return done.reply_message_id, time.time()
