"""Plain records the store returns. Free of SQLAlchemy so callers never hold a row object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies


@dataclass(slots=True)
class AgentRecord:
    id: str
    transport: str
    url: str | None
    token_hash: str | None
    timeout_seconds: float
    enabled: bool
    last_seen_at: float | None
    # transport settings beyond the URL; secrets included (never shown by the API)
    options: dict[str, Any] = field(default_factory=dict)


CURRENT_AGENT_KEY = "agent"
"""``conversations.meta[CURRENT_AGENT_KEY]``: the agent id a conversation's turns run on, on a
route with several agents (set when a customer addresses one, or an agent hands over; see
``pipeline.decisions.pick_agent`` and ``Store.set_current_agent``)."""


@dataclass(frozen=True, slots=True)
class RouteAgent:
    """One of a route's named agents (protocol 1.3): a guide, a billing specialist …

    ``default``: the agent a conversation starts on (the route's ``agent_id``).
    """

    agent_id: str
    role: str
    default: bool = False

    def stored(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "role": self.role, "default": self.default}


@dataclass(slots=True)
class Route:
    """Which agent answers which inbox of which channel, and how.

    ``agents`` names the route's agents when it has several (empty: ``agent_id`` alone, as
    before protocol 1.3); ``agent_id`` is always the default one among them.
    """

    id: int
    channel: str
    inbox_id: int
    agent_id: str
    reply_mode: str
    timeout_seconds: float
    fallback_text: str | None
    on_failure: str
    agent_bot_mode: bool
    created_at: float
    updated_at: float
    policies: RoutePolicies = DEFAULT_POLICIES
    agents: tuple[RouteAgent, ...] = ()

    def agent_named(self, agent_id: str) -> RouteAgent | None:
        """The route's agent ``agent_id`` (None: not one of its named agents)."""
        return next((a for a in self.agents if a.agent_id == agent_id), None)

    def agent_with_role(self, role: str) -> RouteAgent | None:
        """The route's agent with ``role`` (compared without regard to case)."""
        wanted = role.casefold()
        return next((a for a in self.agents if a.role.casefold() == wanted), None)

    def names(self, agent_id: str) -> bool:
        """Whether ``agent_id`` answers on this route (its default or a named agent)."""
        return agent_id == self.agent_id or self.agent_named(agent_id) is not None

    def addressed_by(self, meta: dict[str, Any]) -> RouteAgent | None:
        """The agent a customer's message metadata addresses: ``agent`` (an agent id, or
        else a role) or ``role``. None when it names none of the route's agents: a customer
        cannot steer a turn off the route."""
        agent, role = meta.get("agent"), meta.get("role")
        found = None
        if isinstance(agent, str) and agent:
            found = self.agent_named(agent) or self.agent_with_role(agent)
        if found is None and isinstance(role, str) and role:
            found = self.agent_with_role(role)
        return found

    def queued_agent(self, conv_meta: dict[str, Any] | None, message_meta: dict[str, Any]) -> str:
        """The agent a new turn is queued for (``turns.agent_id``: replicas claim the turns of
        agents they can reach by it): the agent the message addresses, else the conversation's
        current agent, else the default. A route with one agent: its ``agent_id``, at once.
        The turn runner decides again when it runs the turn (``pipeline.decisions.pick_agent``).
        """
        if not self.agents:
            return self.agent_id
        found = self.addressed_by(message_meta)
        if found is not None:
            return found.agent_id
        current = conv_meta.get(CURRENT_AGENT_KEY) if conv_meta else None
        if isinstance(current, str) and self.agent_named(current) is not None:
            return current
        return self.agent_id


@dataclass(slots=True)
class ConversationRecord:
    id: str
    channel: str
    channel_key: str
    inbox_id: int
    contact_id: str | None
    owner: str
    status: str
    external_status: str | None
    meta: dict[str, Any]
    # the customer's latest message, and the one before it (None: none yet)
    customer_at: float | None = None
    prev_customer_at: float | None = None


@dataclass(slots=True)
class ContactRecord:
    id: str
    channel: str
    external_id: str | None
    name: str | None
    email: str | None
    phone: str | None


@dataclass(slots=True)
class MessageRecord:
    id: str
    conversation_id: str
    direction: str
    author: str
    text: str
    content_type: str
    attachments: list[dict[str, Any]]
    external_id: str | None
    created_at: float
    meta: dict[str, Any]
    turn_id: int | None = None


@dataclass(slots=True)
class IngestResult:
    """What happened to an inbound message.

    ``status``: ``accepted`` (stored, turn created), ``stored`` (stored, no turn: ``reason`` says
    why, e.g. a human owns the conversation) or ``duplicate`` (seen before; nothing written).
    """

    status: Literal["accepted", "stored", "duplicate"]
    conversation_id: str | None = None
    message_id: str | None = None
    turn_id: int | None = None
    reason: str | None = None
    # a turn in flight that this message superseded (policy ``in_flight: supersede``): its
    # lease is gone, so its reply will be refused; the agent may be told to stop
    superseded_turn_id: int | None = None
    merged: bool = False  # the message joined a turn that was already waiting
    # when its turn may be claimed, if later than now (a debounce window): wake then
    available_at: float | None = None
    deliveries: bool = False  # the ingest wrote deliveries (an away text, a handoff)


@dataclass(slots=True)
class TurnDecision:
    """The pure decision taken inside the ingest transaction (see ``pipeline.decisions``)."""

    create_turn: bool
    owner: str
    reason: str | None = None
    # the route's policies when the message must look at its conversation's open turns
    # (debounce, in-flight rule: ``policies.window.plan_window``); None: a turn of its own
    window: RoutePolicies | None = None
    closes_window: bool = False  # an attachment or a close keyword ends the window at once
    fresh: bool = False  # the bot's session expired: the agent starts a new one
    # written in the ingest transaction: bot messages (an away text) and actions (handoff)
    deliveries: list[DeliverySpec] = field(default_factory=list)
    # a private note for the human who takes over: its text (the agent's summary), or None
    # for the last ``summary_messages`` messages; ``summary_messages`` 0: no note
    summary: str | None = None
    summary_messages: int = 0


@dataclass(slots=True)
class ClaimedTurn:
    """A turn this process now holds a lease on, with what the agent needs to answer it."""

    id: int
    conversation_id: str
    agent_id: str
    route_id: int | None
    kind: str
    attempts: int
    response_mode: str
    created_at: float
    conversation: ConversationRecord
    messages: list[MessageRecord]
    contact: ContactRecord | None
    # the agent starts a new session: the bot's session for the conversation expired
    fresh: bool = False

    @property
    def key(self) -> str:
        return f"t_{self.id}"


@dataclass(slots=True)
class DeliverySpec:
    """One outbound action to write in the outbox."""

    kind: str  # message | typing_on | typing_off | handoff | note (private, for the team)
    max_attempts: int
    text: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ClaimedDelivery:
    id: int
    conversation_id: str
    turn_id: int | None
    message_id: str | None
    kind: str
    text: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    idempotency_key: str
    uncertain: bool  # an earlier attempt's outcome is unknown (its lease expired mid-send)
    conversation: ConversationRecord
    send_started_at: float | None = None  # when the latest send began (uncertain: the lost one)
    receipt_at: float | None = None  # the channel echoed this delivery back: it is there
    receipt_external_id: str | None = None


@dataclass(slots=True)
class CompletedTurn:
    """Result of writing a turn's outcome. ``ok`` is False when the lease was lost."""

    ok: bool
    reply_message_id: str | None = None
    delivered: bool = False  # False when a human owns the conversation: reply kept as a note
    delivery_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class DeadLetter:
    id: int
    conversation_id: str
    channel: str
    channel_key: str
    kind: str
    text: str | None
    attempts: int
    last_error: str | None
    created_at: float
    turn_id: int | None
