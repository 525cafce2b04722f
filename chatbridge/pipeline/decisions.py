"""The decisions that matter most, as plain functions: no I/O, tested without a server.

- ``decide_turn``: does an inbound customer message start an agent turn?
- ``decide_owner``: who owns the conversation after a status change or a human's message?
- ``plan_outcome``: what to write and send when a turn ends (reply, handoff, fallback …),
  paced as separate typed parts when the route asks for ``split_replies``.
- ``pick_agent`` / ``handoff_target``: on a route with several agents, which one runs a turn,
  and whom an ``agent_handoff`` names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatbridge.policies.model import RoutePolicies
from chatbridge.policies.split import split_reply, typing_ms
from chatbridge.store.records import (
    CURRENT_AGENT_KEY,
    ConversationRecord,
    DeliverySpec,
    MessageRecord,
    Route,
    RouteAgent,
    TurnDecision,
)
from chatbridge.transports.base import AgentOutcome

TYPING_ATTEMPTS = 3


def decide_turn(route: Route, conv: ConversationRecord) -> TurnDecision:
    """A customer wrote: create a turn unless a human owns the conversation.

    In agent-bot mode Chatwoot's own status is the truth, as for Chatwoot's agent bots: the
    bot answers only while the conversation is ``pending``; ``open`` means a human has it. A
    resolved conversation that a new message turns ``pending`` again is the bot's again.
    """
    owner = conv.owner
    if route.agent_bot_mode and conv.external_status is not None:
        owner = "bot" if conv.external_status == "pending" else "human"
    if owner == "human":
        reason = "not_pending" if route.agent_bot_mode else "human_owner"
        return TurnDecision(create_turn=False, owner=owner, reason=reason)
    return TurnDecision(create_turn=True, owner="bot")


def decide_owner(
    *,
    signal_owner: str | None,
    external_status: str | None,
    previous_status: str | None,
    agent_bot_mode: bool,
) -> str | None:
    """Owner after an ``OwnerSignal``; ``None`` keeps the current one.

    - a human agent wrote → ``human``;
    - the conversation left ``pending`` for ``open`` (a human picked it up, or our own
      handoff) → ``human``; in agent-bot mode any move to ``open`` means that;
    - it became ``pending`` again, or was ``resolved`` (closed; the next customer message
      starts fresh) → ``bot``.
    """
    if signal_owner is not None:
        return signal_owner
    if external_status == "open" and (
        previous_status == "pending" or (previous_status is None and agent_bot_mode)
    ):
        return "human"
    if external_status in ("pending", "resolved"):
        return "bot"
    return None


@dataclass(frozen=True, slots=True)
class AgentPick:
    """Which agent runs a turn. ``role`` is None on a route with one agent; ``switch``: the
    conversation's current agent must be set to ``agent_id`` (the customer addressed another
    one, or a fresh session starts again on the default)."""

    agent_id: str
    role: str | None = None
    switch: bool = False


def addressed(route: Route, messages: list[MessageRecord]) -> RouteAgent | None:
    """The agent the newest message that names one of the route's agents addresses: its
    ``metadata.agent`` (an agent id, or else a role) or ``metadata.role``. A name that is not
    one of the route's agents is ignored: a customer cannot steer a turn off the route."""
    for m in reversed(messages):
        found = route.addressed_by(m.meta)
        if found is not None:
            return found
    return None


def pick_agent(
    route: Route, conv: ConversationRecord, messages: list[MessageRecord], *, fresh: bool = False
) -> AgentPick:
    """The agent a turn of ``conv`` runs on.

    A route without named agents: its ``agent_id``, as ever (nothing else is looked at).
    Otherwise, in this order: the agent the turn's messages address (``addressed``); the
    conversation's current agent (``meta[CURRENT_AGENT_KEY]``, set by an earlier address
    or an ``agent_handoff``) while it is still one of the route's agents and the bot's
    session did not start afresh (``fresh``); the route's default agent.
    """
    if not route.agents:
        return AgentPick(route.agent_id)
    current = conv.meta.get(CURRENT_AGENT_KEY) if conv.meta else None
    chosen = addressed(route, messages)
    if chosen is None and isinstance(current, str) and not fresh:
        chosen = route.agent_named(current)
    if chosen is None:
        chosen = route.agent_named(route.agent_id) or RouteAgent(route.agent_id, "default")
        # back to the default: only worth a write when another agent was current
        return AgentPick(
            chosen.agent_id, chosen.role, switch=current not in (None, chosen.agent_id)
        )
    return AgentPick(chosen.agent_id, chosen.role, switch=current != chosen.agent_id)


def handoff_target(route: Route, outcome: AgentOutcome) -> RouteAgent | None:
    """The route's agent an ``agent_handoff`` names (``to_agent`` by id, or ``to_role``);
    None when it names none of them (a route with one agent has no one to hand to)."""
    if outcome.to_agent:
        return route.agent_named(outcome.to_agent)
    if outcome.to_role:
        return route.agent_with_role(outcome.to_role)
    return None


def agent_handoff_event(
    conv: ConversationRecord,
    *,
    from_agent: str,
    from_role: str | None,
    to: RouteAgent,
    reason: str | None,
) -> dict[str, Any]:
    """The ``conversation_event`` that tells an agent a conversation was handed to it."""
    return {
        "type": "conversation_event",
        "event": "agent_handoff",
        "conversation_id": conv.id,
        "inbox_id": conv.inbox_id,
        "channel": conv.channel,
        "reason": reason,
        "data": {
            "from_agent": from_agent,
            "from_role": from_role,
            "to_agent": to.agent_id,
            "to_role": to.role,
            "reason": reason,
        },
    }


@dataclass(slots=True)
class TurnPlan:
    """What ``complete_turn`` writes for one ending of a turn."""

    state: str  # done | failed
    outcome: str  # reply | no_reply | handoff | fallback | fallback_handoff
    reply_text: str | None
    deliveries: list[DeliverySpec]
    handoff: bool = False
    attachments: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # a handoff's private note for the human (``handoff_summary``): the agent's summary, or
    # else the last ``summary_messages`` messages; 0: no note
    summary: str | None = None
    summary_messages: int = 0
    # the reply's template / choices (protocol 1.2), kept in the reply message's meta
    reply_meta: dict[str, Any] = field(default_factory=dict)
    # an agent_handoff (1.3): the route's agent the conversation goes to
    to_agent: RouteAgent | None = None


def outbound_attachments(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An agent's attachments as a message delivery carries them (``Attachment``: url,
    mime, size, name): the protocol leaves their objects open, so fields beyond those are
    dropped and an attachment without a ``url`` cannot be sent."""
    out: list[dict[str, Any]] = []
    for a in items:
        url = a.get("url") if isinstance(a, dict) else None
        if not isinstance(url, str) or not url:
            continue
        mime = a.get("mime") or a.get("mime_type") or a.get("content_type")
        size = a.get("size")
        name = a.get("name") or a.get("filename")
        out.append(
            {
                "url": url,
                "mime": mime if isinstance(mime, str) else None,
                "size": size if isinstance(size, int) and not isinstance(size, bool) else None,
                "name": name if isinstance(name, str) else None,
            }
        )
    return out


def with_attachments(
    specs: list[DeliverySpec],
    attachments: list[dict[str, Any]],
    extras: dict[str, Any] | None = None,
) -> list[DeliverySpec]:
    """``specs`` with the agent's attachments, and its template or choices (``extras``,
    protocol 1.2), on the last message (after the words that introduce them)."""
    sendable = outbound_attachments(attachments)
    if sendable or extras:
        last = max(i for i, s in enumerate(specs) if s.kind == "message")
        payload = dict(specs[last].payload)
        if sendable:
            payload["attachments"] = sendable
        payload.update(extras or {})
        specs[last].payload = payload
    return specs


def paced_parts(text: str, policies: RoutePolicies, max_attempts: int) -> list[DeliverySpec]:
    """A reply as human-paced parts (``split_replies``): for each paragraph, a typing
    indicator held for the part's typing time, the part, and the indicator switched off.

    ``typing_on`` carries ``{"hold_ms", "part"}`` (the delivery runner keeps the part back
    that long after the indicator went out), ``typing_off`` ``{"part"}`` (which tells it
    from the slow agent's indicator, see ``store.base.delivers``), the message
    ``{"part", "parts"}`` (its status stands for the whole reply only when it is the last,
    see ``OutboxStore.set_message_status``). Parts count from 1. A text without words
    (attachments only) is one message, as without the policy.
    """
    parts = split_reply(text)
    if not parts:
        return [DeliverySpec("message", max_attempts, text=text)]
    specs: list[DeliverySpec] = []
    for i, part in enumerate(parts, 1):
        specs += [
            DeliverySpec(
                "typing_on",
                TYPING_ATTEMPTS,
                payload={"hold_ms": typing_ms(part, policies), "part": i},
            ),
            DeliverySpec(
                "message", max_attempts, text=part, payload={"part": i, "parts": len(parts)}
            ),
            DeliverySpec("typing_off", TYPING_ATTEMPTS, payload={"part": i}),
        ]
    return specs


def plan_outcome(
    outcome: AgentOutcome | None,
    *,
    route: Route,
    default_fallback: str,
    max_attempts: int,
    failure: str | None = None,
) -> TurnPlan:
    """Turn an agent's answer (or a failure: ``outcome=None`` with ``failure`` set) into
    the rows to write. Typing is always switched off, whatever happened.

    With ``split_replies`` the agent's words — its reply, and its handoff text — go out as
    paced parts (``paced_parts``) after the slow agent's indicator is switched off; the
    reply stays one message row with the whole text (``reply_text``). The attachments go
    with the last part, once the words that introduce them are out. The fallback text
    is not paced: it is the bridge's own short notice, and the customer has already waited
    for an agent that failed. A handoff carries its private note for the human when the
    route asks for one (``handoff_summary``).
    """
    off = DeliverySpec("typing_off", TYPING_ATTEMPTS)
    policies = route.policies
    noted = policies.summary_messages if policies.handoff_summary else 0

    def message(text: str) -> DeliverySpec:
        return DeliverySpec("message", max_attempts, text=text)

    def said(text: str) -> list[DeliverySpec]:
        """The agent's words and the slow agent's typing_off, in the order they go out."""
        if policies.split_replies:
            return [off, *paced_parts(text, policies, max_attempts)]
        return [message(text), off]

    if outcome is not None and outcome.kind == "reply":
        text = outcome.content or ""
        extras = outcome.extras()
        if (
            not text.strip()
            and not outcome.attachments
            and not extras.keys() & {"template", "data"}
        ):
            return TurnPlan("done", "no_reply", None, [off])
        return TurnPlan(
            "done",
            "reply",
            text,
            with_attachments(said(text), outcome.attachments, extras),
            attachments=outcome.attachments,
            reply_meta=extras,
        )
    if outcome is not None and outcome.kind == "no_reply":
        return TurnPlan("done", "no_reply", None, [off])
    if outcome is not None and outcome.kind == "handoff":
        specs = said(outcome.content) if outcome.content else [off]
        specs += [DeliverySpec("handoff", max_attempts)]
        return TurnPlan(
            "done",
            "handoff",
            outcome.content,
            specs,
            handoff=True,
            summary=outcome.summary,
            summary_messages=noted,
        )
    if outcome is not None and outcome.kind == "agent_handoff":
        target = handoff_target(route, outcome)
        if target is not None:
            specs = said(outcome.content) if outcome.content else [off]
            return TurnPlan("done", "agent_handoff", outcome.content, specs, to_agent=target)
        named = f"agent {outcome.to_agent!r}" if outcome.to_agent else f"role {outcome.to_role!r}"
        failure = f"agent_handoff_unknown: no {named} on this route"
    # error_message from the agent, timeout, or unreachable: the route's failure rule
    elif outcome is not None:
        failure = f"agent_error:{outcome.error_code or 'unknown'}"
    if route.on_failure == "handoff":
        return TurnPlan(
            "failed",
            "fallback_handoff",
            None,
            [off, DeliverySpec("handoff", max_attempts)],
            handoff=True,
            summary_messages=noted,
            error=failure,
        )
    text = route.fallback_text or default_fallback
    return TurnPlan("failed", "fallback", text, [message(text), off], error=failure)
