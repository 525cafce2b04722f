"""Inbound messages, conversations, contacts and who owns a conversation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, select

from chatbridge import clock
from chatbridge.ids import new_id
from chatbridge.models import InboundMessage
from chatbridge.store import hot_sql
from chatbridge.store import tables as t
from chatbridge.store.base import (
    Conn,
    Decide,
    StoreBase,
    _conv,
    _Duplicate,
    _message,
)
from chatbridge.store.hot import GroupCommit, HotTx, dumps
from chatbridge.store.records import (
    ConversationRecord,
    IngestResult,
    MessageRecord,
    Route,
)


@dataclass(slots=True)
class _Ingest:
    """One inbound message waiting for its group commit."""

    msg: InboundMessage
    route: Route
    response_mode: str
    decide: Decide


class ConversationStore(StoreBase):
    """Inbound messages, conversations, contacts, owner changes."""

    _ingests: GroupCommit[_Ingest, IngestResult]  # built by ``Store``

    async def ingest(
        self,
        msg: InboundMessage,
        *,
        route: Route,
        response_mode: str,
        decide: Decide,
    ) -> IngestResult:
        """Store an inbound message and, if ``decide`` says so, its turn — committed before
        this returns, together with the other messages arriving at the same moment (group
        commit, see ``hot.GroupCommit``).

        Deduplicates on ``msg.delivery_id`` and on ``msg.external_message_id``: a duplicate
        writes nothing at all.
        """
        try:
            return await self._ingests.submit(_Ingest(msg, route, response_mode, decide))
        except _Duplicate as dup:
            return IngestResult(status="duplicate", reason=dup.reason)

    async def _ingest_one(self, tx: HotTx, item: _Ingest) -> IngestResult:
        """One message's writes inside a group-commit transaction.

        A redelivery (same delivery id) is found by its first statement, before anything of
        it is written. A message seen before under another delivery id is found by its
        last: ``_Duplicate`` then aborts the transaction, and the group commit writes the
        batch's other messages again without it.
        """
        msg, route, q = item.msg, item.route, self._sql
        now = clock.now()
        if msg.delivery_id:
            key = f"{msg.channel}:{msg.delivery_id}"
            if await tx.fetchrow(q.receipt, (key, now)) is None:
                return IngestResult(status="duplicate", reason="delivery_id")
        contact_id = None
        contact = msg.contact
        if contact is not None and contact.external_id:
            row = await tx.fetchrow(
                q.contact_upsert,
                (
                    new_id("p"),
                    msg.channel,
                    contact.external_id,
                    contact.name,
                    contact.email,
                    contact.phone,
                    dumps(contact.metadata),
                    now,
                ),
            )
            contact_id = str(row[0])
        conv = hot_sql.conversation(
            await tx.fetchrow(
                q.conversation_upsert,
                (
                    new_id("c"),
                    msg.channel,
                    msg.channel_key,
                    msg.inbox_id,
                    contact_id,
                    msg.external_status,
                    now,
                ),
            )
        )
        decision = item.decide(conv)
        if decision.owner != conv.owner:
            await self._set_owner_hot(tx, conv.id, decision.owner, now)
        message_id = new_id("m")
        turn_id = None
        if decision.create_turn:
            # The turn first, so the message row is written once, already linked to it.
            turn_row = await tx.fetchrow(
                q.turn_insert,
                (conv.id, route.agent_id, route.id, now, item.response_mode, dumps([message_id])),
            )
            turn_id = turn_row[0]
        dedupe_key = f"{msg.channel}:{msg.external_message_id}" if msg.external_message_id else None
        inserted = await tx.fetchrow(
            q.message_insert_new,
            (
                message_id,
                conv.id,
                "in",
                "contact",
                msg.text,
                msg.content_type,
                dumps(
                    [
                        {"url": a.url, "mime": a.mime, "size": a.size, "name": a.name}
                        for a in msg.attachments
                    ]
                ),
                dedupe_key,
                msg.external_message_id,
                turn_id,
                dumps({"context": msg.context, **msg.metadata}),
                msg.received_at,
            ),
        )
        if inserted is None:
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
