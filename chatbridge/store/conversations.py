"""Inbound messages, conversations, contacts and who owns a conversation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import and_, select, update

from chatbridge import clock
from chatbridge.ids import new_id
from chatbridge.models import InboundMessage
from chatbridge.policies.choices import Offer, choice_metadata, could_be_choice, match_choice
from chatbridge.policies.model import RoutePolicies
from chatbridge.policies.window import OpenTurn, WindowPlan, plan_window
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
from chatbridge.store.hot import GroupCommit, HotTx, Row, dumps, loads
from chatbridge.store.hot_sql import PG_BATCH
from chatbridge.store.media import MEDIA_KEY, PlannedMedia, plan_media, queue_media_hot
from chatbridge.store.records import (
    ConversationRecord,
    DeliverySpec,
    IngestResult,
    MessageRecord,
    Route,
    TurnDecision,
)


def _inbound_row(
    msg: InboundMessage,
    message_id: str,
    conversation_id: str,
    turn_id: int | None,
    media: PlannedMedia | None = None,
) -> tuple[Any, ...]:
    """A customer's message as a ``messages`` row (``message_insert_new``,
    ``PG_BATCH.messages``); its dedupe key is the channel's message id. Media to download
    (``media``) are named by their media ids, never by the provider's URLs."""
    external = msg.external_message_id
    meta = msg.metadata
    if media is not None:
        meta = {k: v for k, v in meta.items() if k != MEDIA_KEY}
    return (
        message_id,
        conversation_id,
        "in",
        "contact",
        msg.text,
        msg.content_type,
        dumps(
            media.attachments
            if media is not None
            else [
                {"url": a.url, "mime": a.mime, "size": a.size, "name": a.name}
                for a in msg.attachments
            ]
        ),
        f"{msg.channel}:{external}" if external else None,
        external,
        turn_id,
        dumps({"context": msg.context, **meta}),
        msg.received_at,
    )


OFFER_KEY = "offer"
"""``conversations.meta[OFFER_KEY]``: the choices (protocol 1.2 ``interactive``) of our newest
message, while it is the newest; set and cleared by ``ConversationStore.set_offer``."""


def _with_choice(msg: InboundMessage, conv: ConversationRecord) -> InboundMessage:
    """``msg`` naming the option it picks (``metadata.interactive``) when it answers the
    conversation's open offer by number or title. The offer comes with the conversation row
    the ingest reads anyway: a conversation without one costs a dict lookup."""
    raw = conv.meta.get(OFFER_KEY) if conv.meta else None
    if raw is None or "interactive" in msg.metadata or not could_be_choice(msg.text):
        return msg
    offer = Offer.from_json(raw)
    option = None if offer is None else match_choice(msg.text, offer)
    if option is None:
        return msg
    return replace(msg, metadata={**msg.metadata, "interactive": choice_metadata(option)})


def _batchable(item: _Ingest) -> bool:
    """Whether a message may be written set-wise: a route without policies, no media."""
    return item.route.policies.is_default() and MEDIA_KEY not in item.msg.metadata


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

    async def set_offer(self, conversation_id: str, offer: dict[str, Any] | None) -> None:
        """Open (``offer``: a reply's ``interactive`` JSON) or close (None) the choices a
        customer's typed answer is matched against (``OFFER_KEY``). Called as our messages go
        out: only for one with choices, or while an offer is open."""
        c = t.conversations
        async with self._tx() as conn:
            row = (await conn.execute(select(c.c.meta).where(c.c.id == conversation_id))).first()
            if row is None:
                return
            meta = dict(row.meta or {})
            if offer is None:
                if meta.pop(OFFER_KEY, None) is None:
                    return
            else:
                meta[OFFER_KEY] = offer
            await conn.execute(update(c).where(c.c.id == conversation_id).values(meta=meta))

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
            contact_id = str(cast(Row, row)[0])  # an upsert RETURNING: one row
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
        msg = _with_choice(msg, conv)
        decision = item.decide(conv)
        if decision.owner != conv.owner:
            await self._set_owner_hot(tx, conv.id, decision.owner, now)
        message_id = new_id("m")
        turn_id = None
        merged = False
        superseded = None
        available_at = None
        if decision.create_turn and decision.window is not None:
            turn_id, merged, superseded, available_at = await self._windowed_turn(
                tx, conv.id, item, decision, message_id, now, conv.meta
            )
        elif decision.create_turn:
            # The turn first, so the message row is written once, already linked to it.
            turn_row = await tx.fetchrow(
                q.turn_insert,
                (
                    conv.id,
                    route.queued_agent(conv.meta, item.msg.metadata),
                    route.id,
                    now,
                    item.response_mode,
                    dumps([message_id]),
                    decision.fresh,
                ),
            )
            turn_id = cast(Row, turn_row)[0]  # INSERT … RETURNING: one row
        # media to download: their jobs go in this transaction (only media messages pay)
        media = plan_media(msg.metadata[MEDIA_KEY]) if MEDIA_KEY in msg.metadata else None
        inserted = await tx.fetchrow(
            q.message_insert_new, _inbound_row(msg, message_id, conv.id, turn_id, media)
        )
        if inserted is None:
            # Seen before: abort the whole transaction (receipt, upserts, turn included).
            raise _Duplicate("message_id")
        if media is not None:
            await queue_media_hot(
                tx,
                media,
                conversation_id=conv.id,
                message_id=message_id,
                turn_id=turn_id,
                turn_at=available_at or now,
                now=now,
            )
        for spec in decision.deliveries:
            if spec.kind == "message":
                await self._bot_message_hot(tx, conv.id, None, spec, now)
            else:
                await self._insert_delivery_hot(tx, conv.id, None, None, spec, now)
        if decision.summary_messages:
            await self._handoff_note_hot(
                tx,
                conv.id,
                None,
                summary=decision.summary,
                last=decision.summary_messages,
                why=decision.reason or "handoff",
                now=now,
            )
        if turn_id is None:
            return IngestResult(
                status="stored",
                conversation_id=conv.id,
                message_id=message_id,
                reason=decision.reason,
                deliveries=bool(decision.deliveries or decision.summary_messages),
            )
        return IngestResult(
            status="accepted",
            conversation_id=conv.id,
            message_id=message_id,
            turn_id=turn_id,
            superseded_turn_id=superseded,
            merged=merged,
            available_at=available_at if available_at and available_at > now else None,
        )

    async def _windowed_turn(
        self,
        tx: HotTx,
        conversation_id: str,
        item: _Ingest,
        decision: TurnDecision,
        message_id: str,
        now: float,
        conv_meta: dict[str, Any] | None = None,
    ) -> tuple[int, bool, int | None, float]:
        """The turn of a message whose route debounces or has an in-flight rule: merged into
        the conversation's waiting turn, or a new one — superseding the turn in flight when
        the rule says so (``policies.window``). Returns (turn id, merged, superseded turn
        id, when the turn may be claimed).

        Safe across replicas: the conversation upsert before this holds the conversation's
        row until commit (PostgreSQL; SQLite has one writer), so messages of one
        conversation are planned one after another. A worker claiming the waiting turn
        meanwhile is caught by the fenced ``turn_merge`` (pending and unstarted only); the
        message is then planned again against the turn as it now is. Superseding takes the
        running turn's lease
        away in this transaction: its completion, fenced by that lease, writes nothing.
        """
        q = self._sql
        policies = cast(RoutePolicies, decision.window)
        for _ in range(3):
            open_turns = [
                OpenTurn(r[0], r[1], r[2], r[3], r[4], tuple(loads(r[5]) or []))
                for r in await tx.fetch(q.open_turns, (conversation_id,))
            ]
            plan = plan_window(
                open_turns, now=now, policies=policies, closes=decision.closes_window
            )
            if plan.action != "merge":
                break
            target = next(t for t in open_turns if t.id == plan.turn_id)
            ids = dumps([*target.message_ids, message_id])
            if await tx.fetchrow(q.turn_merge, (target.id, ids, plan.available_at, decision.fresh)):
                return target.id, True, None, plan.available_at
            # a worker claimed it in between: plan again with the turn as it is now (under
            # supersede it is then cancelled; else this message opens a window of its own)
        else:
            plan = WindowPlan("new", now)
        carried: list[str] = []
        fresh = decision.fresh
        superseded = None
        if plan.action == "supersede" and plan.turn_id is not None:
            row = await tx.fetchrow(q.turn_supersede, (plan.turn_id, now))
            if row is not None:  # else it finished first: its reply stands
                superseded = plan.turn_id
                carried = list(loads(row[0]) or [])
                fresh = fresh or bool(row[1])
                await self._close_typing_hot(tx, conversation_id, superseded, now)
        route = item.route
        turn_row = await tx.fetchrow(
            q.turn_insert_at,
            (
                conversation_id,
                route.queued_agent(conv_meta, item.msg.metadata),
                route.id,
                now,
                item.response_mode,
                dumps([*carried, message_id]),
                fresh,
                plan.available_at,
            ),
        )
        return int(cast(Row, turn_row)[0]), False, superseded, plan.available_at

    async def _close_typing_hot(
        self, tx: HotTx, conversation_id: str, turn_id: int, now: float
    ) -> None:
        """A superseded turn's typing indicator: dropped if it never went out, else switched
        off (the turn that replaces it shows its own)."""
        q = self._sql
        await tx.run(q.typing_unsent, (turn_id, now))
        if await tx.fetchrow(q.typing_shown, (turn_id,)) is not None:
            await self._insert_delivery_hot(
                tx, conversation_id, turn_id, None, DeliverySpec("typing_off", 3), now
            )

    async def _ingest_many(self, tx: HotTx, items: list[_Ingest]) -> list[IngestResult]:
        """A group commit's messages. On PostgreSQL, written set-wise (``PG_BATCH``) in rounds
        that hold each conversation at most once, in arrival order, so every message sees
        its conversation as the ones before it left it — as if each had its own transaction.
        """
        if tx.dialect != "postgresql":
            return [await self._ingest_one(tx, item) for item in items]
        results: list[IngestResult | None] = [None] * len(items)
        # A route with policies may look at its conversation's turns or write more than a
        # turn: its messages are written one at a time, in arrival order, after the rest
        # (all messages of a conversation share its route, so none is split across paths).
        # Media messages (download jobs to queue) go that way too, and with them every other
        # message of their conversation in this commit, so its order is kept.
        if not all(_batchable(item) for item in items):
            slow = {(it.msg.channel, it.msg.channel_key) for it in items if not _batchable(it)}
            plain = [
                i
                for i, item in enumerate(items)
                if (item.msg.channel, item.msg.channel_key) not in slow
            ]
            if plain:
                written = await self._ingest_many(tx, [items[i] for i in plain])
                for i, result in zip(plain, written, strict=True):
                    results[i] = result
            for i, item in enumerate(items):
                if results[i] is None:
                    results[i] = await self._ingest_one(tx, item)
            return [r for r in results if r is not None]
        rounds: list[list[int]] = []
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(items):
            key = (item.msg.channel, item.msg.channel_key)
            n = seen.get(key, 0)
            seen[key] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(index)
        for indexes in rounds:
            await self._ingest_round(tx, [(i, items[i]) for i in indexes], results)
        return [r for r in results if r is not None]

    async def _ingest_round(
        self,
        tx: HotTx,
        batch: list[tuple[int, _Ingest]],
        results: list[IngestResult | None],
    ) -> None:
        """One round of ``_ingest_many`` on PostgreSQL: five statements for all its messages.

        A message seen before under another delivery id raises ``_Duplicate``: the group
        commit then writes the batch again one message at a time (``_ingest_one``)."""
        q = PG_BATCH
        now = clock.now()
        live = batch
        keyed = [
            (i, f"{it.msg.channel}:{it.msg.delivery_id}") for i, it in batch if it.msg.delivery_id
        ]
        if keyed:
            fresh = {r[0] for r in await tx.fetch(q.receipts, ([k for _, k in keyed], now))}
            duplicates = set()
            for i, receipt in keyed:
                if receipt in fresh:
                    fresh.discard(receipt)  # a second message with the same key is a duplicate
                else:
                    duplicates.add(i)
                    results[i] = IngestResult(status="duplicate", reason="delivery_id")
            live = [(i, it) for i, it in batch if i not in duplicates]
            if not live:
                return
        # Contacts, merged as one upsert after another would leave them (the last value that
        # is not null wins; the first row's id and metadata are the ones inserted).
        merged: dict[tuple[str, str], list[Any]] = {}
        for _, it in live:
            c = it.msg.contact
            if c is None or not c.external_id:
                continue
            key = (it.msg.channel, c.external_id)
            row = merged.get(key)
            if row is None:
                merged[key] = [
                    new_id("p"),
                    key[0],
                    key[1],
                    c.name,
                    c.email,
                    c.phone,
                    dumps(c.metadata),
                ]
            else:
                for slot, value in ((3, c.name), (4, c.email), (5, c.phone)):
                    if value is not None:
                        row[slot] = value
        contact_ids: dict[tuple[str, str], str] = {}
        if merged:
            columns = list(zip(*merged.values(), strict=True))
            rows = await tx.fetch(q.contacts, (*[list(c) for c in columns], now))
            contact_ids = {(r[1], r[2]): str(r[0]) for r in rows}

        def contact_of(it: _Ingest) -> str | None:
            c = it.msg.contact
            if c is None or not c.external_id:
                return None
            return contact_ids[(it.msg.channel, c.external_id)]

        rows = await tx.fetch(
            q.conversations,
            (
                [new_id("c") for _ in live],
                [it.msg.channel for _, it in live],
                [it.msg.channel_key for _, it in live],
                [it.msg.inbox_id for _, it in live],
                [contact_of(it) for _, it in live],
                [it.msg.external_status for _, it in live],
                now,
            ),
        )
        convs = {(r[1], r[2]): hot_sql.conversation(r) for r in rows}
        planned: list[tuple[int, _Ingest, ConversationRecord, str, str | None]] = []
        turn_rows: list[tuple[str, str, int, str, str]] = []
        for i, it in live:
            conv = convs[(it.msg.channel, it.msg.channel_key)]
            decision = it.decide(conv)
            if decision.owner != conv.owner:
                await self._set_owner_hot(tx, conv.id, decision.owner, now)
            message_id = new_id("m")
            planned.append(
                (i, it, conv, message_id, None if decision.create_turn else decision.reason or "")
            )
            if decision.create_turn:
                agent_id = it.route.queued_agent(conv.meta, it.msg.metadata)
                turn_rows.append(
                    (conv.id, agent_id, it.route.id, it.response_mode, dumps([message_id]))
                )
        turn_ids: dict[str, int] = {}
        if turn_rows:
            columns = list(zip(*turn_rows, strict=True))
            rows = await tx.fetch(q.turns, (*[list(c) for c in columns], now))
            turn_ids = {r[1]: r[0] for r in rows}
        messages = [
            _inbound_row(_with_choice(it.msg, conv), message_id, conv.id, turn_ids.get(conv.id))
            for _, it, conv, message_id, _ in planned
        ]
        columns = list(zip(*messages, strict=True))
        inserted = await tx.fetch(q.messages, [list(c) for c in columns])
        if len(inserted) != len(messages):
            raise _Duplicate("message_id")  # seen before: the batch goes again one by one
        for i, _, conv, message_id, reason in planned:
            turn_id = turn_ids.get(conv.id)
            if turn_id is None:
                results[i] = IngestResult(
                    status="stored",
                    conversation_id=conv.id,
                    message_id=message_id,
                    reason=reason or None,
                )
            else:
                results[i] = IngestResult(
                    status="accepted",
                    conversation_id=conv.id,
                    message_id=message_id,
                    turn_id=turn_id,
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
