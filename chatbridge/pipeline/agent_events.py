"""What agents do between turns: proactive messages, typing, streamed chunks, and the
owner-change events the bridge tells them about.

The hub calls these (``on_proactive``, ``on_typing``, ``on_chunk``) for frames that are not
a turn's answer. An agent may only write into conversations of inboxes routed to it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from chatbridge.pipeline.decisions import TYPING_ATTEMPTS, with_attachments
from chatbridge.store.records import ConversationRecord, DeliverySpec, Route

if TYPE_CHECKING:
    from chatbridge.channels.base import ChannelAdapter
    from chatbridge.channels.webchat_live import LiveHub
    from chatbridge.config import Settings
    from chatbridge.metrics import Metrics
    from chatbridge.store import Store
    from chatbridge.transports.hub import AgentHub

log = logging.getLogger("chatbridge.bridge")


class AgentEvents:
    """``Bridge``'s handling of agents' own frames (a mixin: ``Bridge`` provides what is
    declared here)."""

    settings: Settings
    store: Store
    metrics: Metrics
    hub: AgentHub
    channels: dict[str, ChannelAdapter]
    webchat_live: LiveHub
    _conv_keys: OrderedDict[str, tuple[str, int]]

    if TYPE_CHECKING:

        def route_for(self, channel: str, inbox_id: int) -> Route | None: ...
        def wake_deliveries(self) -> None: ...
        def shows_typing_on(self, channel: str) -> bool: ...

    async def notify_agent_owner(
        self, agent_id: str, conversation_id: str, owner: str, reason: str
    ) -> None:
        await self.hub.send_event(
            agent_id,
            {
                "type": "conversation_event",
                "event": "owner_changed",
                "conversation_id": conversation_id,
                "owner": owner,
                "reason": reason,
            },
        )

    def _routed_to(self, agent_id: str, conv: ConversationRecord) -> bool:
        """Whether ``conv``'s route names ``agent_id``.

        Agents authenticate one by one (per-agent tokens), so an agent may only write into
        conversations of inboxes routed to it, never into another agent's customers'.
        """
        route = self.route_for(conv.channel, conv.inbox_id)
        return route is not None and route.agent_id == agent_id

    async def _on_proactive(self, agent_id: str, frame: dict[str, Any]) -> None:
        conversation_id = str(frame.get("conversation_id") or "")
        conv = await self.store.get_conversation(conversation_id)
        if conv is None or not self._routed_to(agent_id, conv):
            log.warning(
                "agent %s wrote to %s conversation %s",
                agent_id,
                "unknown" if conv is None else "another agent's",
                conversation_id,
            )
            self.metrics.agent_replies_dropped.labels(agent_id).inc()
            return
        text = frame.get("content")
        attachments = frame.get("attachments") or []
        extras = {k: frame[k] for k in ("template", "interactive") if frame.get(k)}
        specs: list[DeliverySpec] = []
        if text or attachments or "template" in extras:
            specs.append(DeliverySpec("message", self.settings.delivery_max_attempts, text=text))
            specs = with_attachments(specs, attachments, extras)
        handoff = frame.get("type") == "handoff"
        if handoff:
            specs.append(DeliverySpec("handoff", self.settings.delivery_max_attempts))
        await self.store.add_outbound(
            conv.id,
            text=text if text is not None or not attachments else "",
            author="agent",
            attachments=attachments,
            deliveries=specs,
            handoff=handoff,
            meta={"proactive": True, "agent_id": agent_id, **extras},
        )
        self.wake_deliveries()

    async def _channel_key(self, conversation_id: str) -> str | None:
        """The web chat session a streamed chunk goes to; None for other channels, and for
        a route that supersedes turns (a preview of a reply that may yet be cancelled must
        not reach the customer)."""
        cached = self._conv_keys.get(conversation_id)
        if cached is None:
            conv = await self.store.get_conversation(conversation_id)
            if conv is None:
                return None
            cached = (conv.channel_key if conv.channel == "webchat" else "", conv.inbox_id)
            self._conv_keys[conversation_id] = cached
            while len(self._conv_keys) > 10_000:
                self._conv_keys.popitem(last=False)
        key, inbox_id = cached
        if not key:
            return None
        route = self.route_for("webchat", inbox_id)
        if route is not None and route.policies.in_flight == "supersede":
            return None
        return key

    async def _on_chunk(
        self, turn_key: str, conversation_id: str, stream_index: int, content: str
    ) -> None:
        """A streamed piece of a reply: shown live to the conversation's web chat visitors."""
        uid = await self._channel_key(conversation_id)
        if uid is not None:
            self.webchat_live.publish(
                uid,
                {
                    "type": "agent_streaming",
                    "turn_id": turn_key,
                    "stream_index": stream_index,
                    "content": content,
                },
            )

    async def _on_typing(self, agent_id: str, conversation_id: str, on: bool) -> None:
        conv = await self.store.get_conversation(conversation_id)
        if conv is None or not self.shows_typing_on(conv.channel):
            return
        if not self._routed_to(agent_id, conv):
            return
        kind = "typing_on" if on else "typing_off"
        await self.store.add_outbound(
            conv.id, text=None, author="agent", deliveries=[DeliverySpec(kind, TYPING_ATTEMPTS)]
        )
        self.wake_deliveries()
