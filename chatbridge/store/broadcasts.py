"""Broadcasts: a template sent to a CRM segment, one row per recipient, leased.

A broadcast is created with its recipients in one transaction (``create_broadcast``): the
segment is evaluated once, every person in it gets a ``broadcast_recipients`` row in ``seq``
order, ``queued`` — or ``skipped`` with the reason (opted out, no WhatsApp phone, a parameter
their record cannot fill). Later changes to people do not change who gets it.

One worker at a time sends it (``claim_broadcast``: ``running`` under a lease; a lease that ran
out is taken over by the next claim). Each send is bracketed so that a crash never sends a
recipient twice:

1. ``start_send``: the row goes ``queued`` → ``sending`` and is committed *before* the gateway
   call (fenced: only while the worker still holds the broadcast's lease and it is running);
2. ``end_send``: ``sending`` → ``sent`` with the provider's message id, or ``failed`` with the
   reason, or ``queued`` again when the gateway surely did not take it.

A row found ``sending`` when a broadcast is (re)claimed was cut off mid-send: it may or may not
have reached the gateway. It is never sent again blindly: the worker asks the provider where
it can (``pipeline.broadcasts``) and otherwise marks it ``uncertain`` for the operator.

Recipient states: queued | sending | sent | delivered | read | failed | skipped | uncertain.
Provider status webhooks move ``sent`` forward by ``external_id`` (``apply_broadcast_status``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import Conn, StoreBase

RECIPIENT_STATES = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "failed",
    "skipped",
    "uncertain",
)
BROADCAST_STATES = ("queued", "running", "paused", "done", "cancelled", "failed")
# how far each state is: a status webhook only moves a recipient forward (they come out of
# order), ``failed`` after ``sent`` is taken (Meta reports a failed delivery that way)
_RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 3}
_OPEN = ("queued", "running", "paused")


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """What a segment looks at for one person (``crm.segments`` decides with it)."""

    id: str
    name: str
    phone: str | None = None
    email: str | None = None
    company: str | None = None
    external_ref: str | None = None
    tags: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    opted_out_at: float | None = None
    channels: frozenset[str] = frozenset()
    last_contact_at: float | None = None


Plan = Callable[[list[PersonFacts]], list[dict[str, Any]]]
"""People → recipient rows (``person_id``, ``address``, ``state`` queued | skipped,
``reason``), in send order: ``crm.segments.snapshot`` with a broadcast's segment."""


@dataclass(slots=True)
class BroadcastRecord:
    """A broadcast with its recipients counted by state."""

    id: str
    name: str
    template_id: str
    parameters: dict[str, str]
    segment: dict[str, Any]
    rate_per_second: float
    state: str
    total: int
    last_error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done_count(self) -> int:
        """Recipients with an outcome (anything but queued and sending)."""
        return self.total - self.counts.get("queued", 0) - self.counts.get("sending", 0)

    def body(self) -> dict[str, Any]:
        """The record as the API answers it, with ``progress`` (0 to 1) of recipients settled."""
        out = asdict(self)
        out["counts"] = {s: self.counts.get(s, 0) for s in RECIPIENT_STATES}
        out["progress"] = round(self.done_count / self.total, 4) if self.total else 1.0
        return out


@dataclass(slots=True)
class Recipient:
    """One recipient row."""

    broadcast_id: str
    person_id: str
    seq: int
    address: str | None
    state: str
    reason: str | None
    external_id: str | None
    attempts: int
    sent_at: float | None
    updated_at: float
    name: str | None = None

    def body(self) -> dict[str, Any]:
        return asdict(self)


def _broadcast(row: Any, counts: dict[str, int]) -> BroadcastRecord:
    return BroadcastRecord(
        id=row.id,
        name=row.name,
        template_id=row.template_id,
        parameters=dict(row.parameters or {}),
        segment=dict(row.segment or {}),
        rate_per_second=float(row.rate_per_second),
        state=row.state,
        total=int(row.total),
        last_error=row.last_error,
        created_at=float(row.created_at),
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=float(row.updated_at),
        counts=counts,
    )


def _recipient(row: Any, name: str | None = None) -> Recipient:
    return Recipient(
        broadcast_id=row.broadcast_id,
        person_id=row.person_id,
        seq=int(row.seq),
        address=row.address,
        state=row.state,
        reason=row.reason,
        external_id=row.external_id,
        attempts=int(row.attempts),
        sent_at=row.sent_at,
        updated_at=float(row.updated_at),
        name=name,
    )


def _person_facts(
    row: Any, channels: frozenset[str] = frozenset(), last_contact_at: float | None = None
) -> PersonFacts:
    """A ``people`` row's facts (with the channels and last contact, where they were read)."""
    return PersonFacts(
        id=row.id,
        name=row.name,
        phone=row.phone,
        email=row.email,
        company=row.company,
        external_ref=row.external_ref,
        tags=tuple(row.tags or ()),
        meta=row.meta or {},
        opted_out_at=row.opted_out_at,
        channels=channels,
        last_contact_at=last_contact_at,
    )


class BroadcastStore(StoreBase):
    """Broadcasts: a template sent to a CRM segment, one row per recipient, leased."""

    # ------------------------------------------------------------------ people
    async def _people_facts(self, conn: Conn) -> list[PersonFacts]:
        """Every person with the facts a segment filters on (tags, channels, last contact)."""
        p, tl, cv = t.people, t.thread_links, t.conversations
        threads = await conn.execute(
            select(tl.c.person_id, cv.c.channel, func.max(cv.c.last_activity_at))
            .select_from(tl.join(cv, cv.c.id == tl.c.conversation_id))
            .where(tl.c.person_id.is_not(None))
            .group_by(tl.c.person_id, cv.c.channel)
        )
        channels: dict[str, set[str]] = {}
        last: dict[str, float] = {}
        for person_id, channel, at in threads.all():
            channels.setdefault(person_id, set()).add(channel)
            if at is not None:
                last[person_id] = max(last.get(person_id, 0.0), float(at))
        rows = await conn.execute(select(p).order_by(p.c.created_at, p.c.id))
        return [
            _person_facts(r, frozenset(channels.get(r.id, ())), last.get(r.id)) for r in rows.all()
        ]

    async def people_facts(self) -> list[PersonFacts]:
        """Every person with the facts a segment filters on (a preview reads these)."""
        async with self._tx() as conn:
            return await self._people_facts(conn)

    # ------------------------------------------------------------------ create / read
    async def create_broadcast(
        self,
        *,
        name: str,
        template_id: str,
        parameters: dict[str, str],
        segment: dict[str, Any],
        rate_per_second: float,
        plan: Plan,
    ) -> BroadcastRecord:
        """Store a broadcast and its recipients (``plan`` applied to the people as they are
        now) in one transaction. The caller has checked the template and the parameters'
        slots."""
        now = time.time()
        async with self._tx() as conn:
            rows = plan(await self._people_facts(conn))
            sendable = sum(1 for r in rows if r["state"] == "queued")
            broadcast_id = new_id("bc")
            values = {
                "id": broadcast_id,
                "name": name,
                "template_id": template_id,
                "parameters": parameters,
                "segment": segment,
                "rate_per_second": rate_per_second,
                "state": "queued" if sendable else "done",
                "total": len(rows),
                "created_at": now,
                "finished_at": None if sendable else now,
                "updated_at": now,
            }
            await conn.execute(t.broadcasts.insert().values(**values))
            if rows:
                await conn.execute(
                    t.broadcast_recipients.insert(),
                    [
                        {
                            "broadcast_id": broadcast_id,
                            "person_id": row["person_id"],
                            "seq": seq,
                            "address": row["address"],
                            "state": row["state"],
                            "reason": row["reason"],
                            "attempts": 0,
                            "updated_at": now,
                        }
                        for seq, row in enumerate(rows, start=1)
                    ],
                )
            record = await self._read_broadcast(conn, broadcast_id)
        assert record is not None
        return record

    async def _counts(self, conn: Conn, ids: list[str]) -> dict[str, dict[str, int]]:
        br = t.broadcast_recipients
        rows = await conn.execute(
            select(br.c.broadcast_id, br.c.state, func.count())
            .where(br.c.broadcast_id.in_(ids))
            .group_by(br.c.broadcast_id, br.c.state)
        )
        out: dict[str, dict[str, int]] = {i: {} for i in ids}
        for broadcast_id, state, n in rows.all():
            out[broadcast_id][state] = int(n)
        return out

    async def _read_broadcast(self, conn: Conn, broadcast_id: str) -> BroadcastRecord | None:
        row = (
            await conn.execute(select(t.broadcasts).where(t.broadcasts.c.id == broadcast_id))
        ).first()
        if row is None:
            return None
        return _broadcast(row, (await self._counts(conn, [broadcast_id]))[broadcast_id])

    async def get_broadcast(self, broadcast_id: str) -> BroadcastRecord | None:
        """A broadcast with its recipients counted by state."""
        async with self._tx() as conn:
            return await self._read_broadcast(conn, broadcast_id)

    async def list_broadcasts(
        self, *, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[BroadcastRecord], int]:
        """Broadcasts, newest first, with the total that match."""
        b = t.broadcasts
        stmt = select(b)
        if state is not None:
            stmt = stmt.where(b.c.state == state)
        async with self._tx() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(stmt.subquery()))
            ).scalar_one()
            rows = (
                await conn.execute(
                    stmt.order_by(b.c.created_at.desc(), b.c.id).limit(limit).offset(offset)
                )
            ).all()
            counts = await self._counts(conn, [r.id for r in rows])
        return [_broadcast(r, counts[r.id]) for r in rows], int(total)

    async def list_recipients(
        self, broadcast_id: str, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[Recipient], int]:
        """A broadcast's recipients in ``seq`` order (with the person's name)."""
        br, p = t.broadcast_recipients, t.people
        cond = br.c.broadcast_id == broadcast_id
        if state is not None:
            cond = and_(cond, br.c.state == state)
        async with self._tx() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(br).where(cond))
            ).scalar_one()
            rows = (
                await conn.execute(
                    select(br, p.c.name.label("person_name"))
                    .select_from(br.outerjoin(p, p.c.id == br.c.person_id))
                    .where(cond)
                    .order_by(br.c.seq)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return [_recipient(r, r.person_name) for r in rows], int(total)

    async def person_facts(self, person_ids: list[str]) -> dict[str, PersonFacts]:
        """The people of ``person_ids`` as the parameters are filled from (at send time)."""
        p = t.people
        async with self._tx() as conn:
            rows = (await conn.execute(select(p).where(p.c.id.in_(person_ids)))).all()
        return {r.id: _person_facts(r) for r in rows}

    # ------------------------------------------------------------------ operator actions
    async def change_broadcast(self, broadcast_id: str, action: str) -> BroadcastRecord | str:
        """``pause`` (queued/running → paused), ``resume`` (paused → queued) or ``cancel``
        (any open state → cancelled; its queued recipients become skipped "cancelled").

        Returns the broadcast, or ``missing`` / ``conflict:<state>`` when the action does
        not apply to its state. The worker sees the change at its next send (fenced).
        """
        b, br = t.broadcasts, t.broadcast_recipients
        allowed = {"pause": ("queued", "running"), "resume": ("paused",), "cancel": _OPEN}
        target = {"pause": "paused", "resume": "queued", "cancel": "cancelled"}[action]
        now = time.time()
        values: dict[str, Any] = {
            "state": target,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if target == "cancelled":
            values["finished_at"] = now
        async with self._tx() as conn:
            # one conditional UPDATE: a worker's claim between a read and a write cannot slip in
            changed = await conn.execute(
                update(b)
                .where(and_(b.c.id == broadcast_id, b.c.state.in_(allowed[action])))
                .values(**values)
            )
            if not changed.rowcount:
                state = (
                    await conn.execute(select(b.c.state).where(b.c.id == broadcast_id))
                ).scalar_one_or_none()
                return "missing" if state is None else f"conflict:{state}"
            if target == "cancelled":
                await conn.execute(
                    update(br)
                    .where(and_(br.c.broadcast_id == broadcast_id, br.c.state == "queued"))
                    .values(state="skipped", reason="cancelled", updated_at=now)
                )
            record = await self._read_broadcast(conn, broadcast_id)
        assert record is not None
        return record

    async def retry_uncertain(self, broadcast_id: str) -> int:
        """The operator checked the chats: queue the ``uncertain`` recipients again (they may
        get the template twice — that is the operator's call). Reopens a finished broadcast."""
        b, br = t.broadcasts, t.broadcast_recipients
        now = time.time()
        async with self._tx() as conn:
            done = await conn.execute(
                update(br)
                .where(and_(br.c.broadcast_id == broadcast_id, br.c.state == "uncertain"))
                .values(state="queued", reason=None, updated_at=now)
            )
            if done.rowcount:
                await conn.execute(
                    update(b)
                    .where(and_(b.c.id == broadcast_id, b.c.state == "done"))
                    .values(state="queued", finished_at=None, updated_at=now)
                )
        return int(done.rowcount)

    # ------------------------------------------------------------------ the worker's lease
    async def claim_broadcast(
        self, owner: str, *, lease_seconds: float, exclude: Iterable[str] = ()
    ) -> BroadcastRecord | None:
        """Lease one broadcast to send: ``queued``, or ``running`` under a lease that ran out
        (or that ``owner`` held in a previous life). Oldest first."""
        b = t.broadcasts
        now = time.time()
        due = or_(
            b.c.state == "queued",
            and_(
                b.c.state == "running",
                or_(
                    b.c.lease_expires_at.is_(None),
                    b.c.lease_expires_at < now,
                    b.c.lease_owner == owner,
                ),
            ),
        )
        excluded = list(exclude)
        if excluded:
            due = and_(due, b.c.id.not_in(excluded))
        candidate = (
            select(b.c.id).where(due).order_by(b.c.created_at, b.c.id).limit(1)
        ).with_for_update(skip_locked=True)
        async with self._tx() as conn:
            claimed = (
                await conn.execute(
                    update(b)
                    .where(and_(b.c.id.in_(candidate.scalar_subquery()), due))
                    .values(
                        state="running",
                        lease_owner=owner,
                        lease_expires_at=now + lease_seconds,
                        started_at=func.coalesce(b.c.started_at, now),
                        updated_at=now,
                    )
                    .returning(b.c.id)
                )
            ).scalar_one_or_none()
            if claimed is None:
                return None
            return await self._read_broadcast(conn, claimed)

    def _held(self, broadcast_id: str, owner: str) -> Any:
        b = t.broadcasts
        return and_(b.c.id == broadcast_id, b.c.lease_owner == owner, b.c.state == "running")

    async def renew_broadcast(self, broadcast_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False if it is no longer ours or the broadcast left ``running``
        (paused, cancelled): the worker stops then."""
        async with self._tx() as conn:
            done = await conn.execute(
                update(t.broadcasts)
                .where(self._held(broadcast_id, owner))
                .values(lease_expires_at=time.time() + lease_seconds)
            )
        return bool(done.rowcount)

    async def cut_off_sends(self, broadcast_id: str) -> list[Recipient]:
        """The recipients left ``sending`` by a worker that stopped mid-send."""
        br = t.broadcast_recipients
        async with self._tx() as conn:
            rows = await conn.execute(
                select(br)
                .where(and_(br.c.broadcast_id == broadcast_id, br.c.state == "sending"))
                .order_by(br.c.seq)
            )
            return [_recipient(r) for r in rows.all()]

    async def next_recipients(self, broadcast_id: str, limit: int) -> list[Recipient]:
        """The next ``queued`` recipients in ``seq`` order."""
        br = t.broadcast_recipients
        async with self._tx() as conn:
            rows = await conn.execute(
                select(br)
                .where(and_(br.c.broadcast_id == broadcast_id, br.c.state == "queued"))
                .order_by(br.c.seq)
                .limit(limit)
            )
            return [_recipient(r) for r in rows.all()]

    async def start_send(self, broadcast_id: str, person_id: str, owner: str) -> bool:
        """``queued`` → ``sending``, committed before the gateway call; only while ``owner``
        holds the running broadcast. False: do not send (lease lost, paused, cancelled)."""
        br, b = t.broadcast_recipients, t.broadcasts
        held = select(b.c.id).where(self._held(broadcast_id, owner))
        async with self._tx() as conn:
            done = await conn.execute(
                update(br)
                .where(
                    and_(
                        br.c.broadcast_id == broadcast_id,
                        br.c.person_id == person_id,
                        br.c.state == "queued",
                        br.c.broadcast_id.in_(held.scalar_subquery()),
                    )
                )
                .values(state="sending", attempts=br.c.attempts + 1, updated_at=time.time())
            )
        return bool(done.rowcount)

    async def end_send(
        self,
        broadcast_id: str,
        person_id: str,
        *,
        state: str,
        external_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Settle a ``sending`` row: ``sent`` (with the provider's id), ``failed``,
        ``uncertain`` (with the reason) or ``queued`` (surely not taken: try again).

        Not fenced by the lease on purpose: the gateway's answer is a fact whoever holds the
        broadcast now, and only a ``sending`` row changes.
        """
        br = t.broadcast_recipients
        now = time.time()
        values: dict[str, Any] = {"state": state, "reason": reason, "updated_at": now}
        if state == "sent":
            values.update(external_id=external_id, sent_at=now)
        async with self._tx() as conn:
            done = await conn.execute(
                update(br)
                .where(
                    and_(
                        br.c.broadcast_id == broadcast_id,
                        br.c.person_id == person_id,
                        br.c.state == "sending",
                    )
                )
                .values(**values)
            )
        return bool(done.rowcount)

    async def finish_broadcast(self, broadcast_id: str, owner: str) -> bool:
        """``done`` when no recipient is queued or sending; the lease ends. Fenced."""
        br = t.broadcast_recipients
        now = time.time()
        async with self._tx() as conn:
            left = (
                await conn.execute(
                    select(func.count())
                    .select_from(br)
                    .where(
                        and_(
                            br.c.broadcast_id == broadcast_id,
                            br.c.state.in_(("queued", "sending")),
                        )
                    )
                )
            ).scalar_one()
            if left:
                return False
            done = await conn.execute(
                update(t.broadcasts)
                .where(self._held(broadcast_id, owner))
                .values(
                    state="done",
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                )
            )
        return bool(done.rowcount)

    async def fail_broadcast(self, broadcast_id: str, owner: str, error: str) -> bool:
        """The broadcast cannot go on (its template is gone): ``failed`` with the reason, its
        queued recipients skipped with it. Fenced by the lease."""
        br = t.broadcast_recipients
        now = time.time()
        async with self._tx() as conn:
            done = await conn.execute(
                update(t.broadcasts)
                .where(self._held(broadcast_id, owner))
                .values(
                    state="failed",
                    last_error=error[:2000],
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                )
            )
            if not done.rowcount:
                return False
            await conn.execute(
                update(br)
                .where(and_(br.c.broadcast_id == broadcast_id, br.c.state == "queued"))
                .values(state="skipped", reason=error[:500], updated_at=now)
            )
        return True

    async def release_broadcast(self, broadcast_id: str, owner: str) -> None:
        """Give the broadcast back (shutdown): still ``running``, its lease ended, so the next
        claim (here or on another replica) takes it at once."""
        async with self._tx() as conn:
            await conn.execute(
                update(t.broadcasts)
                .where(self._held(broadcast_id, owner))
                .values(lease_owner=None, lease_expires_at=None)
            )

    # ------------------------------------------------------------------ status webhooks
    async def apply_broadcast_status(
        self,
        external_ids: list[str],
        status: str,
        error: str | None = None,
        *,
        callback: str | None = None,
    ) -> int:
        """A provider's status for one of our broadcast sends (its id in any of the forms
        given). Moves ``sent`` → ``delivered`` → ``read``; ``failed`` is taken from any sent
        state. Returns the rows it matched (0: not a broadcast's message).

        ``callback`` is what the send carried to be echoed back (Meta's
        ``biz_opaque_callback_data``: ``bc:<broadcast>:<person>``): it settles a recipient
        still ``sending`` or ``uncertain`` — a send whose answer never got recorded — as
        ``sent`` with this id (or ``failed``) before the status applies.
        """
        br = t.broadcast_recipients
        if not external_ids:
            return 0
        now = time.time()
        async with self._tx() as conn:
            if callback is not None and callback.startswith("bc:"):
                _, _, rest = callback.partition(":")
                broadcast_id, _, person_id = rest.partition(":")
                await conn.execute(
                    update(br)
                    .where(
                        and_(
                            br.c.broadcast_id == broadcast_id,
                            br.c.person_id == person_id,
                            br.c.state.in_(("sending", "uncertain")),
                        )
                    )
                    .values(
                        state="failed" if status == "failed" else "sent",
                        reason=(error or "failed") if status == "failed" else None,
                        external_id=external_ids[0],
                        sent_at=now,
                        updated_at=now,
                    )
                )
            rows = (
                await conn.execute(
                    select(br.c.broadcast_id, br.c.person_id, br.c.state).where(
                        br.c.external_id.in_(external_ids)
                    )
                )
            ).all()
            for broadcast_id, person_id, state in rows:
                if status == "failed":
                    if state not in _RANK:
                        continue
                    values: dict[str, Any] = {"state": "failed", "reason": error or "failed"}
                else:
                    new = "read" if status == "played" else status
                    if new not in _RANK or _RANK[new] <= _RANK.get(state, 99):
                        continue
                    values = {"state": new}
                await conn.execute(
                    update(br)
                    .where(and_(br.c.broadcast_id == broadcast_id, br.c.person_id == person_id))
                    .values(**values, updated_at=now)
                )
        return len(rows)
