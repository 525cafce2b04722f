"""The Bridge: one object that owns the store, the agent hub, the channels and the workers,
and offers the few operations the HTTP layer needs (accept a webhook, wait for a sync reply,
edit routes, report status). Built once per process by ``create_app``.

Its concerns live in sibling modules, mixed into ``Bridge``: inbound acceptance
(``inbound``), routes and agents (``routing``), agents' own frames (``agent_events``). The
channels come from the registry (``chatbridge.channels.registry``) unless a test passes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

from chatbridge.channels.base import Capabilities, ChannelAdapter, ChannelContext
from chatbridge.channels.registry import build_channels
from chatbridge.cluster import Cluster, make_cluster
from chatbridge.config import Settings
from chatbridge.crm.linking import load_settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.crm.transcription import TranscriptionWorker
from chatbridge.metrics import Metrics
from chatbridge.pipeline.agent_events import AgentEvents
from chatbridge.pipeline.breaker import CircuitBreaker
from chatbridge.pipeline.broadcast_reconcile import channel_reconcile
from chatbridge.pipeline.broadcasts import BroadcastWorker, channel_send
from chatbridge.pipeline.inbound import Accepted, InboundAcceptance
from chatbridge.pipeline.leases import HeldWork, SendMarks
from chatbridge.pipeline.live_status import LiveBoard, WorkingNotices
from chatbridge.pipeline.media_jobs import MediaWorker
from chatbridge.pipeline.routing import Routing, hash_token
from chatbridge.pipeline.webchat_sessions import expire_idle_sessions, forget_unsent_files
from chatbridge.pipeline.workers import ClaimLoop, DeliveryRunner, TurnRunner
from chatbridge.store import Store
from chatbridge.store.records import AgentRecord, ClaimedDelivery, ClaimedTurn, Route

__all__ = ["Accepted", "Bridge", "hash_token"]

log = logging.getLogger("chatbridge.bridge")

_NO_CAPABILITIES = Capabilities()


class Bridge(InboundAcceptance, Routing, AgentEvents):
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
        from chatbridge.channels.webchat_live import LiveHub
        from chatbridge.ratelimit import RateLimiter

        self.webchat_live = LiveHub()
        self._comms_settings = CommsSettings()
        context = ChannelContext(
            settings, self.store, self.metrics, self.webchat_live, self.comms_settings
        )
        self.channel_context = context
        # Reads the comms settings on every use: a change through the API applies at once.
        self.channels: dict[str, ChannelAdapter] = build_channels(context, given=channels)
        self.rate_limiter = RateLimiter(settings)
        # conversation id → (channel, channel key, inbox id)
        self._conv_keys: OrderedDict[str, tuple[str, str, int]] = OrderedDict()
        # what agents are doing right now (protocol 1.3 live frames), and the turns running
        # here; a slow turn's working notice (agent_events, live_status)
        self.live_board = LiveBoard()
        self._running: dict[str, ClaimedTurn] = {}
        self.working_notices = WorkingNotices(self._write_working_notice)
        from chatbridge.transports.hub import AgentHub

        self.hub = AgentHub(
            settings,
            self.metrics,
            verify_token=self.verify_agent_token,
            on_proactive=self._on_proactive,
            on_typing=self._on_typing,
            on_chunk=self._on_chunk,
            on_live=self._on_live,
            on_notice=self._on_notice,
            history=self.store.recent_messages,
        )
        self._routes: dict[tuple[str, int], Route] = {}
        self._routes_by_id: dict[int, Route] = {}
        self._token_hashes: dict[str, str] = {}
        self._agent_records: list[AgentRecord] = []
        self._breakers: dict[str, CircuitBreaker] = {}
        self._waiters: dict[int, list[asyncio.Future[dict[str, Any]]]] = {}
        self.held = HeldWork()
        self.send_marks = SendMarks(
            lambda ids: self.store.mark_sends_started(ids, settings.instance_id)
        )
        self._receipt_events: dict[str, asyncio.Event] = {}
        self.store_ok = True  # the last housekeeping round reached the store
        self.backlog: dict[str, dict[str, float]] = {}
        self._turn_runner = TurnRunner(self)
        self._turns = ClaimLoop(
            "turns",
            claim=self._claim_turns,
            run=self._run_turn,
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
        self.transcriptions = TranscriptionWorker(
            self.store,
            self.comms_settings,
            owner=settings.instance_id,
            poll_interval=max(1.0, settings.poll_interval),
            retry_base=settings.retry_base_seconds,
            retry_max=max(settings.retry_max_seconds, 1.0),
        )
        # inbound media downloads (and voice notes' transcripts); a settled one wakes turns
        self.media = MediaWorker(
            self.store,
            settings,
            self.comms_settings,
            on_released=lambda turn_id: self.wake_turns(),
            retry_base=max(settings.retry_base_seconds, 0.5),
            retry_max=max(settings.retry_max_seconds, 1.0),
        )
        # template broadcasts to CRM segments (pipeline/broadcasts.py), paced and leased
        self.broadcasts = BroadcastWorker(
            self.store,
            self.comms_settings,
            channel_send(self.channels),
            owner=settings.instance_id,
            lease_seconds=settings.lease_seconds,
            poll_interval=max(1.0, settings.poll_interval),
            reconcile=channel_reconcile(self.channels),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.started = False
        self.cluster: Cluster = make_cluster(settings)
        # read on every message: whether wake-ups and sync answers go to other replicas too
        self._distributed = self.cluster.distributed
        self._join_cluster(self.cluster)

    # ------------------------------------------------------------------ cluster
    def _join_cluster(self, cluster: Cluster) -> None:
        """Wire what other replicas must hear about (see ``chatbridge.cluster``)."""
        self.hub.join(cluster)
        live = self.webchat_live
        if cluster.distributed:  # else a live frame would be built for no one
            live.relay = lambda uid, frame: cluster.publish("live", {"uid": uid, "frame": frame})

        def relayed(p: dict[str, Any]) -> None:
            live.publish(p["uid"], p["frame"], relay=False)

        cluster.on("live", relayed)
        cluster.on("live_status", self.live_board.apply)
        cluster.on("wake", self._on_wake)
        cluster.on("turn_done", lambda p: self._resolve_local(p["turn"], p["outcome"], p["text"]))
        cluster.on("superseded", lambda p: self._superseded_here(**p))
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
                asyncio.create_task(self.broadcasts.run(), name="broadcast-worker"),
                asyncio.create_task(self.media.run(), name="media-worker"),
            ]
        self.started = True
        log.info(
            "bridge started: instance=%s routes=%d", self.settings.instance_id, len(self._routes)
        )

    async def begin_shutdown(self) -> None:
        """End what holds HTTP requests open (web chat long-polls and sockets, agent
        long-polls), so the server's graceful shutdown does not wait out their timeouts."""
        self.hub.pull.end_polls()
        self.cluster.end_calls()
        with contextlib.suppress(Exception):
            await self.webchat_live.stop()

    async def stop(self) -> None:
        """Stop claiming, let in-flight work finish for ``drain_seconds``, then cancel."""
        await self.begin_shutdown()
        await self.broadcasts.stop(self.settings.drain_seconds)  # the send in flight recorded
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for timer in self._timers:
            timer.cancel()
        await self._turns.drain(self.settings.drain_seconds)
        await self.working_notices.stop()
        await self._deliveries.drain(self.settings.drain_seconds)
        with contextlib.suppress(Exception):
            await self.store.release_leases(self.settings.instance_id)
        await self.hub.stop()
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
                if self._distributed:
                    self.sync_agents()
                seen = {s.agent_id: s.last_seen for s in self.hub.status() if s.last_seen}
                await self.store.touch_agents(seen)
                # web chat sessions idle past the timeout: session_expired, once (one query)
                await expire_idle_sessions(self)
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + 300
                    await self.store.delete_expired_sessions(
                        self.settings.webchat_session_timeout, announced_only=True
                    )
                    await forget_unsent_files(self)
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

    # ------------------------------------------------------------------ wake-ups
    def wake_turns(self) -> None:
        self._turns.wake()
        if self._distributed:
            self.cluster.wake("turns")

    def wake_deliveries(self) -> None:
        self._deliveries.wake()
        if self._distributed:
            self.cluster.wake("deliveries")

    async def hand_back(self, turn: ClaimedTurn, replica: str) -> None:
        """A claimed turn's agent is held by ``replica``: give the turn back, unrun."""
        log.info(
            "turn %s: agent %s is on %s; handing the turn back", turn.key, turn.agent_id, replica
        )
        await self.store.release_turn(turn.id, self.settings.instance_id)
        self.wake_turns()

    def wake_turns_later(self, delay: float) -> None:
        """``wake_turns`` (here and, with a cluster, on every replica) in ``delay`` seconds."""
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(0.0, delay) + 0.005, self.wake_turns)
        self._timers.add(handle)
        loop.call_later(max(0.0, delay) + 0.02, self._timers.discard, handle)

    def schedule_wake(self, delay: float, what: str = "deliveries") -> None:
        loop = asyncio.get_running_loop()
        loop_to_wake = self._turns if what == "turns" else self._deliveries
        handle = loop.call_later(delay, loop_to_wake.wake)
        self._timers.add(handle)
        loop.call_later(delay + 0.01, self._timers.discard, handle)

    async def _run_turn(self, turn: ClaimedTurn) -> None:
        """Run a claimed turn (``TurnRunner``), with its live status around it."""
        self.live_begin(turn)
        try:
            await self._turn_runner.run(turn)
        finally:
            self.live_end(turn)

    async def _claim_turns(self, limit: int) -> list[ClaimedTurn]:
        claimed = await self.store.claim_turns(
            self.settings.instance_id,
            limit=limit,
            lease_seconds=self.settings.lease_seconds,
            skip_agents=self.cluster.held_elsewhere(),
        )
        # A turn a live task here is still running (its lease ran out while the store was
        # away, and this claim took it again) must not run twice.
        claimed = [t for t in claimed if t.id not in self.held.turns]
        for t in claimed:
            self.held.hold_turn(t.id)
        return claimed

    def shows_typing(self, turn: ClaimedTurn) -> bool:
        """Whether the turn's channel gets a typing indicator while its agent thinks."""
        conv = turn.conversation
        return conv.owner == "bot" and self.shows_typing_on(conv.channel)

    def shows_typing_on(self, channel: str) -> bool:
        """Whether ``channel`` declares it can show a typing indicator (``Capabilities``)."""
        adapter = self.channels.get(channel)
        return adapter is not None and getattr(adapter, "capabilities", _NO_CAPABILITIES).typing

    async def _claim_deliveries(self, limit: int) -> list[ClaimedDelivery]:
        claimed = await self.store.claim_deliveries(
            self.settings.instance_id, limit=limit, lease_seconds=self.settings.lease_seconds
        )
        claimed = [d for d in claimed if d.id not in self.held.deliveries]
        for d in claimed:
            self.held.hold_delivery(d.id)
        return claimed

    # ------------------------------------------------------------------ superseded turns
    def supersede(self, agent_id: str, turn_id: int, by_turn_id: int, conversation_id: str) -> None:
        """A newer message superseded ``turn_id`` (its lease is already gone, so its reply
        can no longer be written): stop waiting for its agent wherever it runs, tell the
        agent, and give its sync callers the answer of the turn that replaced it."""
        payload: dict[str, Any] = {
            "agent_id": agent_id,
            "turn_id": turn_id,
            "by_turn_id": by_turn_id,
            "conversation_id": conversation_id,
        }
        self.metrics.turns.labels(agent_id, "superseded").inc()  # once, where it happened
        self._superseded_here(**payload)
        if self._distributed:
            self.cluster.publish("superseded", payload)

    def _superseded_here(
        self, agent_id: str, turn_id: int, by_turn_id: int, conversation_id: str
    ) -> None:
        waiters = self._waiters.pop(turn_id, [])
        if waiters:
            self._waiters.setdefault(by_turn_id, []).extend(waiters)
        self.hub.cancel_turn(agent_id, f"t_{turn_id}", conversation_id, "superseded")

    # ------------------------------------------------------------------ sync replies
    def resolve_waiters(self, turn_id: int, outcome: str, text: str | None) -> None:
        """Answer this turn's sync callers, here and (with a cluster) on every replica."""
        self._resolve_local(turn_id, outcome, text)
        if self._distributed:
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
