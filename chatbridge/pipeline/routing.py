"""Routes and agents: which agent answers which inbox, and how the agents are doing.

Routes live in the store and are cached here (``reload_routes``: at start-up, after every
edit, on each housekeeping round and when another replica announces a change). The agents'
connection details follow the routes' saved agent rows (``sync_agents`` configures the hub).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from chatbridge.config import AgentConfig, InboxMapping
from chatbridge.pipeline.breaker import CircuitBreaker
from chatbridge.pipeline.decisions import agent_handoff_event
from chatbridge.store.records import (
    AgentRecord,
    ClaimedTurn,
    ConversationRecord,
    DeliverySpec,
    Route,
    RouteAgent,
)
from chatbridge.store.routing import AgentSpec
from chatbridge.transports.base import AgentStatus

if TYPE_CHECKING:
    from chatbridge.cluster import Cluster
    from chatbridge.config import Settings
    from chatbridge.metrics import Metrics
    from chatbridge.store import Store
    from chatbridge.transports.hub import AgentHub


log = logging.getLogger("chatbridge.bridge")


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Routing:
    """``Bridge``'s routes and agents (a mixin: ``Bridge`` provides what is declared here)."""

    settings: Settings
    store: Store
    hub: AgentHub
    cluster: Cluster
    started: bool
    _routes: dict[tuple[str, int], Route]
    _routes_by_id: dict[int, Route]
    _token_hashes: dict[str, str]
    _agent_records: list[AgentRecord]
    _breakers: dict[str, CircuitBreaker]
    metrics: Metrics

    if TYPE_CHECKING:

        def sync_agents(self) -> None: ...
        def wake_deliveries(self) -> None: ...

    async def _seed_mappings(self, mappings: list[InboxMapping]) -> None:
        """Routes from the environment are created if absent (API edits to a route are kept);
        an agent's connection details (URL, transport, timeout, token) always follow the
        environment, since they describe the deployment."""
        for m in mappings:
            mode = m.reply_mode
            if not self.settings.enable_async_responses and "reply_mode" not in m.model_fields_set:
                mode = "sync"
            for spec in (self._agent_spec(m), *self._named_agent_specs(m)):
                await self.store.upsert_agent(
                    spec.agent_id,
                    transport=spec.transport,
                    url=spec.url,
                    timeout_seconds=spec.timeout_seconds,
                    token_hash=spec.token_hash,
                    options=spec.options,
                )
            await self.save_mapping(m, overwrite=False, reply_mode=mode)

    async def ensure_webchat_compat_route(self) -> None:
        """The action API's messages need a route: unless one is configured, its inbox goes to
        the http-pull agent that ``inbox`` / ``outbox`` act as (see ``webchat-compat``).

        Called at start-up, and only when the action API is enabled (both of its keys set):
        deployments that do not use it see no such route, and no request ever creates one.
        """
        s = self.settings
        if not s.webchat_compat_enabled:
            return
        if self.route_for("webchat", s.webchat_compat_inbox_id) is not None:
            return
        offers = 1 if s.webchat_mark_on_read else s.webchat_compat_max_offers
        timeout = min(3600.0, s.webchat_compat_lease_seconds * offers + 30)
        mapping = InboxMapping(
            channel="webchat",
            inbox_id=s.webchat_compat_inbox_id,
            agent_config=AgentConfig(
                agent_id=s.webchat_compat_agent_id,
                transport="http-pull",
                timeout_seconds=timeout,
            ),
        )
        await self.save_mapping(mapping, overwrite=False)

    @staticmethod
    def _agent_spec(m: InboxMapping) -> AgentSpec:
        return Routing._config_spec(m.agent_config)

    @staticmethod
    def _named_agent_specs(m: InboxMapping) -> list[AgentSpec]:
        """The agent rows of the route's named agents that come with their own config."""
        return [Routing._config_spec(a.agent_config) for a in m.agents if a.agent_config]

    @staticmethod
    def _config_spec(a: AgentConfig) -> AgentSpec:
        return AgentSpec(
            a.agent_id,
            transport=a.transport or "ws-dial-out",
            url=a.url,
            timeout_seconds=a.timeout_seconds,
            token_hash=hash_token(a.token) if a.token else None,
            options=a.options(),
        )

    async def save_mapping(
        self, m: InboxMapping, *, overwrite: bool = True, reply_mode: str | None = None
    ) -> tuple[Route, bool]:
        """Save a route and its agent in one transaction, then (re)connect the agent."""
        a = m.agent_config
        agent = self._agent_spec(m)
        route, created = await self.store.save_route(
            channel=m.channel,
            inbox_id=m.inbox_id,
            agent_id=a.agent_id,
            reply_mode=reply_mode or m.reply_mode,
            timeout_seconds=a.timeout_seconds,
            fallback_text=m.fallback_text,
            on_failure=m.on_failure,
            agent_bot_mode=m.agent_bot_mode,
            policies=m.policies,
            overwrite=overwrite,
            agent=agent,
            agents=[RouteAgent(a.agent_id, a.role, a.default) for a in m.agents],
            agent_specs=self._named_agent_specs(m),
        )
        await self.reload_routes()
        if self.started and (created or overwrite):
            self.sync_agents()  # from the stored row: it holds the secrets a save may omit
        self.cluster.publish("routes", {})
        return route, created

    async def delete_mapping(self, channel: str, inbox_id: int) -> bool:
        deleted = await self.store.delete_route(channel, inbox_id)
        await self.reload_routes()
        self.cluster.publish("routes", {})
        return deleted

    async def reload_routes(self) -> None:
        routes = await self.store.list_routes()
        self._routes = {(r.channel, r.inbox_id): r for r in routes}
        self._routes_by_id = {r.id: r for r in routes}
        self._agent_records = await self.store.list_agents()
        self._token_hashes = {a.id: a.token_hash for a in self._agent_records if a.token_hash}

    def routes(self) -> list[Route]:
        return sorted(self._routes.values(), key=lambda r: (r.channel, r.inbox_id))

    def route_for(self, channel: str, inbox_id: int) -> Route | None:
        return self._routes.get((channel, inbox_id))

    def route_by_id(self, route_id: int | None) -> Route | None:
        return self._routes_by_id.get(route_id) if route_id is not None else None

    def default_route(self, turn: ClaimedTurn) -> Route:
        """Stand-in when a turn's route was deleted while it waited: default fallback."""
        now = time.time()
        return Route(
            id=0,
            channel=turn.conversation.channel,
            inbox_id=turn.conversation.inbox_id,
            agent_id=turn.agent_id,
            reply_mode="async",
            timeout_seconds=self.settings.default_response_timeout,
            fallback_text=None,
            on_failure="fallback",
            agent_bot_mode=False,
            created_at=now,
            updated_at=now,
        )

    async def agent_handoff_outside_turn(
        self, agent_id: str, conv: ConversationRecord, frame: dict[str, Any]
    ) -> None:
        """An ``agent_handoff`` with ``conversation_id`` and no turn: the conversation's next
        turns go to the target (``to_agent`` / ``to_role``, one of its route's agents), its
        ``content`` goes to the customer as the handing agent's, and the target is told. A
        target that is none of the route's agents: logged and dropped, nothing changes."""
        route = self.route_for(conv.channel, conv.inbox_id)
        to_agent, to_role = frame.get("to_agent"), frame.get("to_role")
        target: RouteAgent | None = None
        if route is not None and isinstance(to_agent, str) and to_agent:
            target = route.agent_named(to_agent)
        elif route is not None and isinstance(to_role, str) and to_role:
            target = route.agent_with_role(to_role)
        if route is None or target is None:
            log.warning(
                "agent %s: agent_handoff to unknown %s dropped conversation=%s",
                agent_id,
                f"agent {to_agent!r}" if to_agent else f"role {to_role!r}",
                conv.id,
            )
            self.metrics.agent_errors.labels(agent_id, "agent_handoff_unknown").inc()
            return
        await self.store.set_current_agent(conv.id, target.agent_id)
        handing = route.agent_named(agent_id)
        role = handing.role if handing else None
        text = frame.get("content")
        if isinstance(text, str) and text:
            meta: dict[str, Any] = {"proactive": True, "agent_id": agent_id}
            if role is not None:
                meta["agent_role"] = role
            await self.store.add_outbound(
                conv.id,
                text=text,
                author="agent",
                deliveries=[
                    DeliverySpec("message", self.settings.delivery_max_attempts, text=text)
                ],
                meta=meta,
            )
            self.wake_deliveries()
        log.info(
            "agent %s handed conversation %s to %s (outside a turn)",
            agent_id,
            conv.id,
            target.agent_id,
        )
        reason = frame.get("reason")
        await self.hub.send_event(
            target.agent_id,
            agent_handoff_event(
                conv,
                from_agent=agent_id,
                from_role=role,
                to=target,
                reason=reason if isinstance(reason, str) else None,
            ),
        )

    def breaker(self, agent_id: str) -> CircuitBreaker:
        b = self._breakers.get(agent_id)
        if b is None:
            b = CircuitBreaker(
                self.settings.breaker_failure_threshold, self.settings.breaker_reset_seconds
            )
            self._breakers[agent_id] = b
        return b

    async def verify_agent_token(self, agent_id: str, token: str) -> bool:
        """Dial-in auth: the token from ``CHATBRIDGE_AGENT_TOKENS`` or the agent's stored hash."""
        expected = self.settings.agent_tokens.get(agent_id)
        if expected is not None and hmac.compare_digest(expected.encode(), token.encode()):
            return True
        stored = self._token_hashes.get(agent_id)
        if stored is None:
            agent = await self.store.get_agent(agent_id)
            stored = agent.token_hash if agent else None
        return stored is not None and hmac.compare_digest(stored, hash_token(token))

    def agents_status(
        self, snapshots: dict[str, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """One row per agent. With a cluster, the view of every live replica (``snapshots``:
        what each answered, else what each published at its last beat): ``connected`` if
        any replica has it, ``replica`` the one holding it, counts summed over replicas, and
        ``replicas`` the per-replica rows."""
        now = time.time()
        known: dict[str, dict[str, Any]] = {}
        for r in self._routes.values():
            named = (a.agent_id for a in r.agents if a.agent_id != r.agent_id)
            for agent_id in (r.agent_id, *named):
                known.setdefault(agent_id, {"agent_id": agent_id, "inboxes": []})
                known[agent_id]["inboxes"].append({"channel": r.channel, "inbox_id": r.inbox_id})
        local = self.hub.status()
        status: dict[str, AgentStatus] = {s.agent_id: s for s in local}
        per_replica: dict[str, list[dict[str, Any]]] = {}
        if self.cluster.distributed:
            snapshots = dict(snapshots if snapshots is not None else self.cluster.replicas())
            snapshots[self.cluster.replica_id] = {"agents": [asdict(a) for a in local]}
            for replica_id, snap in sorted(snapshots.items()):
                for row in snap.get("agents", []):
                    per_replica.setdefault(row["agent_id"], []).append(
                        {"replica": replica_id, **row}
                    )
        for agent_id in set(known) | set(status) | set(per_replica):
            entry = known.setdefault(agent_id, {"agent_id": agent_id, "inboxes": []})
            s = status.get(agent_id)
            breaker = self._breakers.get(agent_id)
            entry.update(
                transport=s.transport if s else None,
                connected=bool(s and s.connected),
                last_seen=s.last_seen if s else None,
                in_flight_turns=s.in_flight if s else 0,
                turns_answered=s.turns_answered if s else 0,
                latency_ms_p50=s.latency_ms_p50 if s else None,
                latency_ms_p95=s.latency_ms_p95 if s else None,
                breaker=breaker.state(now) if breaker else "closed",
                consecutive_failures=breaker.failures if breaker else 0,
            )
            if self.cluster.distributed:
                rows = per_replica.get(agent_id, [])
                holder = self.cluster.location(agent_id)
                main = next((r for r in rows if r["replica"] == holder), None)
                entry.update(
                    replica=holder,
                    connected=any(r["connected"] for r in rows),
                    in_flight_turns=sum(r["in_flight"] for r in rows),
                    turns_answered=sum(r["turns_answered"] for r in rows),
                    last_seen=max((r["last_seen"] for r in rows if r["last_seen"]), default=None),
                    replicas=[
                        {
                            "replica": r["replica"],
                            "connected": r["connected"],
                            "in_flight_turns": r["in_flight"],
                            "turns_answered": r["turns_answered"],
                        }
                        for r in rows
                    ],
                )
                if rows and entry["transport"] is None:
                    entry["transport"] = rows[0]["transport"]
                if main is not None:
                    entry.update(
                        latency_ms_p50=main["latency_ms_p50"],
                        latency_ms_p95=main["latency_ms_p95"],
                    )
        return sorted(known.values(), key=lambda e: e["agent_id"])
