"""What both web chat APIs (the native one and the drop-in action API) do with a visitor.

Open or resume a session, hand a visitor's message to the ``webchat`` channel (which checks
it and makes it the neutral inbound message, see ``chatbridge.channels.webchat``) and store
it, read a session's history after a cursor and wait for news. Routing, turns, handoff and
replies are the core bridge's, unchanged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chatbridge.channels.interactive import choice_metadata, open_offer
from chatbridge.channels.webchat import (
    CLIENT_ID,
    SESSION_ID,
    WebchatChannel,
    check_client_message_id,
    check_session_id,
    check_text,
)
from chatbridge.errors import BadInput, UnknownInbox
from chatbridge.media.signing import MediaSigner, signed_attachment, stored_media_id
from chatbridge.pipeline import webchat_sessions as sessions
from chatbridge.store.records import MessageRecord
from chatbridge.store.webchat import WEBCHAT, WebchatSession
from chatbridge.webchat.uploads import check_file_ids, session_files

if TYPE_CHECKING:
    from chatbridge.pipeline.bridge import Bridge

__all__ = ["CLIENT_ID", "SESSION_ID", "Posted", "WebchatService", "iso", "message_view"]

ROLES = {"contact": "user", "agent": "agent", "human": "human", "system": "system"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_session_id() -> str:
    return "ws_" + os.urandom(12).hex()


def message_view(m: MessageRecord, signer: MediaSigner | None = None) -> dict[str, Any]:
    """A history entry as the widget sees it; with ``signer``, attachments of stored files
    (a visitor's upload, an agent's ``media:<id>``) carry a short-lived signed ``url``."""
    out: dict[str, Any] = {
        "id": m.id,
        "role": ROLES.get(m.author, m.author),
        "text": m.text,
        "created_at": iso(m.created_at),
    }
    sender = m.meta.get("sender_name")
    if m.author == "human" and isinstance(sender, str) and sender:
        out["sender_name"] = sender  # the operator who wrote it (console operators)
    cmid = m.meta.get("client_message_id")
    if cmid:
        out["client_message_id"] = cmid
    if m.direction == "out" and m.turn_id is not None:
        out["turn_id"] = f"t_{m.turn_id}"
    if m.attachments:
        out["attachments"] = (
            [signed_attachment(signer, a) for a in m.attachments] if signer else m.attachments
        )
    picked = m.meta.get("interactive")
    if isinstance(picked, dict):
        # a reply's choices (the widget shows buttons), or the option a visitor picked
        out["interactive"] = picked
    notice = m.meta.get("notice")
    if m.author == "system" and notice in ("system", "warning"):
        out["notice"] = notice  # protocol 1.3: drawn apart from the agent's messages
    data = m.meta.get("data")
    if m.direction == "out" and isinstance(data, dict):
        out["data"] = data  # protocol 1.3 rich data: the widget renders it
    return out


@dataclass(slots=True)
class Posted:
    status: str  # accepted | stored | duplicate
    message: MessageRecord | None
    session: WebchatSession
    new_session: bool
    conversation_id: str | None


class WebchatService:
    def __init__(self, bridge: Bridge) -> None:
        self.b = bridge
        self.store = bridge.store
        self.live = bridge.webchat_live
        self.settings = bridge.settings
        channel = bridge.channels.get(WEBCHAT)
        self.channel = (
            channel
            if isinstance(channel, WebchatChannel)
            else WebchatChannel(
                self.live,
                store=self.store,
                max_chars=self.settings.webchat_max_message_chars,
                session_timeout=self.settings.webchat_session_timeout,
            )
        )

    def view(self, m: MessageRecord) -> dict[str, Any]:
        """``message_view`` with stored files' URLs signed."""
        signed = any(stored_media_id(a) for a in m.attachments)
        return message_view(m, MediaSigner.for_settings(self.settings) if signed else None)

    def views(self, rows: list[MessageRecord]) -> list[dict[str, Any]]:
        return [self.view(m) for m in rows]

    @property
    def timeout(self) -> float:
        return self.settings.webchat_session_timeout

    def check_session_id(self, session_id: str) -> None:
        check_session_id(session_id)

    def check_inbox(self, inbox_id: int) -> None:
        if self.b.route_for(WEBCHAT, inbox_id) is None:
            raise UnknownInbox(WEBCHAT, inbox_id)

    def check_text(self, text: str) -> str:
        return check_text(text, self.settings.webchat_max_message_chars)

    async def open(
        self,
        session_id: str | None,
        *,
        inbox_id: int,
        ip: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> tuple[WebchatSession, bool]:
        """Create or resume a session (an unknown or expired id starts a new one); what
        changed is announced to the widgets and agents (``webchat.sessions``)."""
        if session_id is not None:
            self.check_session_id(session_id)
        if inbox_id == self.settings.webchat_compat_inbox_id:
            await self.b.ensure_webchat_compat_route()
        self.check_inbox(inbox_id)
        session, created = await self.store.open_session(
            session_id or new_session_id(),
            inbox_id=inbox_id,
            timeout=self.timeout,
            ip_address=ip,
            meta=meta,
        )
        sessions.opened(self.b, session, created)
        return session, created

    async def conversation_id(self, session: WebchatSession) -> str | None:
        conv = await self.store.find_conversation(WEBCHAT, session.uid)
        return conv.id if conv else None

    async def post(
        self,
        session_id: str,
        text: str,
        *,
        client_message_id: str | None = None,
        inbox_id: int | None = None,
        ip: str | None = None,
        extra: dict[str, Any] | None = None,
        choice_id: str | None = None,
        files: list[str] | None = None,
    ) -> Posted:
        """Store one visitor message (and its turn). An expired session starts afresh.

        ``inbox_id`` is used only for a session that does not exist at all. ``choice_id`` is
        the option of the conversation's open choices that the visitor clicked: the message
        then carries ``metadata.interactive = {id, title}`` (protocol 1.2). ``files`` are ids
        of the session's uploads: the message's attachments (``media:<id>``); the text may be
        empty then.

        Raises:
            BadInput: ``unknown_choice`` (400) when no open choice has that id,
                ``unknown_file`` / ``invalid_files`` (422) for a file id that is not an upload
                of this session; nothing is stored then.
        """
        check_session_id(session_id)
        check_client_message_id(client_message_id)
        file_ids = check_file_ids(files)
        text = self.check_text(text) if text.strip() or not file_ids else ""
        attachments = await session_files(self.store, session_id, file_ids)
        existing = await self.store.get_session(session_id)
        if existing is not None:
            inbox = existing.inbox_id
        elif inbox_id is not None:
            inbox = inbox_id
        else:
            raise BadInput("unknown_session", f"no session {session_id}", status_code=404)
        session, created = await self.open(session_id, inbox_id=inbox, ip=ip)
        if choice_id is not None:
            extra = {**(extra or {}), "interactive": await self._choice(session, choice_id)}
        inbound = self.channel.message(
            session, text, client_message_id=client_message_id, extra=extra
        )
        inbound.attachments = attachments
        accepted = await self.b.accept(inbound)
        message: MessageRecord | None = None
        if accepted.status == "duplicate" and client_message_id:
            message = await self.store.message_by_dedupe_key(
                f"{WEBCHAT}:{session.uid}:{client_message_id}"
            )
        elif accepted.message_id and accepted.conversation_id:
            # the row just stored, as ``ingest`` wrote it: no need to read it back
            message = MessageRecord(
                id=accepted.message_id,
                conversation_id=accepted.conversation_id,
                direction="in",
                author="contact",
                text=text,
                content_type="text",
                attachments=[
                    {"url": a.url, "mime": a.mime, "size": a.size, "name": a.name}
                    for a in attachments
                ],
                external_id=inbound.external_message_id,
                created_at=inbound.received_at,
                meta={"context": inbound.context, **inbound.metadata},
                turn_id=accepted.turn_id,
            )
        if attachments and accepted.status != "duplicate" and message is not None:
            await self.store.link_uploads(
                file_ids, conversation_id=message.conversation_id, message_id=message.id
            )
        self.channel.stored(inbound)
        return Posted(
            status=accepted.status,
            message=message,
            session=session,
            new_session=created,
            conversation_id=accepted.conversation_id
            or (message.conversation_id if message else None),
        )

    async def _choice(self, session: WebchatSession, choice_id: str) -> dict[str, str]:
        offer = await open_offer(self.store, WEBCHAT, session.uid)
        option = next((o for o in offer.options if o.id == choice_id), None) if offer else None
        if option is None:
            raise BadInput(
                "unknown_choice",
                f"no open choice {choice_id[:200]!r} in this conversation (the bot's last "
                "message offers none, or other ones)",
            )
        return choice_metadata(option)

    async def history(
        self,
        session: WebchatSession,
        *,
        after: str | None = None,
        wait: float = 0.0,
        limit: int = 200,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[MessageRecord]:
        """Messages after ``after``; with ``wait``, hold until there are some, the typing
        indicator changes, the caller is ``gone`` or the bridge stops (long-poll)."""
        event = self.live.news_event(session.uid) if wait > 0 else None
        rows = await self.store.webchat_history(session.uid, after=after, limit=limit)
        if rows or event is None:
            return rows
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not event.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                # Wake now and then to notice a caller that hung up.
                await asyncio.wait_for(event.wait(), min(remaining, 1.0))
            except TimeoutError:
                if gone is not None and await gone():
                    return []
        if self.live.stopping:
            return []
        return await self.store.webchat_history(session.uid, after=after, limit=limit)
