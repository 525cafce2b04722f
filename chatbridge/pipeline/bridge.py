"""The Bridge: one object that owns the store, the agent hub, the channel adapters and the
workers, and offers the few operations the HTTP layer needs (accept a webhook, wait for a sync
reply, edit routes, report status). Built once per process by ``create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from chatbridge.channels.base import ChannelAdapter
from chatbridge.cluster import Cluster
from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.crm.linking import link_inbound, load_settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.crm.transcription import TranscriptionWorker
from chatbridge.errors import UnknownInbox
from chatbridge.metrics import Metrics
from chatbridge.models import (
    ConversationEvent,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OwnerSignal,
    ParsedWebhook,
    StatusUpdate,
)
from chatbridge.pipeline.breaker import CircuitBreaker
from chatbridge.pipeline.decisions import TYPING_ATTEMPTS, decide_owner, decide_turn
from chatbridge.pipeline.leases import HeldWork, SendMarks
from chatbridge.pipeline.workers import ClaimLoop, DeliveryRunner, TurnRunner
from chatbridge.store import Store
from chatbridge.store.records import (
    AgentRecord,
    ClaimedDelivery,
    ClaimedTurn,
    ConversationRecord,
    DeliverySpec,
    Route,
)
from chatbridge.store.routing import AgentSpec
from chatbridge.transports.base import AgentStatus

log = logging.getLogger("chatbridge.bridge")

TYPING_CHANNELS = ("chatwoot", "webchat", "whatsapp")


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class Accepted:
    """What the webhook endpoint answers."""

    status: str  # accepted | stored | duplicate | ignored | forwarded
    conversation_id: str | None = None
    message_id: str | None = None
    turn_id: int | None = None
    reason: str | None = None
    response_mode: str = "async"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        for key in ("conversation_id", "message_id", "turn_id", "reason"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value if key != "turn_id" else f"t_{value}"
        return out


class Bridge:
    """Everything the running service is made of. ``start()`` / ``stop()`` bracket its life."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        channels: dict[str, ChannelAdapter] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.store = store or Store(settings.database_url)
        self.metrics.watch_store(self.store.stats)
        self.channels: dict[str, ChannelAdapter] = channels if channels is not None else {}
        if "chatwoot" not in self.channels:
            from chatbridge.channels.chatwoot import ChatwootAdapter

            self.channels["chatwoot"] = ChatwootAdapter(
                settings.chatwoot_base_url,
                settings.chatwoot_api_access_token,
                timeout=settings.chatwoot_timeout_seconds,
            )
        from chatbridge.channels.webchat import WebchatChannel
        from chatbridge.ratelimit import RateLimiter
        from chatbridge.webchat.live import LiveHub

        self.webchat_live = LiveHub()
        self.channels.setdefault("webchat", WebchatChannel(self.webchat_live))
        from chatbridge.channels.whatsapp import WhatsAppChannel

        # reads the comms settings on every send: a change through the API applies at once
        self.channels.setdefault("whatsapp", WhatsAppChannel(self.comms_settings, store=self.store))
        self.rate_limiter = RateLimiter(settings)
        self._conv_keys: OrderedDict[str, str] = OrderedDict()  # conversation id → channel key
        from chatbridge.transports.hub import AgentHub

        self.hub = AgentHub(
            settings,
            self.metrics,
            verify_token=self.verify_agent_token,
            on_proactive=self._on_proactive,
            on_typing=self._on_typing,
            on_chunk=self._on_chunk,
            history=self.store.recent_messages,
        )
        self._routes: dict[tuple[str, int], Route] = {}
        self._routes_by_id: dict[int, Route] = {}
        self._token_hashes: dict[str, str] = {}
        self._agent_records: list[AgentRecord] = []
        self._breakers: dict[str, CircuitBreaker] = {}
        self._waiters: dict[int, list[asyncio.Future[dict[str, Any]]]] = {}
        self._sending: dict[str, list[str]] = {}  # conversation id → texts being sent
        self._recently_sent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.held = HeldWork()
        self.send_marks = SendMarks(
            lambda ids: self.store.mark_sends_started(ids, settings.instance_id)
        )
        self._receipt_events: dict[str, asyncio.Event] = {}
        self.store_ok = True  # the last housekeeping round reached the store
        self.backlog: dict[str, dict[str, float]] = {}
        self._turns = ClaimLoop(
            "turns",
            claim=self._claim_turns,
            run=TurnRunner(self).run,
            concurrency=settings.turn_concurrency,
            poll_interval=settings.poll_interval,
        )
        self._deliveries = ClaimLoop(
            "deliveries",
            claim=self._claim_deliveries,
            run=DeliveryRunner(self).run,
            concurrency=settings.delivery_concurrency,
            poll_interval=settings.poll_interval,
        )
        self._comms_settings = CommsSettings()
        self.transcriptions = TranscriptionWorker(
            self.store,
            self.comms_settings,
            owner=settings.instance_id,
            poll_interval=max(1.0, settings.poll_interval),
            retry_base=settings.retry_base_seconds,
            retry_max=max(settings.retry_max_seconds, 1.0),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.started = False
        self.cluster: Cluster | None = None
        if settings.redis_url:
            self.cluster = Cluster(
                settings.redis_url,
                settings.instance_id,
                prefix=settings.redis_prefix,
                presence_ttl=settings.cluster_presence_seconds,
                beat=max(0.2, settings.cluster_presence_seconds / 5),
            )
            self._join_cluster(self.cluster)

    # ------------------------------------------------------------------ cluster
    def _join_cluster(self, cluster: Cluster) -> None:
        """Wire what other replicas must hear about (see ``chatbridge.cluster``)."""
        self.hub.join(cluster)
        live = self.webchat_live
        live.relay = lambda uid, frame: cluster.publish("live", {"uid": uid, "frame": frame})

        def relayed(p: dict[str, Any]) -> None:
            live.publish(p["uid"], p["frame"], relay=False)

        cluster.on("live", relayed)
        cluster.on("wake", self._on_wake)
        cluster.on("turn_done", lambda p: self._resolve_local(p["turn"], p["outcome"], p["text"]))
        cluster.on("routes", lambda p: self._reload_routes_and_agents())
        cluster.on("comms_settings", lambda p: self._reload_comms_settings())
        cluster.on_resync(self._resync)
        cluster.status_provider(self._local_status)

        async def agents(_: dict[str, Any]) -> dict[str, Any]:
            return self._local_status()

        cluster.serve("agents", agents)

    def _local_status(self) -> dict[str, Any]:
        return {"agents": [asdict(a) for a in self.hub.status()]}

    def _on_wake(self, payload: dict[str, Any]) -> None:
        if payload.get("what") == "turns":
            self._turns.wake()
        else:
            self._deliveries.wake()

    def _resync(self) -> None:
        """Messages from other replicas may have been lost: look at the store again."""
        self._turns.wake()
        self._deliveries.wake()
        self.webchat_live.resync()

    async def _reload_routes_and_agents(self) -> None:
        await self.reload_routes()
        self.sync_agents()

    async def _reload_comms_settings(self) -> None:
        self._comms_settings = await load_settings(self.store, CommsSettings())

    def sync_agents(self) -> None:
        """Configure the hub for the enabled agents as ``reload_routes`` last read them (with
        a cluster: also the ones another replica added or changed)."""
        for agent in self._agent_records:
            if agent.enabled:
                self.hub.configure(
                    agent.id,
                    agent.transport,  # type: ignore[arg-type]
                    agent.url,
                    agent.options,
                )

    # ------------------------------------------------------------------ lifecycle
    async def start(self, *, workers: bool = True) -> None:
        async with self.store.startup_lock():  # replicas starting together: one at a time
            if self.settings.auto_migrate:
                await self.store.migrate()
            await self._seed_mappings(self.settings.inbox_agent_mappings)
        if self.cluster is not None:
            await self.cluster.start()
        self._comms_settings = await load_settings(self.store, self._comms_settings)
        await self.reload_routes()
        await self.ensure_webchat_compat_route()
        await self.hub.start()
        self.sync_agents()
        # Leases held under our own (configured) instance id by a previous life of this
        # process are ours to take back at once.
        await self.store.release_leases(self.settings.instance_id)
        if workers:
            self._tasks = [
                asyncio.create_task(self._turns.run(), name="turn-worker"),
                asyncio.create_task(self._deliveries.run(), name="delivery-worker"),
                asyncio.create_task(self._housekeeping(), name="housekeeping"),
                asyncio.create_task(self.transcriptions.run(), name="transcription-worker"),
            ]
        self.started = True
        log.info(
            "bridge started: instance=%s routes=%d", self.settings.instance_id, len(self._routes)
        )

    async def begin_shutdown(self) -> None:
        """End what holds HTTP requests open (web chat long-polls and sockets, agent
        long-polls), so the server's graceful shutdown does not wait out their timeouts."""
        self.hub.pull.end_polls()
        if self.cluster is not None:
            self.cluster.end_calls()
        with contextlib.suppress(Exception):
            await self.webchat_live.stop()

    async def stop(self) -> None:
        """Stop claiming, let in-flight work finish for ``drain_seconds``, then cancel."""
        await self.begin_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for timer in self._timers:
            timer.cancel()
        await self._turns.drain(self.settings.drain_seconds)
        await self._deliveries.drain(self.settings.drain_seconds)
        with contextlib.suppress(Exception):
            await self.store.release_leases(self.settings.instance_id)
        await self.hub.stop()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.stop()
        with contextlib.suppress(Exception):
            await self.rate_limiter.aclose()
        for adapter in self.channels.values():
            with contextlib.suppress(Exception):
                await adapter.aclose()
        await self.store.close()
        self.started = False

    def comms_settings(self) -> CommsSettings:
        """The comms settings in force: the environment's, with the API's stored changes."""
        return self._comms_settings

    def set_comms_settings(self, settings: CommsSettings) -> None:
        self._comms_settings = settings
        if self.cluster is not None:
            self.cluster.publish("comms_settings", {})

    @property
    def workers_running(self) -> bool:
        return self._turns.running and self._deliveries.running

    async def run_until_idle(self) -> None:
        """Burst mode for tests: run every due turn and delivery, then return."""
        while await self._turns.run_until_idle() + await self._deliveries.run_until_idle():
            pass

    async def renew_held_leases(self) -> None:
        """Extend the leases of the work live tasks of this process hold, and nothing else
        (one round of the housekeeping; the worker tests call it on their fake clock)."""
        await self.store.renew_leases(
            self.settings.instance_id,
            self.settings.lease_seconds,
            turn_ids=self.held.turns,
            delivery_ids=self.held.deliveries,
        )

    async def _housekeeping(self) -> None:
        """Renew the leases of work our live tasks are doing, measure the backlog, pick up
        route changes made by other processes, record presence, and now and then forget
        expired web chat sessions (their messages stay)."""
        interval = max(0.2, self.settings.lease_seconds / 3)
        next_cleanup = time.monotonic() + 60
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_held_leases()
                self.backlog = await self.store.backlog()
                self.metrics.observe_backlog(self.backlog)
                if not self.store_ok:
                    log.warning("store reachable again")
                self.store_ok = True
            except Exception as exc:
                if self.store_ok:
                    log.error("store unreachable: %s: %s", type(exc).__name__, exc)
                self.store_ok = False
                continue
            try:
                await self.reload_routes()
                if self.cluster is not None:
                    self.sync_agents()
                seen = {s.agent_id: s.last_seen for s in self.hub.status() if s.last_seen}
                await self.store.touch_agents(seen)
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + 300
                    await self.store.delete_expired_sessions(self.settings.webchat_session_timeout)
            except Exception:
                log.exception("housekeeping failed")

    def stuck(self) -> str | None:
        """Why this replica should not count as ready though it answers, or None.

        Work is stuck when a lease ran out a whole lease period ago and nobody claimed the
        work again (the workers are not taking work), or the store was unreachable at the
        last housekeeping round.
        """
        if not self.store_ok:
            return "store_unreachable"
        for queue, figures in self.backlog.items():
            if figures.get("oldest_expired", 0.0) > self.settings.lease_seconds:
                return f"{queue}_overdue"
        return None

    # ------------------------------------------------------------------ receipts
    async def record_receipt(self, idempotency_key: str, external_id: str | None) -> bool:
        """A channel echoed one of our messages back: note it, wake a delivery waiting for it."""
        mine = await self.store.record_receipt(idempotency_key, external_id)
        event = self._receipt_events.get(idempotency_key)
        if event is not None:
            event.set()
        return mine

    async def _record_echo(self, echo: DeliveryReceipt) -> bool:
        if echo.idempotency_key is not None:
            return await self.record_receipt(echo.idempotency_key, echo.external_message_id)
        if echo.channel_key is None or echo.external_message_id is None:
            return False
        mine = await self.store.record_receipt_in_conversation(
            echo.channel, echo.channel_key, echo.external_message_id, echo.text
        )
        if mine:
            for event in list(self._receipt_events.values()):
                event.set()  # the waiting delivery re-reads the store
        return mine

    async def wait_for_receipt(self, idempotency_key: str, timeout: float) -> None:
        """Wait up to ``timeout`` for ``record_receipt`` of this key in this process (another
        replica's receipt is only seen in the store, which the caller re-reads)."""
        event = self._receipt_events.setdefault(idempotency_key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._receipt_events.pop(idempotency_key, None)

    # ------------------------------------------------------------------ wake-ups
    def wake_turns(self) -> None:
        self._turns.wake()
        if self.cluster is not None:
            self.cluster.wake("turns")

    def wake_deliveries(self) -> None:
        self._deliveries.wake()
        if self.cluster is not None:
            self.cluster.wake("deliveries")

    async def hand_back(self, turn: ClaimedTurn, replica: str) -> None:
        """A claimed turn's agent is held by ``replica``: give the turn back, unrun."""
        log.info(
            "turn %s: agent %s is on %s; handing the turn back", turn.key, turn.agent_id, replica
        )
        await self.store.release_turn(turn.id, self.settings.instance_id)
        self.wake_turns()

    def schedule_wake(self, delay: float, what: str = "deliveries") -> None:
        loop = asyncio.get_running_loop()
        loop_to_wake = self._turns if what == "turns" else self._deliveries
        handle = loop.call_later(delay, loop_to_wake.wake)
        self._timers.add(handle)
        loop.call_later(delay + 0.01, self._timers.discard, handle)

    async def _claim_turns(self, limit: int) -> list[ClaimedTurn]:
        claimed = await self.store.claim_turns(
            self.settings.instance_id,
            limit=limit,
            lease_seconds=self.settings.lease_seconds,
            skip_agents=self.cluster.held_elsewhere() if self.cluster is not None else (),
        )
        # A turn a live task here is still running (its lease ran out while the store was
        # away, and this claim took it again) must not run twice.
        claimed = [t for t in claimed if t.id not in self.held.turns]
        for t in claimed:
            self.held.hold_turn(t.id)
        return claimed

    def shows_typing(self, turn: ClaimedTurn) -> bool:
        """Whether the turn's channel gets a typing indicator while its agent thinks."""
        channel = turn.conversation.channel
        return (
            channel in TYPING_CHANNELS
            and channel in self.channels
            and turn.conversation.owner == "bot"
        )

    async def _claim_deliveries(self, limit: int) -> list[ClaimedDelivery]:
        claimed = await self.store.claim_deliveries(
            self.settings.instance_id, limit=limit, lease_seconds=self.settings.lease_seconds
        )
        claimed = [d for d in claimed if d.id not in self.held.deliveries]
        for d in claimed:
            self.held.hold_delivery(d.id)
        return claimed

    # ------------------------------------------------------------------ routes
    async def _seed_mappings(self, mappings: list[InboxMapping]) -> None:
        """Routes from the environment are created if absent (API edits to a route are kept);
        an agent's connection details (URL, transport, timeout, token) always follow the
        environment, since they describe the deployment."""
        for m in mappings:
            mode = m.reply_mode
            if not self.settings.enable_async_responses and "reply_mode" not in m.model_fields_set:
                mode = "sync"
            spec = self._agent_spec(m)
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
        a = m.agent_config
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
            overwrite=overwrite,
            agent=agent,
        )
        await self.reload_routes()
        if self.started and (created or overwrite):
            self.sync_agents()  # from the stored row: it holds the secrets a save may omit
        if self.cluster is not None:
            self.cluster.publish("routes", {})
        return route, created

    async def delete_mapping(self, channel: str, inbox_id: int) -> bool:
        deleted = await self.store.delete_route(channel, inbox_id)
        await self.reload_routes()
        if self.cluster is not None:
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

    def breaker(self, agent_id: str) -> CircuitBreaker:
        b = self._breakers.get(agent_id)
        if b is None:
            b = CircuitBreaker(
                self.settings.breaker_failure_threshold, self.settings.breaker_reset_seconds
            )
            self._breakers[agent_id] = b
        return b

    # ------------------------------------------------------------------ agents
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
            known.setdefault(r.agent_id, {"agent_id": r.agent_id, "inboxes": []})
            known[r.agent_id]["inboxes"].append({"channel": r.channel, "inbox_id": r.inbox_id})
        local = self.hub.status()
        status: dict[str, AgentStatus] = {s.agent_id: s for s in local}
        per_replica: dict[str, list[dict[str, Any]]] = {}
        if self.cluster is not None:
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
            if self.cluster is not None:
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

    async def notify_agent_owner(
        self, agent_id: str, conversation_id: str, owner: str, reason: str
    ) -> None:
        await self.hub.send_event(
            agent_id,
            {
                "type": "conversation_event",
                "event": "owner_changed",
                "conversation_id": conversation_id,
                "owner": owner,
                "reason": reason,
            },
        )

    def _routed_to(self, agent_id: str, conv: ConversationRecord) -> bool:
        """Whether ``conv``'s route names ``agent_id``.

        Agents authenticate one by one (per-agent tokens), so an agent may only write into
        conversations of inboxes routed to it, never into another agent's customers'.
        """
        route = self.route_for(conv.channel, conv.inbox_id)
        return route is not None and route.agent_id == agent_id

    async def _on_proactive(self, agent_id: str, frame: dict[str, Any]) -> None:
        conversation_id = str(frame.get("conversation_id") or "")
        conv = await self.store.get_conversation(conversation_id)
        if conv is None or not self._routed_to(agent_id, conv):
            log.warning(
                "agent %s wrote to %s conversation %s",
                agent_id,
                "unknown" if conv is None else "another agent's",
                conversation_id,
            )
            self.metrics.agent_replies_dropped.labels(agent_id).inc()
            return
        text = frame.get("content")
        specs: list[DeliverySpec] = []
        if text:
            specs.append(DeliverySpec("message", self.settings.delivery_max_attempts, text=text))
        handoff = frame.get("type") == "handoff"
        if handoff:
            specs.append(DeliverySpec("handoff", self.settings.delivery_max_attempts))
        await self.store.add_outbound(
            conv.id,
            text=text,
            author="agent",
            deliveries=specs,
            handoff=handoff,
            meta={"proactive": True, "agent_id": agent_id},
        )
        self.wake_deliveries()

    async def _channel_key(self, conversation_id: str) -> str | None:
        key = self._conv_keys.get(conversation_id)
        if key is None:
            conv = await self.store.get_conversation(conversation_id)
            if conv is None:
                return None
            key = conv.channel_key if conv.channel == "webchat" else ""
            self._conv_keys[conversation_id] = key
            while len(self._conv_keys) > 10_000:
                self._conv_keys.popitem(last=False)
        return key or None

    async def _on_chunk(
        self, turn_key: str, conversation_id: str, stream_index: int, content: str
    ) -> None:
        """A streamed piece of a reply: shown live to the conversation's web chat visitors."""
        uid = await self._channel_key(conversation_id)
        if uid is not None:
            self.webchat_live.publish(
                uid,
                {
                    "type": "agent_streaming",
                    "turn_id": turn_key,
                    "stream_index": stream_index,
                    "content": content,
                },
            )

    async def _on_typing(self, agent_id: str, conversation_id: str, on: bool) -> None:
        conv = await self.store.get_conversation(conversation_id)
        if conv is None or conv.channel not in TYPING_CHANNELS:
            return
        if not self._routed_to(agent_id, conv):
            return
        kind = "typing_on" if on else "typing_off"
        await self.store.add_outbound(
            conv.id, text=None, author="agent", deliveries=[DeliverySpec(kind, TYPING_ATTEMPTS)]
        )
        self.wake_deliveries()

    # ------------------------------------------------------------------ inbound
    async def accept(self, parsed: ParsedWebhook, *, mode: str | None = None) -> Accepted:
        """Persist what a channel sent (before it is acknowledged) and wake the workers."""
        if isinstance(parsed, Ignored):
            return Accepted("ignored", reason=parsed.reason)
        if isinstance(parsed, StatusUpdate):
            message_id = await self.store.set_message_status(
                parsed.external_message_id, parsed.status, parsed.error
            )
            if message_id is None:
                if parsed.channel_key is not None and parsed.status != "failed":
                    echo = DeliveryReceipt(
                        parsed.channel,
                        None,
                        external_message_id=parsed.external_message_id,
                        channel_key=parsed.channel_key,
                    )
                    if await self._record_echo(echo):
                        self.metrics.receipts.labels(parsed.channel).inc()
                        return Accepted("stored", reason="receipt")
                return Accepted("ignored", reason="status_of_unknown_message")
            return Accepted("stored", message_id=message_id, reason=f"status:{parsed.status}")
        if isinstance(parsed, DeliveryReceipt):
            if await self._record_echo(parsed):
                self.metrics.receipts.labels(parsed.channel).inc()
                return Accepted("stored", reason="receipt")
            if parsed.otherwise is None:
                return Accepted("ignored", reason="own_reply")
            parsed = parsed.otherwise
        route = self.route_for(parsed.channel, parsed.inbox_id)
        if route is None:
            raise UnknownInbox(parsed.channel, parsed.inbox_id)
        if isinstance(parsed, InboundMessage):
            response_mode = mode or route.reply_mode
            result = await self.store.ingest(
                parsed,
                route=route,
                response_mode=response_mode,
                decide=lambda conv: decide_turn(route, conv),
            )
            if result.turn_id is not None:
                self.wake_turns()
            if result.conversation_id and result.status != "duplicate":
                await link_inbound(self.store, self._comms_settings, parsed, result.conversation_id)
            return Accepted(
                result.status,
                conversation_id=result.conversation_id,
                message_id=result.message_id,
                turn_id=result.turn_id,
                reason=result.reason,
                response_mode=response_mode,
            )
        if isinstance(parsed, OwnerSignal):
            return await self._accept_owner_signal(parsed, route)
        return await self._accept_event(parsed, route)

    async def _accept_owner_signal(self, sig: OwnerSignal, route: Route) -> Accepted:
        if sig.text is not None and self._is_own_echo(sig):
            return Accepted("ignored", reason="own_reply")
        before = await self.store.find_conversation(sig.channel, sig.channel_key)

        def decide(conv: ConversationRecord) -> str | None:
            return decide_owner(
                signal_owner=sig.owner,
                external_status=sig.external_status,
                previous_status=sig.previous_status,
                agent_bot_mode=route.agent_bot_mode,
            )

        conv, duplicate = await self.store.apply_owner_signal(
            channel=sig.channel,
            channel_key=sig.channel_key,
            inbox_id=sig.inbox_id,
            decide_owner=decide,
            external_status=sig.external_status,
            note_text=sig.text,
            note_author="human",
            external_message_id=sig.external_message_id,
            delivery_id=sig.delivery_id,
        )
        if duplicate or conv is None:
            return Accepted("duplicate")
        if before is None or before.owner != conv.owner:
            log.info("conversation %s owner → %s (%s)", conv.id, conv.owner, sig.reason)
            await self.notify_agent_owner(route.agent_id, conv.id, conv.owner, sig.reason)
            if conv.owner == "bot":
                self.wake_turns()
        return Accepted("stored", conversation_id=conv.id, reason=f"owner:{conv.owner}")

    async def _accept_event(self, ev: ConversationEvent, route: Route) -> Accepted:
        conversation_id = None
        if ev.channel_key:
            conv, duplicate = await self.store.apply_owner_signal(
                channel=ev.channel,
                channel_key=ev.channel_key,
                inbox_id=ev.inbox_id,
                decide_owner=lambda _c: None,
                external_status=ev.external_status,
                delivery_id=ev.delivery_id,
            )
            if duplicate:
                return Accepted("duplicate")
            conversation_id = conv.id if conv else None
        contact = ev.contact
        sent = await self.hub.send_event(
            route.agent_id,
            {
                "type": "conversation_event",
                "event": ev.event,
                "conversation_id": conversation_id,
                "inbox_id": ev.inbox_id,
                "channel": ev.channel,
                "sender": (
                    {"id": contact.external_id, "name": contact.name, "email": contact.email}
                    if contact
                    else None
                ),
                "data": ev.data,
            },
        )
        return Accepted(
            "forwarded" if sent else "stored",
            conversation_id=conversation_id,
            reason=None if sent else "agent_offline",
        )

    # Loop safety for the case where the bridge posts with a *user* token: Chatwoot then
    # reports our own reply as an outgoing message from a user, which would look like a human
    # taking over. We recognise it by the text being sent right now, or by its message id.
    def note_sending(self, d: ClaimedDelivery) -> None:
        if d.kind == "message" and d.text:
            self._sending.setdefault(d.conversation.channel_key, []).append(d.text)

    def note_sent(self, d: ClaimedDelivery) -> None:
        if d.kind == "message" and d.text:
            texts = self._sending.get(d.conversation.channel_key)
            if texts and d.text in texts:
                texts.remove(d.text)
                if not texts:
                    del self._sending[d.conversation.channel_key]
            self._recently_sent[(d.conversation.channel_key, d.text)] = None
            while len(self._recently_sent) > 10_000:
                self._recently_sent.popitem(last=False)

    def _is_own_echo(self, sig: OwnerSignal) -> bool:
        text = sig.text or ""
        if text in self._sending.get(sig.channel_key, ()):
            return True
        key = (sig.channel_key, text)
        if key in self._recently_sent:
            del self._recently_sent[key]
            return True
        return False

    # ------------------------------------------------------------------ sync replies
    def resolve_waiters(self, turn_id: int, outcome: str, text: str | None) -> None:
        """Answer this turn's sync callers, here and (with a cluster) on every replica."""
        self._resolve_local(turn_id, outcome, text)
        if self.cluster is not None:
            self.cluster.publish("turn_done", {"turn": turn_id, "outcome": outcome, "text": text})

    def _resolve_local(self, turn_id: int, outcome: str, text: str | None) -> None:
        for fut in self._waiters.pop(turn_id, []):
            if not fut.done():
                fut.set_result({"outcome": outcome, "content": text})

    async def wait_for_reply(self, turn_id: int, timeout: float) -> dict[str, Any] | None:
        """Wait for a turn's outcome; None if it is not done within ``timeout`` seconds.

        Wakes on the in-process signal; also re-reads the store now and then, in case another
        process ran the turn.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiters.setdefault(turn_id, []).append(fut)
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                try:
                    return await asyncio.wait_for(
                        asyncio.shield(fut), min(remaining, max(1.0, self.settings.poll_interval))
                    )
                except TimeoutError:
                    row = await self.store.get_turn(turn_id)
                    if row and row["state"] in ("done", "failed"):
                        return {"outcome": row["outcome"], "content": row["reply_text"]}
        finally:
            waiters = self._waiters.get(turn_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[turn_id]
