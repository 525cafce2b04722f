"""A web chat session's lifecycle, told to both ends (protocol 1.3 ``session_*`` frames).

- ``session_created``: a session starts (a new id, or an expired one started afresh).
- ``session_updated``: its data changed — a resume brought other ``metadata`` (the page's
  visitor name, e-mail, page…). A plain resume (a page load, a reconnect) changes nothing
  and is not announced: every page view would be.
- ``session_expired``: it was idle past ``CHATBRIDGE_WEBCHAT_SESSION_TIMEOUT``
  (``reason: "idle"``). Sessions still expire lazily (a request on an idle session starts a
  new one), and the bridge's housekeeping also sweeps for them (``expire_idle_sessions``):
  one indexed statement marks the idle sessions nobody was told of yet and returns them, so
  each is announced once, by one replica, while the widget may still be open. A session
  replaced lazily before the sweep saw it is announced when it is replaced.

Each frame goes to the visitor's widgets (``webchat_live.publish``, every replica) and to the
agents of the inbox's route (``hub.send_event``, only those that announced the ``sessions``
feature). Sending never holds up a visitor's request or the housekeeping: it runs in a task
of its own. (Here, under the pipeline, because the bridge's housekeeping runs the sweep; the
web chat service announces what opening a session did through ``opened``.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chatbridge.media.files import forget_unsent_uploads
from chatbridge.store.webchat import WEBCHAT, WebchatSession

if TYPE_CHECKING:
    from chatbridge.pipeline.bridge import Bridge

log = logging.getLogger("chatbridge.webchat")

CREATED = "session_created"
UPDATED = "session_updated"
EXPIRED = "session_expired"

_sending: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak references)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_frame(
    kind: str,
    session: WebchatSession,
    *,
    conversation_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The ``session_*`` frame of ``session`` as an agent gets it (``protocol.SessionCreated``
    and its siblings); the widget's copy adds ``uid``."""
    frame: dict[str, Any] = {
        "type": kind,
        "session_id": session.id,
        "channel": WEBCHAT,
        "data": {
            "uid": session.uid,
            "inbox_id": session.inbox_id,
            "metadata": session.meta,
            "created_at": _iso(session.created_at),
            "last_active": _iso(session.last_active),
        },
        "timestamp": _iso(time.time()),
    }
    if conversation_id is not None:  # absent until the session's first message
        frame["conversation_id"] = conversation_id
    if reason is not None:
        frame["reason"] = reason
    return frame


def route_agents(bridge: Bridge, inbox_id: int) -> list[str]:
    """The agents of the web chat inbox's route: its default agent and its named ones."""
    route = bridge.route_for(WEBCHAT, inbox_id)
    if route is None:
        return []
    return list(dict.fromkeys([route.agent_id, *(a.agent_id for a in route.agents)]))


async def _send(
    bridge: Bridge, session: WebchatSession, frame: dict[str, Any], find_conversation: bool
) -> None:
    if find_conversation:
        try:
            found = await bridge.store.webchat_conversations([session.uid])
        except Exception:  # the store away: the frame goes without it
            log.warning("no conversation id for session %s", session.id, exc_info=True)
            found = {}
        if session.uid in found:
            frame["conversation_id"] = found[session.uid]
    bridge.webchat_live.publish(session.uid, {**frame, "uid": session.uid})
    for agent_id in route_agents(bridge, session.inbox_id):
        try:
            await bridge.hub.send_event(agent_id, frame)
        except Exception:  # an agent that cannot be told is no reason to stop telling others
            log.warning(
                "%s of session %s not sent to %s",
                frame["type"],
                session.id,
                agent_id,
                exc_info=True,
            )


def announce(
    bridge: Bridge,
    session: WebchatSession,
    frame: dict[str, Any],
    *,
    find_conversation: bool = False,
) -> None:
    """Send ``frame`` to the session's widgets and its route's agents, in the background
    (with ``find_conversation``, after reading the session's conversation id)."""
    task = asyncio.get_running_loop().create_task(_send(bridge, session, frame, find_conversation))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


async def drain() -> None:
    """Wait for the announcements under way (tests; a stopping bridge)."""
    while _sending:
        await asyncio.gather(*list(_sending), return_exceptions=True)


def opened(bridge: Bridge, session: WebchatSession, created: bool) -> None:
    """Announce what ``store.open_session`` did: the expired session it replaced (not yet
    announced), a new session, or new metadata on a resumed one."""
    old = session.replaced
    if old is not None:
        announce(bridge, old, session_frame(EXPIRED, old, reason="idle"), find_conversation=True)
    if created:
        announce(bridge, session, session_frame(CREATED, session))
    elif session.meta_changed:
        announce(bridge, session, session_frame(UPDATED, session))


UNSENT_UPLOAD_SECONDS = 24 * 3600
"""How long a visitor's upload that no message sent is kept."""


async def forget_unsent_files(bridge: Bridge) -> int:
    """Remove the web chat uploads no message sent within ``UNSENT_UPLOAD_SECONDS`` (rows and
    bytes): a visitor who picks files and leaves does not fill the media folder."""
    return await forget_unsent_uploads(
        bridge.store, bridge.settings, WEBCHAT, before=time.time() - UNSENT_UPLOAD_SECONDS
    )


async def expire_idle_sessions(bridge: Bridge) -> int:
    """Mark the sessions idle past the timeout that were not announced yet and announce each
    ``session_expired`` once (one statement, and one read of their conversations when there
    are any). Returns how many."""
    expired = await bridge.store.expire_sessions(bridge.settings.webchat_session_timeout)
    if not expired:
        return 0
    conversations = await bridge.store.webchat_conversations([s.uid for s in expired])
    for session in expired:
        frame = session_frame(
            EXPIRED, session, conversation_id=conversations.get(session.uid), reason="idle"
        )
        announce(bridge, session, frame)
    return len(expired)
