"""The web chat channel: a visitor's message in, "sending" is telling their open widgets.

Inbound: a visitor's message arrives through the web chat APIs (``chatbridge.api.webchat``
and the drop-in action API), which open or resume the session; this channel checks the
message (ids, text) and turns it into the neutral ``InboundMessage`` of the session's
conversation (deduplicated by the client's message id). ``parse`` does the same for a JSON
body ``{"session_id", "text", "client_message_id"}`` of an existing, active session.

Outbound: a reply to a web chat visitor is already in the database when its delivery runs
(the ``messages`` row written with the turn's outcome), and the widget reads its history
from there. So ``send`` only wakes the session's live sockets and long-polls; typing and
handoff are live-only events. A widget that is closed at that moment reads the reply from
its history when it comes back: nothing is lost by a send that reached nobody. The bridge
itself sends nothing a visitor could echo back, so there are no echoes to screen.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from chatbridge.channels.base import Capabilities, ChannelContext, InboundRequest, load_object
from chatbridge.channels.webchat_live import LiveHub
from chatbridge.errors import BadInput, PermanentDelivery
from chatbridge.models import (
    ContactInfo,
    InboundMessage,
    OutboundAction,
    ParsedWebhook,
    SendResult,
)

if TYPE_CHECKING:
    from chatbridge.store import Store
    from chatbridge.store.webchat import WebchatSession

CHANNEL = "webchat"
HANDOFF_NOTICE = "You are being connected to a person. Please wait a moment."
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_MAX_CHARS = 10_000


def check_session_id(session_id: str) -> None:
    """Raises: BadInput ``invalid_session_id``."""
    if not SESSION_ID.match(session_id):
        raise BadInput(
            "invalid_session_id",
            "session_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
        )


def check_client_message_id(client_message_id: str | None) -> None:
    """Raises: BadInput ``invalid_client_message_id``."""
    if client_message_id is not None and not CLIENT_ID.match(client_message_id):
        raise BadInput(
            "invalid_client_message_id",
            "client_message_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
        )


def check_text(text: str, limit: int) -> str:
    """The visitor's text without NULs and outer blanks.

    Raises:
        BadInput: ``empty_message`` (400), ``message_too_long`` (413).
    """
    text = text.replace("\x00", "").strip()
    if not text:
        raise BadInput("empty_message", "the message is empty")
    if len(text) > limit:
        raise BadInput(
            "message_too_long",
            f"the message is longer than {limit} characters",
            status_code=413,
            details={"max_chars": limit, "length": len(text)},
        )
    return text


class WebchatChannel:
    """The ``Channel`` for ``"webchat"``. ``store`` is needed by ``parse`` only (it looks the
    session up); ``session_timeout`` says when a session stops being active."""

    name = CHANNEL
    # no ``notes``: the widget is the visitor's; the team sees a note in the console's
    # conversation view (the stored message), which needs no channel
    # ``choices``: the widget reads a reply's choices from history and shows buttons
    capabilities = Capabilities(typing=True, streaming=True, choices=True)
    signed = False  # the session id is the visitor's credential; nothing is signed

    def __init__(
        self,
        live: LiveHub,
        *,
        store: Store | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        session_timeout: float | None = None,
    ) -> None:
        self.live = live
        self.store = store
        self.max_chars = max_chars
        self.session_timeout = session_timeout

    # ------------------------------------------------------------------ inbound
    def message(
        self,
        session: WebchatSession,
        text: str,
        *,
        client_message_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> InboundMessage:
        """The neutral message a visitor's (checked) ``text`` in ``session`` is."""
        meta: dict[str, Any] = {"session_id": session.id, **(extra or {})}
        if client_message_id:
            meta["client_message_id"] = client_message_id
        return InboundMessage(
            channel=CHANNEL,
            inbox_id=session.inbox_id,
            channel_key=session.uid,
            text=text,
            external_message_id=(
                f"{session.uid}:{client_message_id}" if client_message_id else None
            ),
            contact=ContactInfo(
                external_id=session.uid,
                # what the page said about the visitor (session metadata), so the console
                # shows "Ann" instead of a session id
                name=_meta_text(session.meta, "name"),
                email=_meta_text(session.meta, "email"),
                metadata={"session_id": session.id},
            ),
            context={"channel": "web_widget", "session_id": session.id, "uid": session.uid},
            metadata=meta,
        )

    async def parse(self, request: InboundRequest) -> list[ParsedWebhook]:
        payload = load_object(request.body)
        session_id = payload.get("session_id")
        text = payload.get("text")
        client_message_id = payload.get("client_message_id")
        if not isinstance(session_id, str):
            raise BadInput("invalid_session_id", "session_id must be a string")
        if not isinstance(text, str):
            raise BadInput("invalid_payload", "text must be a string")
        if client_message_id is not None and not isinstance(client_message_id, str):
            raise BadInput("invalid_client_message_id", "client_message_id must be a string")
        check_session_id(session_id)
        check_client_message_id(client_message_id)
        text = check_text(text, self.max_chars)
        if self.store is None:
            raise BadInput("unknown_session", f"no session {session_id}", status_code=404)
        session = await self.store.get_session(session_id, timeout=self.session_timeout)
        if session is None:
            raise BadInput("unknown_session", f"no session {session_id}", status_code=404)
        return [self.message(session, text, client_message_id=client_message_id)]

    def stored(self, message: InboundMessage) -> None:
        self.live.news(message.channel_key)  # the visitor's other tabs show it at once

    # ------------------------------------------------------------------ outbound
    async def send(self, action: OutboundAction) -> SendResult:
        """Wake the visitor's widgets (a message), or publish typing or the handoff notice.

        Raises:
            PermanentDelivery: a private note (``notes`` is false: everything this channel
                shows reaches the visitor; the team reads notes in the console) or an
                unknown action kind.
        """
        uid = action.conversation.channel_key
        match action.kind:
            case "message":
                self.live.news(uid)
            case "typing_on" | "typing_off":
                self.live.publish(uid, {"type": "typing", "on": action.kind == "typing_on"})
            case "handoff":
                self.live.publish(uid, {"type": "system", "text": HANDOFF_NOTICE})
            case "note":
                raise PermanentDelivery(
                    "webchat has no private notes: all it shows reaches the visitor"
                )
            case _:
                raise PermanentDelivery(f"webchat cannot perform action kind {action.kind!r}")
        return SendResult(external_id=None)

    async def already_sent(self, action: OutboundAction) -> bool | None:
        return False  # "send" again: a repeated wake-up is harmless

    async def aclose(self) -> None:
        return None


def build(context: ChannelContext) -> WebchatChannel:
    """The registry's entry point (``"webchat"``)."""
    s = context.settings
    return WebchatChannel(
        context.live,
        store=context.store,
        max_chars=s.webchat_max_message_chars,
        session_timeout=s.webchat_session_timeout,
    )


def _meta_text(meta: dict[str, Any], key: str) -> str | None:
    """A session metadata value that is a non-blank string (at most 200 characters), else None."""
    value = meta.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:200]
