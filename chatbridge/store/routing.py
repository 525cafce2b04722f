"""Routes (inbox → agent) and agents."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, update

from chatbridge.config import SECRET_OPTIONS
from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies
from chatbridge.store import tables as t
from chatbridge.store.base import (
    StoreBase,
    _agent,
    _route,
)
from chatbridge.store.records import (
    AgentRecord,
    Route,
)


@dataclass(slots=True)
class AgentSpec:
    """An agent's row as a route save writes it."""

    agent_id: str
    transport: str
    url: str | None
    timeout_seconds: float
    token_hash: str | None = None
    enabled: bool = True
    options: dict[str, Any] | None = None


class RoutingStore(StoreBase):
    """Routes and agents, editable at run time."""

    async def upsert_agent(
        self,
        agent_id: str,
        *,
        transport: str,
        url: str | None,
        timeout_seconds: float,
        token_hash: str | None = None,
        enabled: bool = True,
        options: dict[str, Any] | None = None,
    ) -> AgentRecord:
        spec = AgentSpec(agent_id, transport, url, timeout_seconds, token_hash, enabled, options)
        async with self._tx() as conn:
            await self._write_agent(conn, spec)
            row = (await conn.execute(select(t.agents).where(t.agents.c.id == agent_id))).one()
        return _agent(row)

    async def _write_agent(self, conn: Any, spec: AgentSpec) -> None:
        """Insert or update an agent's row. Secrets (token, webhook secret, API key) are
        write-only in the API, so a save that leaves one out keeps the stored one."""
        now = time.time()
        values: dict[str, Any] = {
            "transport": spec.transport,
            "url": spec.url,
            "timeout_seconds": spec.timeout_seconds,
            "enabled": spec.enabled,
            "updated_at": now,
        }
        if spec.token_hash is not None:
            values["token_hash"] = spec.token_hash
        if spec.options is not None:
            options = dict(spec.options)
            old = (
                await conn.execute(select(t.agents.c.options).where(t.agents.c.id == spec.agent_id))
            ).scalar_one_or_none()
            for key in SECRET_OPTIONS:
                if key not in options and old and key in old:
                    options[key] = old[key]
            values["options"] = options
        stmt = self._insert(t.agents).values(id=spec.agent_id, created_at=now, **values)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=values))

    async def list_agents(self) -> list[AgentRecord]:
        async with self._tx() as conn:
            rows = (await conn.execute(select(t.agents).order_by(t.agents.c.id))).all()
        return [_agent(r) for r in rows]

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.agents).where(t.agents.c.id == agent_id))
            ).one_or_none()
        return _agent(row) if row else None

    async def touch_agents(self, seen: dict[str, float]) -> None:
        """Record when agents were last heard from (batched by the caller)."""
        if not seen:
            return
        async with self._tx() as conn:
            for agent_id, when in seen.items():
                await conn.execute(
                    update(t.agents).where(t.agents.c.id == agent_id).values(last_seen_at=when)
                )

    async def save_route(
        self,
        *,
        channel: str,
        inbox_id: int,
        agent_id: str,
        reply_mode: str,
        timeout_seconds: float,
        fallback_text: str | None,
        on_failure: str,
        agent_bot_mode: bool,
        policies: RoutePolicies = DEFAULT_POLICIES,
        overwrite: bool = True,
        agent: AgentSpec | None = None,
    ) -> tuple[Route, bool]:
        """Create or update the route of (channel, inbox). Returns (route, created).

        With ``agent``, the agent's row is written in the same transaction, and only when the
        route itself is written: a refused save (exists, ``overwrite=False``) changes nothing.
        """
        now = time.time()
        values = {
            "agent_id": agent_id,
            "reply_mode": reply_mode,
            "timeout_seconds": timeout_seconds,
            "fallback_text": fallback_text,
            "on_failure": on_failure,
            "agent_bot_mode": agent_bot_mode,
            "policies": policies.stored(),
            "updated_at": now,
        }
        where = and_(t.routes.c.channel == channel, t.routes.c.inbox_id == inbox_id)
        async with self._tx() as conn:
            existing = (await conn.execute(select(t.routes).where(where))).one_or_none()
            if agent is not None and (existing is None or overwrite):
                await self._write_agent(conn, agent)
            if existing is None:
                await conn.execute(
                    t.routes.insert().values(
                        channel=channel, inbox_id=inbox_id, created_at=now, **values
                    )
                )
            elif overwrite:
                await conn.execute(update(t.routes).where(where).values(**values))
            row = (await conn.execute(select(t.routes).where(where))).one()
        return _route(row), existing is None

    async def list_routes(self) -> list[Route]:
        async with self._tx() as conn:
            rows = (
                await conn.execute(
                    select(t.routes).order_by(t.routes.c.channel, t.routes.c.inbox_id)
                )
            ).all()
        return [_route(r) for r in rows]

    async def delete_route(self, channel: str, inbox_id: int) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(
                t.routes.delete().where(
                    and_(t.routes.c.channel == channel, t.routes.c.inbox_id == inbox_id)
                )
            )
        return bool(result.rowcount)
