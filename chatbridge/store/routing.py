"""Routes (inbox → agent) and agents."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, text, update

from chatbridge.config import SECRET_OPTIONS
from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies
from chatbridge.store import tables as t
from chatbridge.store.base import (
    StoreBase,
    _agent,
    _route,
)
from chatbridge.store.leases import held_by_sql
from chatbridge.store.records import (
    CURRENT_AGENT_KEY,
    AgentRecord,
    Route,
    RouteAgent,
)

# Merge one key into the JSON object in place: a concurrent writer of another key of
# ``meta`` (``ConversationStore.set_offer``) is not undone by a read-modify-write here.
_SET_CURRENT_AGENT = {
    "sqlite": f"json_set(COALESCE(meta, '{{}}'), '$.{CURRENT_AGENT_KEY}', :agent)",
    "postgresql": (
        "COALESCE(meta, '{}'::jsonb)"
        f" || jsonb_build_object('{CURRENT_AGENT_KEY}', CAST(:agent AS text))"
    ),
}


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
        agents: Sequence[RouteAgent] = (),
        agent_specs: Sequence[AgentSpec] = (),
    ) -> tuple[Route, bool]:
        """Create or update the route of (channel, inbox). Returns (route, created).

        With ``agent``, the agent's row is written in the same transaction, and only when the
        route itself is written: a refused save (exists, ``overwrite=False``) changes nothing.
        ``agents``: the route's named agents (protocol 1.3), empty for one agent;
        ``agent_specs`` the rows of those that come with their config (written like ``agent``).
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
            "agents": [a.stored() for a in agents],
            "updated_at": now,
        }
        where = and_(t.routes.c.channel == channel, t.routes.c.inbox_id == inbox_id)
        async with self._tx() as conn:
            existing = (await conn.execute(select(t.routes).where(where))).one_or_none()
            if existing is None or overwrite:
                for spec in (agent, *agent_specs):
                    if spec is not None:
                        await self._write_agent(conn, spec)
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

    async def set_current_agent(
        self,
        conversation_id: str,
        agent_id: str,
        *,
        turn_id: int | None = None,
        owner: str | None = None,
    ) -> bool:
        """Make ``agent_id`` the agent the conversation's next turns run on
        (``meta[CURRENT_AGENT_KEY]``, and ``agent_id`` of its open turns), fenced by the lease
        ``owner`` holds on turn ``turn_id``: a turn that lost its lease changes nothing.
        Written before the turn's outcome, so the next turn (claimable the moment that
        outcome commits) sees it. Without ``turn_id`` (an agent's handoff outside a turn),
        unfenced.

        Returns:
            False when the lease was lost, or there is no such conversation (nothing written).
        """
        fence = (
            ""
            if turn_id is None
            else " AND EXISTS (SELECT 1 FROM turns"
            f" WHERE turns.id = :turn_id AND {held_by_sql(':owner', alias='turns')})"
        )
        stmt = text(
            f"UPDATE conversations SET meta = {_SET_CURRENT_AGENT[self.dialect]}"
            f" WHERE id = :conversation_id{fence}"
        )
        async with self._tx() as conn:
            result = await conn.execute(
                stmt,
                {
                    "agent": agent_id,
                    "conversation_id": conversation_id,
                    "turn_id": turn_id,
                    "owner": owner,
                },
            )
            if not result.rowcount:
                return False
            # the conversation's open turns are the agent's now: replicas claim by it
            await conn.execute(
                update(t.turns)
                .where(
                    t.turns.c.conversation_id == conversation_id,
                    t.turns.c.state.in_(("pending", "leased")),
                )
                .values(agent_id=agent_id)
            )
        return True
