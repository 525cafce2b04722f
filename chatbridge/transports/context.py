"""``TransportContext``: what the transports of one hub share.

A transport is built from its agent's settings (``agent_id``, ``url``, ``options``) and this
context: the bridge's settings and metrics, the callbacks for frames that are not a turn's
answer (proactive messages, typing, streamed chunks; since protocol 1.3 live frames and
notices), one HTTP client for the HTTP transports, the ``PullBroker`` that http-pull and
http-webhook turns wait in, and the conversation slots that keep one turn per conversation
on a WebSocket at a time. ``link_changed`` tells the hub that an agent's links here opened or
closed (placement across replicas, ``wait_connected``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from chatbridge.config import Settings
from chatbridge.metrics import Metrics
from chatbridge.models import JsonObject
from chatbridge.transports.base import (
    ChunkCallback,
    LiveCallback,
    NoticeCallback,
    ProactiveCallback,
    TypingCallback,
)
from chatbridge.transports.pull import PullBroker, PullPolicy
from chatbridge.transports.turns import ConversationSlots

History = Callable[[str, int], Awaitable[list[Any]]]
"""``(conversation_id, limit) -> earlier messages`` (the store's ``recent_messages``)."""


async def no_history(conversation_id: str, limit: int) -> list[Any]:
    return []


async def _ignore_proactive(agent_id: str, frame: JsonObject) -> None:
    return None


async def _ignore_typing(agent_id: str, conversation_id: str, on: bool) -> None:
    return None


async def ignore_frame(agent_id: str, frame: JsonObject) -> None:
    """The default ``on_live`` / ``on_notice``: a bridge that shows nothing live drops them."""
    return None


def _nothing(agent_id: str, opened: bool, link_id: str | None) -> None:
    return None


def pull_policy(settings: Settings) -> Callable[[str], PullPolicy]:
    """How long an agent's pulled turns stay leased, and how often they are offered."""

    def policy(agent_id: str) -> PullPolicy:
        s = settings
        if agent_id == s.webchat_compat_agent_id:
            # The action API's poller: lease, re-offer a few times, then give up (docs/webchat.md).
            return PullPolicy(
                s.webchat_compat_lease_seconds,
                1 if s.webchat_mark_on_read else s.webchat_compat_max_offers,
            )
        return PullPolicy(s.pull_lease_seconds)

    return policy


@dataclass(eq=False)
class TransportContext:
    """What the transports of one hub share (see the module docstring)."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    on_proactive: ProactiveCallback = _ignore_proactive
    on_typing: TypingCallback = _ignore_typing
    on_chunk: ChunkCallback | None = None
    on_live: LiveCallback = ignore_frame
    """Protocol 1.3 live frames (status, progress, file events), never stored."""
    on_notice: NoticeCallback = ignore_frame
    """Protocol 1.3 ``system_message`` / ``warning_message`` from an agent."""
    history: History = no_history
    http: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(follow_redirects=False)
    )
    pull: PullBroker = field(init=False)
    slots: ConversationSlots = field(default_factory=ConversationSlots)
    link_changed: Callable[[str, bool, str | None], None] = _nothing
    """``(agent_id, opened, link_id)``: a link of the agent opened (``opened``) or closed
    here; ``link_id`` is the name the agent gave it, if any."""

    def __post_init__(self) -> None:
        self.pull = PullBroker(
            pull_policy(self.settings),
            on_chunk=self.on_chunk,
            on_typing=self.on_typing,
            on_live=self.on_live,
            on_notice=self.on_notice,
        )

    @property
    def public_url(self) -> str:
        """Where agents reach this bridge (the ``reply_url`` of webhook turns)."""
        s = self.settings
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        return s.public_url or f"http://{host}:{s.port}"

    async def aclose(self) -> None:
        """Stop the broker and close the HTTP client."""
        self.pull.stop()
        await self.http.aclose()
