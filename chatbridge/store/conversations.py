"""Inbound messages, conversations, contacts and who owns a conversation."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import and_, select

from chatbridge import clock
from chatbridge.ids import new_id
from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.store import tables as t
from chatbridge.store.base import (
    Conn,
    Decide,
    StoreBase,
    _conv,
    _Duplicate,
    _message,
)
from chatbridge.store.records import (
    ConversationRecord,
    IngestResult,
    MessageRecord,
    Route,
)


class ConversationStore(StoreBase):
    """Inbound messages, conversations, contacts, owner changes."""

    async def ingest(
        self,
        msg: InboundMessage,
        *,
        route: Route,
        response_mode: str,
        decide: Decide,
    ) -> IngestResult:
        """Store an inbound message and, if ``decide`` says so, its turn — one transaction.

        Deduplicates on ``msg.delivery_id`` and on ``msg.external_message_id``: a duplicate
        writes nothing at all.
        """
        try:
            return await self._ingest(msg, route=route, response_mode=response_mode, decide=decide)
        except _Duplicate as dup:
            return IngestResult(status="duplicate", reason=dup.reason)

    async def _ingest(
        self, msg: InboundMessage, *, route: Route, response_mode: str, decide: Decide
    ) -> IngestResult:
        now = clock.now()
        async with self._tx() as conn:
            await self._take_receipt(conn, msg.channel, msg.delivery_id)
            dedupe_key = (
                f"{msg.channel}:{msg.external_message_id}" if msg.external_message_id else None
            )
            contact_id = await self._upsert_contact(conn, msg.channel, msg.contact, now)
            conv = await self._upsert_conversation(
                conn,
                channel=msg.channel,
                channel_key=msg.channel_key,
                inbox_id=msg.inbox_id,
                contact_id=contact_id,
                external_status=msg.external_status,
                now=now,
            )
            decision = decide(conv)
            if decision.owner != conv.owner:
                await self._set_owner(conn, conv.id, decision.owner)
            message_id = new_id("m")
            turn_id = None
            if decision.create_turn:
                # The turn first, so the message row is written once, already linked to it.
                turn = {
                    "conversation_id": conv.id,
                    "agent_id": route.agent_id,
                    "route_id": route.id,
                    "kind": "message",
                    "state": "pending",
                    "attempts": 0,
                    "available_at": now,
                    "response_mode": response_mode,
                    "message_ids": [message_id],
                    "created_at": now,
                }
                turn_id = (await conn.execute(self._stmts.turn_insert, turn)).scalar_one()
            message = {
                "id": message_id,
                "conversation_id": conv.id,
                "direction": "in",
                "author": "contact",
                "text": msg.text,
                "content_type": msg.content_type,
                "attachments": [
                    {"url": a.url, "mime": a.mime, "size": a.size, "name": a.name}
                    for a in msg.attachments
                ],
                "dedupe_key": dedupe_key,
                "external_id": msg.external_message_id,
                "turn_id": turn_id,
                "meta": {"context": msg.context, **msg.metadata},
                "created_at": msg.received_at,
            }
            inserted = await conn.execute(self._stmts.message_insert_new, message)
            if inserted.rowcount == 0:
                # Seen before: abort the whole transaction (receipt, upserts, turn included).
                raise _Duplicate("message_id")
            if turn_id is None:
                return IngestResult(
                    status="stored",
                    conversation_id=conv.id,
                    message_id=message_id,
                    reason=decision.reason,
                )
        return IngestResult(
            status="accepted", conversation_id=conv.id, message_id=message_id, turn_id=turn_id
        )

    async def _take_receipt(self, conn: Conn, channel: str, delivery_id: str | None) -> None:
        """Record the channel's delivery id; a second delivery of it aborts the transaction."""
        if not delivery_id:
            return
        receipt = await conn.execute(
            self._stmts.receipt, {"key": f"{channel}:{delivery_id}", "created_at": clock.now()}
        )
        if receipt.rowcount == 0:
            raise _Duplicate("delivery_id")

    async def _upsert_contact(
        self, conn: Conn, channel: str, contact: ContactInfo | None, now: float
    ) -> str | None:
        if contact is None or not contact.external_id:
            return None
        row = {
            "id": new_id("p"),
            "channel": channel,
            "external_id": contact.external_id,
            "name": contact.name,
            "email": contact.email,
            "phone": contact.phone,
            "meta": contact.metadata,
            "created_at": now,
            "updated_at": now,
        }
        return str((await conn.execute(self._stmts.contact_upsert, row)).scalar_one())

    async def _upsert_conversation(
        self,
        conn: Conn,
        *,
        channel: str,
        channel_key: str,
        inbox_id: int,
        contact_id: str | None,
        external_status: str | None,
        now: float,
    ) -> ConversationRecord:
        row = {
            "id": new_id("c"),
            "channel": channel,
            "channel_key": channel_key,
            "inbox_id": inbox_id,
            "contact_id": contact_id,
            "owner": "bot",
            "status": "open",
            "external_status": external_status,
            "meta": {},
            "created_at": now,
            "last_activity_at": now,
        }
        return _conv((await conn.execute(self._stmts.conversation_upsert, row)).one())

    async def apply_owner_signal(
        self,
        *,
        channel: str,
        channel_key: str,
        inbox_id: int,
        decide_owner: Callable[[ConversationRecord], str | None],
        external_status: str | None = None,
        note_text: str | None = None,
        note_author: str = "human",
        external_message_id: str | None = None,
        delivery_id: str | None = None,
    ) -> tuple[ConversationRecord | None, bool]:
        """Record a change of hands/status; returns (conversation, duplicate)."""
        try:
            conv = await self._apply_owner_signal(
                channel=channel,
                channel_key=channel_key,
                inbox_id=inbox_id,
                decide_owner=decide_owner,
                external_status=external_status,
                note_text=note_text,
                note_author=note_author,
                external_message_id=external_message_id,
                delivery_id=delivery_id,
            )
        except _Duplicate:
            return None, True
        return conv, False

    async def _apply_owner_signal(
        self,
        *,
        channel: str,
        channel_key: str,
        inbox_id: int,
        decide_owner: Callable[[ConversationRecord], str | None],
        external_status: str | None,
        note_text: str | None,
        note_author: str,
        external_message_id: str | None,
        delivery_id: str | None,
    ) -> ConversationRecord:
        now = clock.now()
        async with self._tx() as conn:
            await self._take_receipt(conn, channel, delivery_id)
            dedupe_key = f"{channel}:{external_message_id}" if external_message_id else None
            if dedupe_key is not None and note_text is None:
                seen = await conn.execute(
                    select(t.messages.c.id).where(t.messages.c.dedupe_key == dedupe_key)
                )
                if seen.first() is not None:
                    raise _Duplicate("message_id")
            conv = await self._upsert_conversation(
                conn,
                channel=channel,
                channel_key=channel_key,
                inbox_id=inbox_id,
                contact_id=None,
                external_status=external_status,
                now=now,
            )
            new_owner = decide_owner(conv)
            if new_owner is not None and new_owner != conv.owner:
                await self._set_owner(conn, conv.id, new_owner)
                conv.owner = new_owner
            if note_text is not None:
                inserted = await conn.execute(
                    self._stmts.message_insert_new,
                    {
                        "id": new_id("m"),
                        "conversation_id": conv.id,
                        "direction": "out",
                        "author": note_author,
                        "text": note_text,
                        "content_type": "text",
                        "attachments": [],
                        "dedupe_key": dedupe_key,
                        "external_id": external_message_id,
                        "turn_id": None,
                        "meta": {},
                        "created_at": now,
                    },
                )
                if inserted.rowcount == 0:  # seen before: roll back the owner change too
                    raise _Duplicate("message_id")
        return conv

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(t.conversations).where(t.conversations.c.id == conversation_id)
                )
            ).one_or_none()
        return _conv(row) if row else None

    async def find_conversation(self, channel: str, channel_key: str) -> ConversationRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(t.conversations).where(
                        and_(
                            t.conversations.c.channel == channel,
                            t.conversations.c.channel_key == channel_key,
                        )
                    )
                )
            ).one_or_none()
        return _conv(row) if row else None

    async def recent_messages(self, conversation_id: str, limit: int) -> list[MessageRecord]:
        """The last ``limit`` messages of a conversation, oldest first."""
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(t.messages)
                    .where(t.messages.c.conversation_id == conversation_id)
                    .order_by(t.messages.c.created_at.desc(), t.messages.c.id.desc())
                    .limit(limit)
                )
            ).all()
        return [_message(r) for r in reversed(rows)]

    async def list_messages(self, conversation_id: str, limit: int = 50) -> list[MessageRecord]:
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(t.messages)
                    .where(t.messages.c.conversation_id == conversation_id)
                    .order_by(t.messages.c.created_at, t.messages.c.id)
                    .limit(limit)
                )
            ).all()
        return [_message(r) for r in rows]
