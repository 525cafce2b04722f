"""The outbox: deliveries to channels, claimed in order per conversation, retried, dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, update

from chatbridge import clock
from chatbridge.ids import new_id
from chatbridge.store import hot_sql
from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase
from chatbridge.store.hot import GroupCommit, HotTx, list_param, sqlite_sql
from chatbridge.store.hot_sql import PG_BATCH
from chatbridge.store.leases import RELEASED, fenced_update, held_by
from chatbridge.store.records import (
    ClaimedDelivery,
    CompletedTurn,
    DeadLetter,
    DeliverySpec,
)


@dataclass(slots=True)
class _Finish:
    """One finished send waiting for its group commit (see ``finish_delivery``)."""

    delivery_id: int
    owner: str
    external_id: str | None
    claim_next: ClaimedDelivery | None
    lease_seconds: float
    hold: tuple[str, float] | None = None  # (conversation, seconds): see ``finish_delivery``


# The conversation's next delivery waits until $2 (a paced reply's part after its typing
# indicator): only when it is pending and not already due later. Off the hot path: run only
# for a finished ``typing_on`` that carries ``hold_ms``.
_HOLD_NEXT = (
    "UPDATE deliveries SET next_attempt_at = $2"
    " WHERE id = (SELECT id FROM deliveries WHERE conversation_id = $1"
    " AND state IN ('pending', 'leased') ORDER BY id LIMIT 1)"
    " AND state = 'pending' AND next_attempt_at < $2"
)
_HOLD_NEXT_SQLITE = sqlite_sql(_HOLD_NEXT)

_STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 9}


class OutboxStore(StoreBase):
    """Deliveries to channels, claimed in order per conversation."""

    _finishes: GroupCommit[_Finish, tuple[bool, ClaimedDelivery | None]]  # built by ``Store``

    async def add_outbound(
        self,
        conversation_id: str,
        *,
        text: str | None,
        author: str,
        deliveries: Sequence[DeliverySpec],
        attachments: Sequence[dict[str, Any]] = (),
        meta: dict[str, Any] | None = None,
        respect_owner: bool = True,
        handoff: bool = False,
    ) -> CompletedTurn:
        """A message not tied to a turn (proactive agent message, operator message).

        While a human owns the conversation, the text is kept as a note and nothing is sent.
        """
        now = clock.now()
        async with self._tx() as conn:
            conv_owner = (
                await conn.execute(
                    select(t.conversations.c.owner).where(t.conversations.c.id == conversation_id)
                )
            ).scalar_one_or_none()
            if conv_owner is None:
                return CompletedTurn(ok=False)
            deliver = conv_owner == "bot" or not respect_owner
            message_id = None
            if text is not None:
                message_id = new_id("m")
                await conn.execute(
                    t.messages.insert().values(
                        id=message_id,
                        conversation_id=conversation_id,
                        direction="out" if deliver else "note",
                        author=author,
                        text=text,
                        content_type="text",
                        attachments=list(attachments),
                        meta=meta or {},
                        created_at=now,
                    )
                )
            ids: list[int] = []
            if deliver:
                ids = await self._insert_deliveries(
                    conn,
                    [
                        self._delivery_values(
                            conversation_id,
                            None,
                            message_id if spec.kind == "message" else None,
                            spec,
                            now,
                        )
                        for spec in deliveries
                    ],
                )
                if handoff:
                    await self._set_owner(conn, conversation_id, "human")
        return CompletedTurn(
            ok=True, reply_message_id=message_id, delivered=deliver, delivery_ids=ids
        )

    async def add_notice(
        self,
        conversation_id: str,
        *,
        text: str,
        meta: dict[str, Any],
        to_channel: bool,
        max_attempts: int,
        turn: tuple[int, str] | None = None,
        key: str | None = None,
    ) -> CompletedTurn:
        """A notice into a conversation (author ``system``): an agent's system or warning
        message, or the bridge's own working notice for a slow turn.

        ``to_channel``: sent to the customer too (one ``message`` delivery), while a bot owns
        the conversation; otherwise it is kept as a note the console shows. ``turn``
        (id, owner): written only while that turn is still leased to ``owner``, so never
        after its reply; the turn's row stays locked until this commits, so a completion
        racing with it writes its reply after the notice. ``key``: the notice's delivery
        idempotency key; a keyed notice is written only if it is sent, and only once (across
        retries of the turn and replicas). ``ok`` is False when nothing was written.
        """
        now = clock.now()
        c = t.conversations
        async with self._tx() as conn:
            if turn is not None:
                fence = (
                    select(t.turns.c.id)
                    .where(t.turns.c.id == turn[0], held_by(t.turns, turn[1]))
                    .with_for_update()
                )
                if (await conn.execute(fence)).first() is None:
                    return CompletedTurn(ok=False)
            conv_owner = (
                await conn.execute(select(c.c.owner).where(c.c.id == conversation_id))
            ).scalar_one_or_none()
            if conv_owner is None:
                return CompletedTurn(ok=False)
            deliver = to_channel and conv_owner == "bot"
            if key is not None:
                dd = t.deliveries
                used = select(dd.c.id).where(dd.c.idempotency_key == key)
                if not deliver or (await conn.execute(used)).first() is not None:
                    return CompletedTurn(ok=False)
            message_id = new_id("m")
            await conn.execute(
                t.messages.insert().values(
                    id=message_id,
                    conversation_id=conversation_id,
                    direction="out" if deliver else "note",
                    author="system",
                    text=text,
                    content_type="text",
                    attachments=[],
                    meta=meta,
                    created_at=now,
                )
            )
            ids: list[int] = []
            if deliver:
                spec = DeliverySpec("message", max_attempts, text=text)
                values = self._delivery_values(
                    conversation_id, turn[0] if turn else None, message_id, spec, now
                )
                if key is not None:
                    values["idempotency_key"] = key
                ids = await self._insert_deliveries(conn, [values])
        return CompletedTurn(
            ok=True, reply_message_id=message_id, delivered=deliver, delivery_ids=ids
        )

    async def claim_deliveries(
        self, owner: str, *, limit: int, lease_seconds: float
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` deliveries: the oldest open one of each conversation."""
        now = clock.now()
        q = self._sql
        async with self._hot_tx() as tx:
            rows = await tx.fetch(q.claim_deliveries, (owner, now + lease_seconds, now, limit))
            if not rows:
                return []
            ids = list_param(self.dialect, list({r[1] for r in rows}))
            convs = {
                r[0]: hot_sql.conversation(r) for r in await tx.fetch(q.conversations_by_id, (ids,))
            }
        return [hot_sql.delivery(r, convs[r[1]]) for r in sorted(rows, key=lambda r: r[0])]

    async def set_message_status(
        self, external_id: str, status: str, error: str | None = None
    ) -> str | None:
        """Record a provider's status for the message it knows as ``external_id``.

        Statuses only move forward (sent → delivered → read → played; ``failed`` wins), since
        providers may report them out of order. A paced reply is one message sent as several
        parts (payload ``part``/``parts``): its status is its last part's, since the earlier
        ones are read before it — except ``failed``, which any part reports for the whole.
        Returns our message id, or None if the id is not one of our sent messages.
        """
        now = clock.now()
        dd = t.deliveries
        async with self._tx() as conn:
            found = (
                await conn.execute(
                    select(dd.c.message_id, dd.c.payload)
                    .where(dd.c.external_id == external_id)
                    .where(dd.c.message_id.is_not(None))
                    .limit(1)
                )
            ).first()
            if found is None:
                return None
            message_id, payload = found[0], found[1] or {}
            if status != "failed" and payload.get("part", 1) < payload.get("parts", 1):
                return str(message_id)  # an earlier part: ours, but not the reply's status
            current = (
                await conn.execute(
                    select(t.message_status.c.status).where(
                        t.message_status.c.message_id == message_id
                    )
                )
            ).scalar_one_or_none()
            if current is None:
                await conn.execute(
                    t.message_status.insert().values(
                        message_id=message_id,
                        status=status,
                        external_id=external_id,
                        updated_at=now,
                    )
                )
            elif _STATUS_RANK.get(status, 0) > _STATUS_RANK.get(current, 0):
                await conn.execute(
                    update(t.message_status)
                    .where(t.message_status.c.message_id == message_id)
                    .values(status=status, updated_at=now)
                )
        return str(message_id)

    async def finish_delivery(
        self,
        delivery_id: int,
        owner: str,
        *,
        external_id: str | None,
        claim_next: ClaimedDelivery | None = None,
        lease_seconds: float = 15.0,
        hold: tuple[str, float] | None = None,
    ) -> tuple[bool, ClaimedDelivery | None]:
        """Mark a delivery done (fenced) and note the channel's id on its message; committed
        with the other sends finishing at the same moment (group commit).

        With ``claim_next`` (the delivery just finished), the conversation's next delivery is
        leased in the same transaction when it is due, and returned: the worker sends it
        straight away instead of going through a global claim. Returns (finished, next).

        ``hold`` (conversation id, seconds): the conversation's next delivery is not due
        before that long from now — a paced reply's part waits while its typing indicator
        shows. Written in the same transaction as the finish, so a crash cannot send the
        part early, nor lose it; the caller wakes the workers when it is due.
        """
        return await self._finishes.submit(
            _Finish(delivery_id, owner, external_id, claim_next, lease_seconds, hold)
        )

    async def _hold_next(self, tx: HotTx, hold: tuple[str, float], now: float) -> None:
        conversation_id, seconds = hold
        sql = _HOLD_NEXT_SQLITE if tx.dialect == "sqlite" else _HOLD_NEXT
        await tx.run(sql, (conversation_id, now + seconds))

    async def _finish_one(self, tx: HotTx, f: _Finish) -> tuple[bool, ClaimedDelivery | None]:
        q = self._sql
        now = clock.now()
        row = await tx.fetchrow(q.delivery_finish, (f.delivery_id, f.owner, now, f.external_id))
        if row is None:
            return False, None
        if row[0] and f.external_id is not None:
            await tx.run(q.message_external_id, (row[0], f.external_id))
        if f.hold is not None:
            await self._hold_next(tx, f.hold, now)
        following = None
        if f.claim_next is not None:
            after = f.claim_next
            leased = await tx.fetchrow(
                q.lease_next, (after.conversation_id, f.owner, now + f.lease_seconds, now)
            )
            if leased is not None:
                following = hot_sql.delivery(leased, after.conversation)
        return True, following

    async def _finish_many(
        self, tx: HotTx, items: list[_Finish]
    ) -> list[tuple[bool, ClaimedDelivery | None]]:
        """A group commit's finished sends. On PostgreSQL, three statements for all of them
        (``PG_BATCH``); a conversation has one delivery in flight, so no two of them share
        a conversation."""
        if tx.dialect != "postgresql":
            return [await self._finish_one(tx, f) for f in items]
        q = PG_BATCH
        now = clock.now()
        finished = {
            r[0]: r[1]
            for r in await tx.fetch(
                q.finishes,
                (
                    [f.delivery_id for f in items],
                    [f.owner for f in items],
                    [f.external_id for f in items],
                    now,
                ),
            )
        }
        external = [
            (finished[f.delivery_id], f.external_id)
            for f in items
            if finished.get(f.delivery_id) and f.external_id is not None
        ]
        if external:
            await tx.run(
                q.message_external_ids, ([m for m, _ in external], [e for _, e in external])
            )
        for f in items:  # rare (paced replies): one statement each, before the next leases
            if f.hold is not None and f.delivery_id in finished:
                await self._hold_next(tx, f.hold, now)
        following: dict[str, ClaimedDelivery] = {}
        chained: dict[tuple[str, float], list[ClaimedDelivery]] = {}
        for f in items:
            if f.claim_next is not None and f.delivery_id in finished:
                chained.setdefault((f.owner, f.lease_seconds), []).append(f.claim_next)
        for (owner, lease_seconds), afters in chained.items():
            by_conversation = {a.conversation_id: a for a in afters}
            rows = await tx.fetch(
                q.lease_heads, (list(by_conversation), owner, now + lease_seconds, now)
            )
            for r in rows:
                following[r[1]] = hot_sql.delivery(r, by_conversation[r[1]].conversation)
        return [
            (
                f.delivery_id in finished,
                following.get(f.claim_next.conversation_id)
                if f.claim_next is not None and f.delivery_id in finished
                else None,
            )
            for f in items
        ]

    async def mark_send_started(self, delivery_id: int, owner: str) -> bool:
        """Note, before the channel is called, that this delivery's send begins (fenced).

        After a crash only a delivery marked so can be on the far side without our knowing,
        so only such a one waits for a receipt before it is sent again. False: the lease is
        no longer ours, so the send must not happen.
        """
        return delivery_id in await self.mark_sends_started([delivery_id], owner)

    async def mark_sends_started(self, delivery_ids: Sequence[int], owner: str) -> set[int]:
        """``mark_send_started`` for many deliveries in one transaction; returns the ids
        still leased to ``owner`` (the others must not be sent)."""
        if not delivery_ids:
            return set()
        async with self._hot_tx() as tx:
            rows = await tx.fetch(
                self._sql.sends_started,
                (list_param(self.dialect, list(delivery_ids)), owner, clock.now()),
            )
        return {row[0] for row in rows}

    async def record_receipt(self, idempotency_key: str, external_id: str | None) -> bool:
        """The channel echoed one of our messages back (e.g. Chatwoot's ``message_created``
        carrying our ``source_id``): note it on the delivery with that key.

        The first receipt wins. A receipt never changes the delivery's state itself: the
        worker that sent it finishes it as usual, and a worker that finds it uncertain after
        a crash finishes it without sending again. Returns whether the key is one of ours.
        """
        async with self._tx() as conn:
            result = await conn.execute(
                self._stmts.delivery_receipt,
                {"b_key": idempotency_key, "b_now": clock.now(), "b_external": external_id},
            )
        return bool(result.rowcount)

    async def record_receipt_in_conversation(
        self, channel: str, channel_key: str, external_id: str, text: str | None = None
    ) -> bool:
        """A channel that cannot carry our key echoed a message of ours: note the receipt on
        the conversation's oldest message delivery whose send began and is not finished
        (with ``text``: only one with that text). WhatsApp gateways echo our sends this way
        (WAHA ``message.any`` with ``fromMe``, Evolution ``send.message``, Meta's statuses).

        Returns True when the echo is ours: a delivery took the receipt, or one of our
        finished deliveries already has ``external_id``.
        """
        dd, cc = t.deliveries, t.conversations
        now = clock.now()
        async with self._tx() as conn:
            conv_id = (
                await conn.execute(
                    select(cc.c.id).where(
                        and_(cc.c.channel == channel, cc.c.channel_key == channel_key)
                    )
                )
            ).scalar_one_or_none()
            if conv_id is None:
                return False
            known = (
                await conn.execute(
                    select(dd.c.id)
                    .where(and_(dd.c.conversation_id == conv_id, dd.c.external_id == external_id))
                    .limit(1)
                )
            ).scalar_one_or_none()
            if known is not None:
                return True
            conditions = [
                dd.c.conversation_id == conv_id,
                dd.c.kind == "message",
                dd.c.state.in_(("pending", "leased")),
                dd.c.send_started_at.is_not(None),
                dd.c.receipt_at.is_(None),
            ]
            if text is not None:
                conditions.append(dd.c.text == text)
            target = (
                await conn.execute(
                    select(dd.c.id).where(and_(*conditions)).order_by(dd.c.id).limit(1)
                )
            ).scalar_one_or_none()
            if target is None:
                return False
            await conn.execute(
                update(dd)
                .where(dd.c.id == target)
                .values(receipt_at=now, receipt_external_id=external_id)
            )
        return True

    async def delivery_receipt(self, delivery_id: int) -> tuple[float | None, str | None]:
        """(receipt time, channel's message id) of a delivery; (None, None) without one."""
        dd = t.deliveries
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(dd.c.receipt_at, dd.c.receipt_external_id).where(dd.c.id == delivery_id)
                )
            ).first()
        if row is None:
            return None, None
        return row.receipt_at, row.receipt_external_id

    async def retry_delivery(
        self,
        delivery_id: int,
        owner: str,
        *,
        next_attempt_at: float,
        error: str,
        outcome_unknown: bool = False,
    ) -> bool:
        """Make a delivery pending again after a failed attempt (fenced).

        With ``outcome_unknown`` (the send was marked started and no answer came: a timeout
        after the request was written) the delivery stays uncertain, as after a crash: the
        next claim looks for its receipt before sending again. ``send_started_at`` is moved
        to now, when the attempt was cut off, since the far side may still take the request
        in after that: the receipt wait counts from there. Otherwise the channel answered
        (an error) or was never reached: this attempt's outcome is known.
        """
        async with self._tx() as conn:
            result = await conn.execute(
                fenced_update(t.deliveries, delivery_id, owner).values(
                    state="pending",
                    next_attempt_at=next_attempt_at,
                    last_error=error[:2000],
                    **RELEASED,
                    uncertain=outcome_unknown,
                    send_started_at=clock.now() if outcome_unknown else None,
                )
            )
        return bool(result.rowcount)

    async def fail_delivery(
        self,
        delivery_id: int,
        owner: str,
        *,
        error: str,
        state: str = "dead",
        outcome_unknown: bool = False,
    ) -> bool:
        """End a delivery for good: ``dead`` (listed, replayable) or ``dropped`` (typing).

        ``outcome_unknown``: the last attempt may have landed; a replay of the dead letter
        then looks for its receipt before sending (``send_started_at`` is kept)."""
        async with self._tx() as conn:
            result = await conn.execute(
                fenced_update(t.deliveries, delivery_id, owner).values(
                    state=state,
                    last_error=error[:2000],
                    done_at=clock.now(),
                    **RELEASED,
                    uncertain=outcome_unknown,
                )
            )
        return bool(result.rowcount)

    async def list_dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        dd, cc = t.deliveries, t.conversations
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(dd, cc.c.channel, cc.c.channel_key)
                    .select_from(dd.join(cc, cc.c.id == dd.c.conversation_id))
                    .where(dd.c.state == "dead")
                    .order_by(dd.c.id)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return [
            DeadLetter(
                id=r.id,
                conversation_id=r.conversation_id,
                channel=r.channel,
                channel_key=r.channel_key,
                kind=r.kind,
                text=r.text,
                attempts=r.attempts,
                last_error=r.last_error,
                created_at=r.created_at,
                turn_id=r.turn_id,
            )
            for r in rows
        ]

    async def discard_dead_letter(self, delivery_id: int) -> bool:
        """An operator gives up on a dead delivery: it leaves the dead-letter list for good
        (state ``dropped``; the row and its error stay for the record)."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.deliveries)
                .where(and_(t.deliveries.c.id == delivery_id, t.deliveries.c.state == "dead"))
                .values(
                    state="dropped",
                    last_error=func.coalesce(t.deliveries.c.last_error, "")
                    + " [discarded by an operator]",
                    done_at=clock.now(),
                )
            )
        return bool(result.rowcount)

    async def replay_dead_letter(self, delivery_id: int) -> bool:
        """Send a dead delivery again from scratch (same idempotency key)."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.deliveries)
                .where(and_(t.deliveries.c.id == delivery_id, t.deliveries.c.state == "dead"))
                .values(state="pending", attempts=0, next_attempt_at=clock.now(), done_at=None)
            )
        return bool(result.rowcount)
