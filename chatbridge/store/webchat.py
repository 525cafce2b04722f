"""Web chat sessions and a session's history.

A session row is the widget's (or the action API caller's) handle on one conversation: its
``uid`` is the conversation's channel key and the visitor's contact id. An expired session is
replaced by a new row with a new ``uid`` — a new conversation — under the same session id.
History is read straight from ``messages`` (inbound and outbound, no internal notes).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from chatbridge.store import hot_sql
from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase, _message
from chatbridge.store.records import MessageRecord

WEBCHAT = "webchat"


@dataclass(slots=True)
class WebchatSession:
    """A session row. ``open_session`` also says what opening it changed: ``replaced`` is the
    expired session (of the same id) it replaced that nobody was told of yet, ``meta_changed``
    that a resume brought new metadata (both announced by ``chatbridge.webchat.sessions``)."""

    id: str
    uid: str
    inbox_id: int
    created_at: float
    last_active: float
    ip_address: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    expired_at: float | None = None
    replaced: WebchatSession | None = None
    meta_changed: bool = False


@dataclass(slots=True)
class SessionSummary:
    session: WebchatSession
    message_count: int
    response_count: int


def _session(row: Any) -> WebchatSession:
    return WebchatSession(
        id=row.id,
        uid=row.uid,
        inbox_id=row.inbox_id,
        created_at=row.created_at,
        last_active=row.last_active,
        ip_address=row.ip_address,
        meta=row.meta or {},
        expired_at=row.expired_at,
    )


def _active(row: Any, now: float, timeout: float) -> bool:
    return row.expired_at is None and row.last_active >= now - timeout


def new_uid() -> str:
    """16 hex characters (8 random bytes), as the web chat contract's ``uid``."""
    return os.urandom(8).hex()


class WebchatStore(StoreBase):
    """Sessions of the ``webchat`` channel and their message history."""

    async def open_session(
        self,
        session_id: str,
        *,
        inbox_id: int,
        timeout: float,
        ip_address: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> tuple[WebchatSession, bool]:
        """Resume ``session_id`` if it is active (refreshing it), else start it afresh.

        Returns the session and whether it is new. An expired row is replaced in the same
        transaction (new ``uid``, so a new conversation); its messages stay in the database.
        A resume with ``meta`` other than the stored one stores it (``meta_changed``).
        """
        for _ in range(3):
            now = time.time()
            try:
                async with self._tx() as conn:
                    row = (
                        await conn.execute(
                            select(t.webchat_sessions).where(t.webchat_sessions.c.id == session_id)
                        )
                    ).one_or_none()
                    ws = t.webchat_sessions
                    if row is not None and _active(row, now, timeout):
                        s = _session(row)
                        values: dict[str, Any] = {"last_active": now}
                        if meta and meta != s.meta:
                            values["meta"] = s.meta = meta
                            s.meta_changed = True
                        # not if the expiry sweep marked it meanwhile: read it again
                        done = await conn.execute(
                            update(ws)
                            .where(ws.c.id == session_id, ws.c.expired_at.is_(None))
                            .values(**values)
                        )
                        if not done.rowcount:
                            continue
                        s.last_active = now
                        return s, False
                    replaced = None
                    if row is not None:
                        await conn.execute(delete(ws).where(ws.c.id == session_id))
                        if row.expired_at is None:  # idle, and not announced yet
                            replaced = _session(row)
                    s = WebchatSession(
                        id=session_id,
                        uid=new_uid(),
                        inbox_id=inbox_id,
                        created_at=now,
                        last_active=now,
                        ip_address=ip_address,
                        meta=meta or {},
                        replaced=replaced,
                    )
                    await conn.execute(
                        t.webchat_sessions.insert().values(
                            id=s.id,
                            uid=s.uid,
                            inbox_id=s.inbox_id,
                            created_at=now,
                            last_active=now,
                            ip_address=ip_address,
                            meta=s.meta,
                        )
                    )
                    return s, True
            except IntegrityError:
                continue  # another request created it at the same moment: read it again
        raise RuntimeError(f"could not open web chat session {session_id!r}")

    async def get_session(
        self, session_id: str, *, timeout: float | None = None, touch: bool = False
    ) -> WebchatSession | None:
        """The session if it exists (and, given ``timeout``, is still active)."""
        now = time.time()
        async with self._tx() as conn:
            row = (
                await conn.execute(
                    select(t.webchat_sessions).where(t.webchat_sessions.c.id == session_id)
                )
            ).one_or_none()
            if row is None or (timeout is not None and not _active(row, now, timeout)):
                return None
            s = _session(row)
            if touch:
                await conn.execute(
                    update(t.webchat_sessions)
                    .where(t.webchat_sessions.c.id == session_id)
                    .values(last_active=now)
                )
                s.last_active = now
        return s

    async def expire_sessions(self, timeout: float, *, limit: int = 500) -> list[WebchatSession]:
        """Mark sessions idle longer than ``timeout`` and not yet marked as expired, and return
        them (at most ``limit``, oldest first): each is returned once, by one replica, so its
        ``session_expired`` is announced once. One statement on the ``(expired_at,
        last_active)`` index."""
        ws = t.webchat_sessions
        now = time.time()
        due = and_(ws.c.expired_at.is_(None), ws.c.last_active < now - timeout)
        batch = select(ws.c.id).where(due).order_by(ws.c.last_active).limit(limit)
        # ``due`` again outside the subquery: a row another replica (or a visitor's message)
        # changed meanwhile is read again under its lock and skipped
        query = update(ws).where(ws.c.id.in_(batch), due).values(expired_at=now).returning(ws)
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
        return sorted((_session(r) for r in rows), key=lambda s: s.last_active)

    async def webchat_conversations(self, uids: list[str]) -> dict[str, str]:
        """The conversation ids of web chat sessions ``uids`` (those that have one)."""
        if not uids:
            return {}
        c = t.conversations
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(c.c.channel_key, c.c.id).where(
                        c.c.channel == WEBCHAT, c.c.channel_key.in_(uids)
                    )
                )
            ).all()
        return {r.channel_key: r.id for r in rows}

    async def delete_expired_sessions(
        self, timeout: float, *, inbox_id: int | None = None, announced_only: bool = False
    ) -> int:
        """Forget sessions idle longer than ``timeout`` (their messages stay); with
        ``inbox_id``, only that inbox's; with ``announced_only``, only those whose expiry was
        announced (``expire_sessions``)."""
        ws = t.webchat_sessions
        query = delete(ws).where(ws.c.last_active < time.time() - timeout)
        if announced_only:
            query = query.where(ws.c.expired_at.is_not(None))
        if inbox_id is not None:
            query = query.where(ws.c.inbox_id == inbox_id)
        async with self._tx() as conn:
            result = await conn.execute(query)
        return int(result.rowcount or 0)

    async def list_sessions(
        self, *, active_within: float | None, limit: int, offset: int, inbox_id: int | None = None
    ) -> tuple[list[SessionSummary], int]:
        """Sessions (of ``inbox_id``, if given), newest activity first, with their message and
        reply counts."""
        ws = t.webchat_sessions
        conds = []
        if active_within:
            conds.append(ws.c.last_active >= time.time() - active_within)
            conds.append(ws.c.expired_at.is_(None))
        if inbox_id is not None:
            conds.append(ws.c.inbox_id == inbox_id)
        cond = and_(*conds) if conds else None
        counts = (
            select(
                t.conversations.c.channel_key.label("uid"),
                func.sum(case((t.messages.c.direction == "in", 1), else_=0)).label("n_in"),
                func.sum(case((t.messages.c.direction == "out", 1), else_=0)).label("n_out"),
            )
            .select_from(
                t.messages.join(
                    t.conversations, t.conversations.c.id == t.messages.c.conversation_id
                )
            )
            .where(t.conversations.c.channel == WEBCHAT)
            .group_by(t.conversations.c.channel_key)
            .subquery()
        )
        query = (
            select(ws, counts.c.n_in, counts.c.n_out)
            .select_from(ws.outerjoin(counts, counts.c.uid == ws.c.uid))
            .order_by(ws.c.last_active.desc(), ws.c.id)
            .limit(limit)
            .offset(offset)
        )
        total_q = select(func.count()).select_from(ws)
        if cond is not None:
            query = query.where(cond)
            total_q = total_q.where(cond)
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
            total = int((await conn.execute(total_q)).scalar_one())
        return [
            SessionSummary(_session(r), int(r.n_in or 0), int(r.n_out or 0)) for r in rows
        ], total

    async def webchat_history(
        self,
        uid: str,
        *,
        after: str | None = None,
        limit: int = 200,
        since: float | None = None,
        lookback: float = 0.0,
    ) -> list[MessageRecord]:
        """Inbound and outbound messages of the session ``uid``, oldest first.

        ``after`` is a message id (the cursor); ``since`` a time (the action API's ``since``).
        An ``after`` that is not a message of this conversation returns the whole history.
        ``lookback`` seconds also returns messages stamped up to that long before the cursor:
        a message is stamped when its transaction starts, so one that committed late (on
        another replica, under load) can sort before a cursor taken meanwhile. Callers using
        it drop the ids they already have.
        """
        # Raw statements (``hot``): a live widget socket reads this for every message of its
        # session, and building the SQLAlchemy query each time showed in the stream profile.
        dialect = self.dialect
        async with self._hot_tx() as tx:
            anchor = None
            if after:
                anchor = await tx.fetchrow(hot_sql.webchat_anchor(dialect), (uid, after))
            args: list[Any] = [uid, limit]
            if since is not None:
                args.append(since)
            if anchor is not None:
                args += [anchor[0] - lookback, anchor[0], anchor[1]]
            sql = hot_sql.webchat_history(dialect, since is not None, anchor is not None)
            rows = await tx.fetch(sql, args)
        return [hot_sql.message(r) for r in rows]

    async def get_message(self, message_id: str) -> MessageRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.messages).where(t.messages.c.id == message_id))
            ).one_or_none()
        return _message(row) if row else None

    async def webchat_last_id(self, uid: str) -> str | None:
        """The id of the newest message of session ``uid`` (a live socket's first cursor)."""
        m = t.messages
        async with self._tx() as conn:
            last: str | None = (
                await conn.execute(
                    select(m.c.id)
                    .select_from(
                        m.join(t.conversations, t.conversations.c.id == m.c.conversation_id)
                    )
                    .where(
                        t.conversations.c.channel == WEBCHAT,
                        t.conversations.c.channel_key == uid,
                        m.c.direction.in_(("in", "out")),
                    )
                    .order_by(m.c.created_at.desc(), m.c.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            return last

    async def message_by_dedupe_key(self, key: str) -> MessageRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.messages).where(t.messages.c.dedupe_key == key))
            ).one_or_none()
        return _message(row) if row else None

    async def clear_webchat(self, *, inbox_id: int | None = None) -> int:
        """Delete every web chat session (of ``inbox_id``, if given: the action API's
        ``clear_data``); returns how many."""
        query = delete(t.webchat_sessions)
        if inbox_id is not None:
            query = query.where(t.webchat_sessions.c.inbox_id == inbox_id)
        async with self._tx() as conn:
            result = await conn.execute(query)
        return int(result.rowcount or 0)
