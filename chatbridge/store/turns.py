"""Turns: one unit of agent work each, claimed with fenced leases. The queue *is* the database.

Why our own outbox and leases instead of a job-queue library: the guarantees we sell —
an acknowledged message gets exactly one reply, in order per conversation, across crashes —
need the inbound message, its turn, the reply and its deliveries to be written in the *same*
transactions as the domain rows, and need "at most one in flight per conversation" in the
claim itself. A separate queue cannot give either without two-phase tricks.

How claiming works (both databases, one statement):

    UPDATE turns SET state='leased', lease_owner=:me, lease_expires_at=:t, attempts+1
    WHERE id IN (SELECT id FROM turns t
                 WHERE claimable(t)                              -- pending & due, or lease expired
                   AND NOT EXISTS (an older pending/leased turn of the same conversation)
                 ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)  -- PostgreSQL only
    RETURNING …

On PostgreSQL, ``SKIP LOCKED`` lets many processes claim at once without blocking each other
and the row lock re-checks ``claimable`` on the newest row version, so no turn is leased twice.
SQLite has one writer at a time (``BEGIN IMMEDIATE``), so the statement is atomic by itself;
within a process an ``asyncio.Lock`` queues writers so they never spin on ``SQLITE_BUSY``.
A lease is *fenced*: finishing a turn or a delivery checks that this process still owns it.
Deliveries (``outbox``) are claimed the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, case, select, update

from chatbridge import clock
from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import (
    StoreBase,
    _message,
)
from chatbridge.store.claims import CLAIM_TURNS, CLAIM_TURNS_SKIPPING, claim_params
from chatbridge.store.records import (
    ClaimedTurn,
    CompletedTurn,
    ContactRecord,
    DeliverySpec,
)


class TurnStore(StoreBase):
    """Agent turns: ingest creates them, workers claim them with leases."""

    async def claim_turns(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        typing_channels: Iterable[str] = (),
        skip_agents: Sequence[str] = (),
    ) -> list[ClaimedTurn]:
        """Lease up to ``limit`` turns (oldest first, one per conversation at most).

        For conversations on ``typing_channels`` a ``typing_on`` delivery is written in the
        same transaction, so typing always starts before — and ends after — the reply.
        Turns for ``skip_agents`` (held by another replica) are left alone.
        """
        now = clock.now()
        typing = set(typing_channels)
        async with self._tx() as conn:
            params = claim_params(owner, now, lease_seconds, limit)
            stmt = CLAIM_TURNS
            if skip_agents:
                stmt = CLAIM_TURNS_SKIPPING
                params["b_skip"] = list(skip_agents)
            rows = (await conn.execute(stmt, params)).all()
            if not rows:
                return []
            convs = await self._conversations_of(conn, rows)
            msg_ids = [m for r in rows for m in (r.message_ids or [])]
            msgs = {
                r.id: _message(r)
                for r in (await conn.execute(self._stmts.messages_by_id, {"b_ids": msg_ids})).all()
            }
            contact_ids = {c.contact_id for c in convs.values() if c.contact_id}
            contacts = (
                {
                    r.id: ContactRecord(
                        id=r.id,
                        channel=r.channel,
                        external_id=r.external_id,
                        name=r.name,
                        email=r.email,
                        phone=r.phone,
                    )
                    for r in (
                        await conn.execute(self._stmts.contacts_by_id, {"b_ids": list(contact_ids)})
                    ).all()
                }
                if contact_ids
                else {}
            )
            claimed = []
            typing_rows = []
            for r in sorted(rows, key=lambda r: r.id):
                conv = convs[r.conversation_id]
                claimed.append(
                    ClaimedTurn(
                        id=r.id,
                        conversation_id=r.conversation_id,
                        agent_id=r.agent_id,
                        route_id=r.route_id,
                        kind=r.kind,
                        attempts=r.attempts,
                        response_mode=r.response_mode,
                        created_at=r.created_at,
                        conversation=conv,
                        messages=[msgs[m] for m in (r.message_ids or []) if m in msgs],
                        contact=contacts.get(conv.contact_id) if conv.contact_id else None,
                    )
                )
                if conv.channel in typing and conv.owner == "bot":
                    typing_rows.append(
                        self._delivery_values(
                            r.conversation_id, r.id, None, DeliverySpec("typing_on", 3), now
                        )
                    )
            if typing_rows:
                await self._insert_deliveries(conn, typing_rows)
        return claimed

    async def renew_leases(
        self,
        owner: str,
        lease_seconds: float,
        *,
        turn_ids: Iterable[int] = (),
        delivery_ids: Iterable[int] = (),
    ) -> None:
        """Extend the leases of the turns and deliveries a live task of ours is working on.

        Only those: a lease whose task died (a database error, a bug) must run out, so the
        work is claimed again, rather than be kept alive by a process that forgot it.
        """
        until = clock.now() + lease_seconds
        async with self._tx() as conn:
            for table, ids in ((t.turns, list(turn_ids)), (t.deliveries, list(delivery_ids))):
                if not ids:
                    continue
                await conn.execute(
                    update(table)
                    .where(
                        and_(
                            table.c.id.in_(ids),
                            table.c.lease_owner == owner,
                            table.c.state == "leased",
                        )
                    )
                    .values(lease_expires_at=until)
                )

    async def release_turn(
        self, turn_id: int, owner: str, *, delay: float = 0.0, count_attempt: bool = False
    ) -> bool:
        """Hand one leased turn back unrun: pending again after ``delay`` seconds.

        Without ``count_attempt`` (its agent is held by another replica) the attempt is not
        counted. False if we no longer held it.
        """
        attempts: Any = t.turns.c.attempts
        if not count_attempt:
            attempts = case((t.turns.c.attempts > 0, t.turns.c.attempts - 1), else_=0)
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.turns)
                .where(
                    and_(
                        t.turns.c.id == turn_id,
                        t.turns.c.lease_owner == owner,
                        t.turns.c.state == "leased",
                    )
                )
                .values(
                    state="pending",
                    lease_owner=None,
                    lease_expires_at=None,
                    available_at=clock.now() + delay,
                    attempts=attempts,
                )
            )
            return bool(result.rowcount)

    async def release_leases(self, owner: str) -> None:
        """Give back every turn and delivery this process holds, so another process may take
        it at once (shutdown, and start-up under the same instance id)."""
        dd = t.deliveries
        async with self._tx() as conn:
            await conn.execute(
                update(t.turns)
                .where(and_(t.turns.c.lease_owner == owner, t.turns.c.state == "leased"))
                .values(state="pending", lease_owner=None, lease_expires_at=None)
            )
            # A delivery whose send had not begun is simply pending again.
            await conn.execute(
                update(dd)
                .where(
                    and_(
                        dd.c.lease_owner == owner,
                        dd.c.state == "leased",
                        dd.c.send_started_at.is_(None),
                    )
                )
                .values(state="pending", lease_owner=None, lease_expires_at=None)
            )
            # One caught mid-send has an unknown outcome: expire the lease instead of
            # resetting it, so the next claim marks it uncertain and looks for a receipt
            # before sending again.
            await conn.execute(
                update(dd)
                .where(and_(dd.c.lease_owner == owner, dd.c.state == "leased"))
                .values(lease_expires_at=0.0)
            )

    async def complete_turn(
        self,
        turn_id: int,
        owner: str,
        *,
        state: str,
        outcome: str,
        reply_text: str | None,
        reply_attachments: Sequence[dict[str, Any]] = (),
        reply_meta: dict[str, Any] | None = None,
        deliveries: Sequence[DeliverySpec] = (),
        handoff: bool = False,
        error: str | None = None,
    ) -> CompletedTurn:
        """Write a turn's outcome, its reply and the reply's deliveries — one transaction.

        Fenced: if this process no longer holds the lease nothing is written (``ok=False``).
        If a human owns the conversation, the reply is stored as a note and only
        ``typing_off`` deliveries are written.
        """
        now = clock.now()
        has_reply = reply_text is not None or bool(reply_attachments)
        reply_id = new_id("m") if has_reply else None
        st = self._stmts
        async with self._tx() as conn:
            fenced = await conn.execute(
                st.turn_fence,
                {
                    "b_id": turn_id,
                    "b_owner": owner,
                    "b_state": state,
                    "b_outcome": outcome,
                    "b_now": now,
                    "b_error": error,
                    "b_reply": reply_id,
                },
            )
            conversation_id = fenced.scalar_one_or_none()
            if conversation_id is None:
                return CompletedTurn(ok=False)
            conv_owner = (
                await conn.execute(st.conversation_owner, {"b_id": conversation_id})
            ).scalar_one()
            deliver = conv_owner == "bot"
            # A typing indicator the channel never saw needs no "off": if the turn's typing_on
            # has not been picked up yet (a fast agent), drop the pair instead of sending both.
            unseen_typing = (
                await conn.execute(st.typing_skip, {"b_turn": turn_id, "b_now": now})
            ).rowcount
            if reply_id is not None:
                await conn.execute(
                    st.message_insert,
                    {
                        "id": reply_id,
                        "conversation_id": conversation_id,
                        "direction": "out" if deliver else "note",
                        "author": "agent",
                        "text": reply_text or "",
                        "content_type": "text",
                        "attachments": list(reply_attachments),
                        "dedupe_key": None,
                        "external_id": None,
                        "turn_id": turn_id,
                        "meta": reply_meta or {},
                        "created_at": now,
                    },
                )
            rows = [
                self._delivery_values(
                    conversation_id, turn_id, reply_id if s.kind == "message" else None, s, now
                )
                for s in deliveries
                if (deliver or s.kind == "typing_off")
                and not (unseen_typing and s.kind == "typing_off")
            ]
            ids = await self._insert_deliveries(conn, rows)
            if handoff and deliver:
                await self._set_owner(conn, conversation_id, "human")
        return CompletedTurn(
            ok=True, reply_message_id=reply_id, delivered=deliver, delivery_ids=ids
        )

    async def get_turn(self, turn_id: int) -> dict[str, Any] | None:
        """The turn row with its reply text, for sync waiters and the API."""
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(t.turns, t.messages.c.text.label("reply_text"))
                    .select_from(
                        t.turns.outerjoin(t.messages, t.messages.c.id == t.turns.c.reply_message_id)
                    )
                    .where(t.turns.c.id == turn_id)
                )
            ).one_or_none()
        return dict(row._mapping) if row else None
