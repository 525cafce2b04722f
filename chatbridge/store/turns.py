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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, select, update

from chatbridge import clock
from chatbridge.ids import new_id
from chatbridge.store import hot_sql
from chatbridge.store import tables as t
from chatbridge.store.base import DeliveryRow, StoreBase, delivers, delivery_row
from chatbridge.store.hot import GroupCommit, HotTx, dumps, list_param, loads
from chatbridge.store.hot_sql import PG_BATCH
from chatbridge.store.leases import RELEASED, fenced_update, held_by
from chatbridge.store.records import (
    ClaimedTurn,
    CompletedTurn,
    DeliverySpec,
)


def _reply_row(
    c: _Completion, reply_id: str, conversation_id: str, delivered: bool, now: float
) -> tuple[Any, ...]:
    """A turn's reply as a ``messages`` row (``message_insert``, ``PG_BATCH.messages``): a
    note when a human owns the conversation."""
    return (
        reply_id,
        conversation_id,
        "out" if delivered else "note",
        "agent",
        c.reply_text or "",
        "text",
        dumps(c.reply_attachments),
        None,
        None,
        c.turn_id,
        dumps(c.reply_meta),
        now,
    )


@dataclass(slots=True)
class _Completion:
    """One turn's outcome waiting for its group commit (see ``complete_turn``)."""

    turn_id: int
    owner: str
    state: str
    outcome: str
    reply_text: str | None
    reply_attachments: list[dict[str, Any]]
    reply_meta: dict[str, Any]
    deliveries: list[DeliverySpec]
    handoff: bool
    error: str | None
    typing: bool
    summary: str | None = None
    summary_messages: int = 0


class TurnStore(StoreBase):
    """Agent turns: ingest creates them, workers claim them with leases."""

    _completions: GroupCommit[_Completion, CompletedTurn]  # built by ``Store``

    async def claim_turns(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        skip_agents: Sequence[str] = (),
    ) -> list[ClaimedTurn]:
        """Lease up to ``limit`` turns (oldest first, one per conversation at most).

        Turns for ``skip_agents`` (agents this replica cannot run) are left alone.
        """
        now = clock.now()
        q, dialect = self._sql, self.dialect
        async with self._hot_tx() as tx:
            args: tuple[Any, ...] = (owner, now + lease_seconds, now, limit)
            sql = q.claim_turns
            if skip_agents:
                sql = q.claim_turns_skipping
                args += (list_param(dialect, skip_agents),)
            rows = await tx.fetch(sql, args)
            if not rows:
                return []
            convs = {
                r[0]: hot_sql.conversation(r)
                for r in await tx.fetch(
                    q.conversations_by_id, (list_param(dialect, list({r[1] for r in rows})),)
                )
            }
            message_ids = {r[0]: loads(r[8]) or [] for r in rows}
            wanted = [m for ids in message_ids.values() for m in ids]
            msgs = (
                {
                    r[0]: hot_sql.message(r)
                    for r in await tx.fetch(q.messages_by_id, (list_param(dialect, wanted),))
                }
                if wanted
                else {}
            )
            contact_ids = list({c.contact_id for c in convs.values() if c.contact_id})
            contacts = (
                {
                    r[0]: hot_sql.contact(r)
                    for r in await tx.fetch(q.contacts_by_id, (list_param(dialect, contact_ids),))
                }
                if contact_ids
                else {}
            )
            claimed = []
            for r in sorted(rows, key=lambda r: r[0]):
                conv = convs[r[1]]
                claimed.append(
                    ClaimedTurn(
                        id=r[0],
                        conversation_id=r[1],
                        agent_id=r[2],
                        route_id=r[3],
                        kind=r[4],
                        attempts=r[5],
                        response_mode=r[6],
                        created_at=r[7],
                        conversation=conv,
                        messages=[msgs[m] for m in message_ids[r[0]] if m in msgs],
                        contact=contacts.get(conv.contact_id) if conv.contact_id else None,
                        fresh=bool(r[9]),
                    )
                )
        return claimed

    async def start_typing(
        self, turn_id: int, owner: str, conversation_id: str, *, max_attempts: int = 3
    ) -> bool:
        """Write a turn's ``typing_on`` delivery — only while the turn is still leased to
        ``owner`` and a bot owns its conversation. True if it was written."""
        now = clock.now()
        async with self._hot_tx() as tx:
            row = await tx.fetchrow(
                self._sql.typing_start,
                (conversation_id, turn_id, owner, now, new_id("d"), max_attempts),
            )
        return row is not None

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
                    .where(and_(table.c.id.in_(ids), held_by(table, owner)))
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
                fenced_update(t.turns, turn_id, owner).values(
                    state="pending",
                    **RELEASED,
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
                update(t.turns).where(held_by(t.turns, owner)).values(state="pending", **RELEASED)
            )
            # A delivery whose send had not begun is simply pending again.
            await conn.execute(
                update(dd)
                .where(and_(held_by(dd, owner), dd.c.send_started_at.is_(None)))
                .values(state="pending", **RELEASED)
            )
            # One caught mid-send has an unknown outcome: expire the lease instead of
            # resetting it, so the next claim marks it uncertain and looks for a receipt
            # before sending again.
            await conn.execute(update(dd).where(held_by(dd, owner)).values(lease_expires_at=0.0))

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
        typing: bool = True,
        summary: str | None = None,
        summary_messages: int = 0,
    ) -> CompletedTurn:
        """Write a turn's outcome, its reply and the reply's deliveries — one transaction,
        shared with the other turns finishing at the same moment (group commit).

        Fenced: if this process no longer holds the lease nothing is written (``ok=False``).
        If a human owns the conversation, the reply is stored as a note and only
        ``typing_off`` deliveries are written. ``typing``: whether the turn may have a
        ``typing_on`` (``start_typing``); without one, or while it has not gone out yet, a
        ``typing_off`` is not written (and the unsent ``typing_on`` is dropped with it).
        A handoff with ``summary_messages`` leaves the human a private note (``summary``, or
        the last messages) in the same transaction.
        """
        return await self._completions.submit(
            _Completion(
                turn_id,
                owner,
                state,
                outcome,
                reply_text,
                list(reply_attachments),
                reply_meta or {},
                list(deliveries),
                handoff,
                error,
                typing,
                summary,
                summary_messages,
            )
        )

    async def _complete_one(self, tx: HotTx, c: _Completion) -> CompletedTurn:
        now = clock.now()
        q = self._sql
        has_reply = c.reply_text is not None or bool(c.reply_attachments)
        reply_id = new_id("m") if has_reply else None
        fenced = await tx.fetchrow(
            q.turn_fence, (c.turn_id, c.owner, c.state, c.outcome, now, c.error, reply_id)
        )
        if fenced is None:
            return CompletedTurn(ok=False)
        conversation_id, conv_owner = fenced[0], fenced[1]
        deliver = conv_owner == "bot"
        # A typing indicator the channel never saw needs no "off": if the turn's typing_on has
        # not been picked up yet (a fast agent), drop the pair instead of sending both.
        no_typing = not c.typing or await tx.run(q.typing_skip, (c.turn_id, now)) > 0
        if reply_id is not None:
            await tx.run(q.message_insert, _reply_row(c, reply_id, conversation_id, deliver, now))
        ids = [
            await self._insert_delivery_hot(
                tx,
                conversation_id,
                c.turn_id,
                reply_id if s.kind == "message" else None,
                s,
                now,
            )
            for s in c.deliveries
            if delivers(s, to_bot=deliver, no_typing=no_typing)
        ]
        if c.handoff and deliver:
            await self._set_owner_hot(tx, conversation_id, "human", now)
            await self._summary_note(tx, c, conversation_id, now)
        return CompletedTurn(
            ok=True, reply_message_id=reply_id, delivered=deliver, delivery_ids=ids
        )

    async def _summary_note(
        self, tx: HotTx, c: _Completion, conversation_id: str, now: float
    ) -> None:
        if c.summary_messages:
            await self._handoff_note_hot(
                tx,
                conversation_id,
                c.turn_id,
                summary=c.summary,
                last=c.summary_messages,
                why="the agent handed over" if c.state == "done" else "the agent failed",
                now=now,
            )

    async def _complete_many(self, tx: HotTx, items: list[_Completion]) -> list[CompletedTurn]:
        """A group commit's turn outcomes. On PostgreSQL, four statements for all of them
        (``PG_BATCH``); a conversation has at most one turn in flight, so no two of them
        touch the same conversation."""
        if tx.dialect != "postgresql":
            return [await self._complete_one(tx, c) for c in items]
        q = PG_BATCH
        now = clock.now()
        replies = [
            new_id("m") if c.reply_text is not None or c.reply_attachments else None for c in items
        ]
        fenced = {
            r[0]: (r[1], r[2])
            for r in await tx.fetch(
                q.fences,
                (
                    [c.turn_id for c in items],
                    [c.owner for c in items],
                    [c.state for c in items],
                    [c.outcome for c in items],
                    [c.error for c in items],
                    replies,
                    now,
                ),
            )
        }
        done = [
            (c, reply, *fenced[c.turn_id])
            for c, reply in zip(items, replies, strict=True)
            if c.turn_id in fenced
        ]
        unseen_typing: set[int] = set()
        typed = [c.turn_id for c, *_ in done if c.typing]
        if typed:
            unseen_typing = {r[0] for r in await tx.fetch(q.typing_skips, (typed, now))}
        messages = [
            _reply_row(c, reply, conversation_id, owner == "bot", now)
            for c, reply, conversation_id, owner in done
            if reply is not None
        ]
        if messages:
            await tx.fetch(q.messages, [list(col) for col in zip(*messages, strict=True)])
        rows: list[DeliveryRow] = []
        keys: dict[int, list[str]] = {}
        for c, reply, conversation_id, owner in done:
            no_typing = not c.typing or c.turn_id in unseen_typing
            for spec in c.deliveries:
                if delivers(spec, to_bot=owner == "bot", no_typing=no_typing):
                    row = delivery_row(
                        conversation_id, c.turn_id, reply if spec.kind == "message" else None, spec
                    )
                    keys.setdefault(c.turn_id, []).append(row[-1])
                    rows.append(row)
        ids: dict[str, int] = {}
        if rows:
            columns = [list(col) for col in zip(*rows, strict=True)]
            ids = {r[1]: r[0] for r in await tx.fetch(q.deliveries, (*columns, now))}
        for c, _, conversation_id, owner in done:
            if c.handoff and owner == "bot":
                await self._set_owner_hot(tx, conversation_id, "human", now)
                await self._summary_note(tx, c, conversation_id, now)
        results = []
        for c, reply in zip(items, replies, strict=True):
            if c.turn_id not in fenced:
                results.append(CompletedTurn(ok=False))
                continue
            owner = fenced[c.turn_id][1]
            results.append(
                CompletedTurn(
                    ok=True,
                    reply_message_id=reply,
                    delivered=owner == "bot",
                    delivery_ids=[ids[k] for k in keys.get(c.turn_id, [])],
                )
            )
        return results

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
