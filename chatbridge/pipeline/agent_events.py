"""What agents do between turns: proactive messages, typing, streamed chunks, live status
and notices, and the owner-change events the bridge tells them about.

The hub calls these (``on_proactive``, ``on_typing``, ``on_chunk``, ``on_live``,
``on_notice``) for frames that are not a turn's answer. An agent may only write into
conversations of inboxes routed to it.

Live frames (protocol 1.3: ``status_update``, ``progress_update``, ``file_*``) are never
stored: they go to the conversation's web chat visitors as they come, and the latest status
of each conversation is kept for the console (``live_status``) until its turn ends
(``live_begin`` / ``live_end``, around every turn the bridge runs). Notices
(``system_message`` / ``warning_message``) are stored as system messages.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from chatbridge.pipeline.decisions import TYPING_ATTEMPTS, with_attachments
from chatbridge.pipeline.live_status import (
    STATUS_TYPES,
    LiveBoard,
    WorkingNotices,
    widget_frame,
)
from chatbridge.store.records import ClaimedTurn, ConversationRecord, DeliverySpec, Route

if TYPE_CHECKING:
    from chatbridge.channels.base import ChannelAdapter
    from chatbridge.channels.webchat_live import LiveHub
    from chatbridge.cluster import Cluster
    from chatbridge.config import Settings
    from chatbridge.metrics import Metrics
    from chatbridge.store import Store
    from chatbridge.transports.hub import AgentHub

log = logging.getLogger("chatbridge.bridge")

LIVE_CHANNELS = frozenset({"webchat"})
"""Channels that show an agent's live status; the others may get a working notice instead."""

NOTICE_KINDS = {"system_message": "system", "warning_message": "warning"}


class AgentEvents:
    """``Bridge``'s handling of agents' own frames (a mixin: ``Bridge`` provides what is
    declared here)."""

    settings: Settings
    store: Store
    metrics: Metrics
    hub: AgentHub
    channels: dict[str, ChannelAdapter]
    webchat_live: LiveHub
    cluster: Cluster
    live_board: LiveBoard
    working_notices: WorkingNotices
    _distributed: bool
    # conversation id → (channel, channel key, inbox id)
    _conv_keys: OrderedDict[str, tuple[str, str, int]]
    # the turns running here, by turn key
    _running: dict[str, ClaimedTurn]

    if TYPE_CHECKING:

        def route_for(self, channel: str, inbox_id: int) -> Route | None: ...
        async def agent_handoff_outside_turn(
            self, agent_id: str, conv: ConversationRecord, frame: dict[str, Any]
        ) -> None: ...
        def route_by_id(self, route_id: int | None) -> Route | None: ...
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
        return route is not None and route.names(agent_id)

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
        if frame.get("type") == "agent_handoff":  # to another agent, outside a turn (1.3)
            await self.agent_handoff_outside_turn(agent_id, conv, frame)
            return
        text = frame.get("content")
        attachments = frame.get("attachments") or []
        # template, choices (1.2) and rich data (1.3) ride the message as a reply's do
        extras = {k: frame[k] for k in ("template", "interactive", "data") if frame.get(k)}
        specs: list[DeliverySpec] = []
        if text or attachments or extras.keys() & {"template", "data"}:
            specs.append(DeliverySpec("message", self.settings.delivery_max_attempts, text=text))
            specs = with_attachments(specs, attachments, extras)
        handoff = frame.get("type") == "handoff"
        if handoff:
            specs.append(DeliverySpec("handoff", self.settings.delivery_max_attempts))
        await self.store.add_outbound(
            conv.id,
            text=text if text is not None or not (attachments or "data" in extras) else "",
            author="agent",
            attachments=attachments,
            deliveries=specs,
            handoff=handoff,
            meta={"proactive": True, "agent_id": agent_id, **extras},
        )
        self.wake_deliveries()

    async def _conversation_key(self, conversation_id: str) -> tuple[str, str, int] | None:
        """(channel, channel key, inbox id) of a conversation, cached: a conversation's
        address never changes. None for an unknown conversation."""
        cached = self._conv_keys.get(conversation_id)
        if cached is None:
            conv = await self.store.get_conversation(conversation_id)
            if conv is None:
                return None
            cached = (conv.channel, conv.channel_key, conv.inbox_id)
            self._conv_keys[conversation_id] = cached
            while len(self._conv_keys) > 10_000:
                self._conv_keys.popitem(last=False)
        return cached

    async def _channel_key(self, conversation_id: str) -> str | None:
        """The web chat session a streamed chunk goes to; None for other channels, and for
        a route that supersedes turns (a preview of a reply that may yet be cancelled must
        not reach the customer)."""
        cached = await self._conversation_key(conversation_id)
        if cached is None or cached[0] != "webchat":
            return None
        _, key, inbox_id = cached
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

    # ------------------------------------------------------------------ live status (1.3)
    async def _live_conversation(
        self, agent_id: str, frame: dict[str, Any], turn_key: str | None
    ) -> tuple[str, str, str] | None:
        """(conversation id, channel, channel key) a live frame is about, if ``agent_id``
        may speak there: the running turn it names, else its ``conversation_id`` (whose
        route must name the agent)."""
        named = frame.get("conversation_id")
        turn = self._running.get(turn_key) if turn_key else None
        if turn is not None:
            conv = turn.conversation
            if named and named != conv.id:
                return None  # a turn of one conversation, a frame naming another
            route = self.route_for(conv.channel, conv.inbox_id)
            if route is None or not route.names(agent_id):
                return None  # another agent's turn
            return conv.id, conv.channel, conv.channel_key
        conversation_id = named
        if (
            not conversation_id
            and turn_key
            and turn_key.startswith("t_")
            and turn_key[2:].isdigit()
        ):
            # a turn running on another replica (an http-pull agent's frame may land here)
            row = await self.store.get_turn(int(turn_key[2:]))
            if row is not None and row["state"] == "leased":
                conversation_id = row["conversation_id"]
        if not isinstance(conversation_id, str) or not conversation_id:
            return None
        key = await self._conversation_key(conversation_id)
        if key is None:
            return None
        channel, channel_key, inbox_id = key
        route = self.route_for(channel, inbox_id)
        if route is None or not route.names(agent_id):
            return None
        return conversation_id, channel, channel_key

    async def _on_live(self, agent_id: str, frame: dict[str, Any]) -> None:
        """A ``status_update`` / ``progress_update`` / ``file_*`` frame: shown to the web chat
        visitor at once, kept as the conversation's status for the console; never stored."""
        turn_key = frame.get("message_id") if isinstance(frame.get("message_id"), str) else None
        live = widget_frame(frame, turn_key)
        if live is None or self.live_board.ended(turn_key):
            return  # nothing to show, or late: that turn is over
        where = await self._live_conversation(agent_id, frame, turn_key)
        if where is None:
            log.info(
                "agent %s: live %s for a conversation it does not serve (%s); dropped",
                agent_id,
                frame.get("type"),
                frame.get("conversation_id") or turn_key,
            )
            self.metrics.agent_replies_dropped.labels(agent_id).inc()
            return
        conversation_id, channel, channel_key = where
        if channel in LIVE_CHANNELS:
            self.webchat_live.publish(channel_key, live)
        if live["type"] in STATUS_TYPES or live["type"] == "file_processing":
            if self.live_board.update(conversation_id, agent_id, live) is not None:
                if self._distributed:
                    self.cluster.publish(
                        "live_status",
                        {"conversation_id": conversation_id, "agent_id": agent_id, "frame": live},
                    )

    def live_status(self, conversation_id: str) -> dict[str, Any] | None:
        """What the agent is doing in the conversation right now (the console's view), or
        None: no status within the last two minutes, or its turn is over."""
        status = self.live_board.get(conversation_id)
        return status.view() if status is not None else None

    def live_begin(self, turn: ClaimedTurn) -> None:
        """A turn starts running here: its live frames are expected, and on a route with
        ``working_notice_after`` (and a channel without live status) its notice is timed."""
        self._running[turn.key] = turn
        conv = turn.conversation
        if conv.channel in LIVE_CHANNELS or conv.owner != "bot":
            return
        route = self.route_by_id(turn.route_id) or self.route_for(conv.channel, conv.inbox_id)
        after = route.policies.working_notice_after if route is not None else None
        if after:
            self.working_notices.start(turn.id, after)

    def live_end(self, turn: ClaimedTurn) -> None:
        """The turn stopped running here (answered, failed, superseded or given back): its
        status is cleared (``status_clear`` to the web chat, when one was showing) and its
        working notice, if not yet sent, will not be."""
        self._running.pop(turn.key, None)
        self.working_notices.cancel(turn.id)
        status = self.live_board.end_turn(turn.conversation_id, turn.key)
        if status is None:
            return
        conv = turn.conversation
        if conv.channel in LIVE_CHANNELS:
            self.webchat_live.publish(
                conv.channel_key, {"type": "status_clear", "turn_id": status.turn_id or turn.key}
            )
        if self._distributed:
            self.cluster.publish(
                "live_status", {"conversation_id": turn.conversation_id, "end": turn.key}
            )

    async def _write_working_notice(self, turn_id: int) -> None:
        """The timer of ``live_begin`` fired: the turn still runs; tell the customer once."""
        turn = self._running.get(f"t_{turn_id}")
        if turn is None:
            return
        conv = turn.conversation
        route = self.route_by_id(turn.route_id) or self.route_for(conv.channel, conv.inbox_id)
        if route is None:
            return
        written = await self.store.add_notice(
            conv.id,
            text=route.policies.working_notice_text,
            meta={"notice": "system", "working": True, "turn_id": turn.key},
            to_channel=True,
            max_attempts=self.settings.delivery_max_attempts,
            turn=(turn.id, self.settings.instance_id),
            key=f"working:{turn.key}",
        )
        if written.ok:
            log.info("turn %s: working notice sent conversation=%s", turn.key, conv.id)
            self.wake_deliveries()

    # ------------------------------------------------------------------ notices (1.3)
    async def _on_notice(self, agent_id: str, frame: dict[str, Any]) -> None:
        """A ``system_message`` / ``warning_message``: stored as a system message of the
        conversation (meta ``notice``, ``agent_id``); the web chat visitor and the console
        always see it, another channel only with the route's ``notices_to_channel``."""
        kind = NOTICE_KINDS.get(str(frame.get("type")))
        conversation_id = str(frame.get("conversation_id") or "")
        text = frame.get("content")
        conv = await self.store.get_conversation(conversation_id) if conversation_id else None
        if kind is None or not isinstance(text, str) or not text.strip():
            return
        if conv is None or not self._routed_to(agent_id, conv):
            log.warning(
                "agent %s sent a notice to %s conversation %s",
                agent_id,
                "unknown" if conv is None else "another agent's",
                conversation_id,
            )
            self.metrics.agent_replies_dropped.labels(agent_id).inc()
            return
        route = self.route_for(conv.channel, conv.inbox_id)
        to_channel = conv.channel in LIVE_CHANNELS or (
            route is not None and route.policies.notices_to_channel
        )
        written = await self.store.add_notice(
            conv.id,
            text=text,
            meta={"notice": kind, "agent_id": agent_id},
            to_channel=to_channel,
            max_attempts=self.settings.delivery_max_attempts,
        )
        if written.delivered:
            self.wake_deliveries()
