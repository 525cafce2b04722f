"""``RedisCluster``: what several bridge replicas tell each other through Redis.

Distributed mode is on when ``CHATBRIDGE_REDIS_URL`` is set. The database stays the only
durable layer (turns and deliveries are claimed with leases there, so ordering and "one turn
in flight per conversation" hold across replicas without Redis); Redis carries what is fast
and disposable:

- **Broadcasts** (``publish`` / ``on``): wake-ups ("a turn / delivery is waiting"), web chat
  live events (streamed chunks, typing, "history grew"), finished turns for sync waiters,
  settings and route changes. One pub/sub channel for all replicas; a replica ignores its own
  messages (it has already acted on them locally).
- **Calls** (``call`` / ``serve``): a request to one named replica and its answer, over that
  replica's own channel. Used to hand an HTTP request to the replica that owns an http-pull
  agent's offers or runs the http-webhook turn a late reply names, and to send an event to
  an agent over another replica's link.
- **Links** (``set_links`` / ``links_of``): which replicas have a live connection to which
  agents, announced by each replica and kept in its record (``links.py``).
- **Leases** (``want_lease`` / ``location``): the one replica offering an http-pull agent's
  turns (``leases.py``).
- **Who is alive** (``replicas``): ``<prefix>:replica:<id>`` is refreshed every beat with a
  status snapshot, for the cluster-wide ``/agents/status``.

Nothing here may lose work when Redis is away: every notification has a polling fallback
(claim loops poll, sync waiters re-read the turn, web chat clients resume from history). What
Redis does guarantee is ordering on one connection, which keeps streamed chunks in order. When
the connection comes back (or a publish failed while it was away) every replica *resyncs*:
it wakes its workers and tells every local web chat listener to re-read its history, so a
notification lost in the gap only delays.

Why our own instead of a library: the pieces are small (one pub/sub connection, a publish
queue, ``SET NX PX`` leases with a compare-and-renew script, a set of agent ids per
replica) and tied to how the bridge recovers; a general task queue or RPC framework would
duplicate the database's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from chatbridge.cluster.base import (
    ClusterUnavailable,
    Handler,
    LinksListener,
    LocationListener,
    Payload,
    Service,
    StatusProvider,
)
from chatbridge.cluster.calls import PendingCalls, answer
from chatbridge.cluster.leases import DROP, RENEW, LeaseBook
from chatbridge.cluster.links import PeerLinks

__all__ = ["RedisCluster"]

log = logging.getLogger("chatbridge.cluster")

QUEUE_LIMIT = 10_000


class _StoppablePool(ConnectionPool):
    """A connection pool that hands out nothing once its cluster has stopped.

    Closing a redis-py pool disconnects what it holds but lets it open new connections, so a
    request still running on a stopping replica would open a socket nobody closes."""

    stopped = False

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        if self.stopped:
            raise RedisConnectionError("the cluster connection is stopped")
        return await super().get_connection(*args, **options)  # type: ignore[no-untyped-call]


class RedisCluster:
    """One replica's view of the others, through Redis (see the module docstring).

    Args:
        redis_url: ``redis://…``.
        replica_id: this replica's ``CHATBRIDGE_INSTANCE_ID``; must differ between replicas.
        prefix: key and channel prefix, so several deployments may share a Redis.
        presence_ttl: seconds an agent location or replica record lives without renewal.
        beat: seconds between renewals (and location refreshes).
    """

    distributed = True

    def __init__(
        self,
        redis_url: str,
        replica_id: str,
        *,
        prefix: str = "chatbridge",
        presence_ttl: float = 10.0,
        beat: float = 2.0,
    ) -> None:
        self.replica_id = replica_id
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.beat = beat
        self._pool = _StoppablePool.from_url(
            redis_url,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=5,
            # ``CLIENT LIST`` on the Redis shows which replica each connection belongs to
            client_name="".join(c if c.isalnum() or c in "-_.:" else "_" for c in replica_id),
        )
        self._redis = aioredis.Redis.from_pool(self._pool)
        self._bcast = f"{prefix}:bcast"
        self._inbox = f"{prefix}:to:{replica_id}"
        self._handlers: dict[str, list[Handler]] = {}
        self._services: dict[str, Service] = {}
        self._resync: list[Callable[[], None]] = []
        self._status: StatusProvider = dict
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_LIMIT)
        self._pending_wakes: set[str] = set()
        self._calls = PendingCalls()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._leases = LeaseBook(replica_id)
        self._links: frozenset[str] = frozenset()  # agents with a live link here
        self._links_version = 0
        self._peers = PeerLinks(replica_id)  # the other replicas' links
        self._replicas: dict[str, Payload] = {}
        self._listening = asyncio.Event()
        self._dirty = False  # a message may have been lost: resync everyone when we can
        self.connected = False
        self.started_at = time.time()
        self._renew = self._redis.register_script(RENEW)
        self._drop = self._redis.register_script(DROP)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and start beating; waits (briefly) for the subscription, so messages
        published right after ``start`` reach this replica. Redis being down is not fatal."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="cluster-listen"),
            asyncio.create_task(self._publisher(), name="cluster-publish"),
            asyncio.create_task(self._beat_loop(), name="cluster-beat"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 3)
        await self._beat_once()

    async def stop(self) -> None:
        """Give up what we hold (so others take over at once) and close the connection."""
        for agent_id in list(self._leases.held):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._drop(keys=[self._agent_key(agent_id)], args=[self.replica_id]), 1
                )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._redis.delete(self._replica_key(self.replica_id)), 1)
        if self._leases.held:
            self.publish("located", {"agents": {a: None for a in self._leases.held}})
        if self._links:
            self.set_links(())  # the others stop leaving these agents' turns to us
        # let the publisher flush briefly
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), 1)
        tasks = self._tasks + list(self._spawned)
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a forwarded request still running in our app must not hold us
            await asyncio.wait(tasks, timeout=2)
        self._tasks = []
        self.end_calls()
        self._pool.stopped = True  # what still runs (a late request) gets no new socket
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    def end_calls(self) -> None:
        """Fail every call still waiting for an answer (shutting down: requests that wait on
        another replica end now, with a 503 their callers retry elsewhere)."""
        self._calls.fail_all("this replica is shutting down")

    async def _drain(self) -> None:
        while not self._queue.empty():
            await asyncio.sleep(0.01)

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), 2))
        except Exception:
            return False

    # -- registration --------------------------------------------------------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Run ``handler(payload)`` for every broadcast of ``kind`` from another replica."""
        self._handlers.setdefault(kind, []).append(handler)

    def serve(self, method: str, service: Service) -> None:
        """Answer ``call(<this replica>, method, payload)`` with ``await service(payload)``."""
        self._services[method] = service

    def on_resync(self, handler: Callable[[], None]) -> None:
        """Called when messages may have been missed: re-read what matters from the store."""
        self._resync.append(handler)

    def on_location(self, listener: LocationListener) -> None:
        """``listener(agent_id, replica_or_None)`` whenever the holder of an agent's lease
        (http-pull) changes, as far as this replica knows."""
        self._leases.on_change(listener)

    def on_links(self, listener: LinksListener) -> None:
        """``listener(agent_id)`` whenever the set of *other* replicas linked to the agent
        changes, as far as this replica knows."""
        self._peers.on_change(listener)

    def status_provider(self, provider: StatusProvider) -> None:
        """What this replica publishes about itself every beat (``replicas()``)."""
        self._status = provider

    # -- broadcasts ----------------------------------------------------------------------------

    def publish(self, kind: str, payload: Payload) -> None:
        """Send ``payload`` to every other replica (in order, fire and forget)."""
        self._enqueue(self._bcast, kind, payload)

    def wake(self, what: str) -> None:
        """Tell the others ``what`` ("turns" / "deliveries") has new work; coalesced."""
        if what in self._pending_wakes:
            return
        self._pending_wakes.add(what)
        self._enqueue(self._bcast, "wake", {"what": what})

    def _enqueue(self, channel: str, kind: str, payload: Payload) -> None:
        data = json.dumps({"k": kind, "from": self.replica_id, "p": payload}, ensure_ascii=False)
        try:
            self._queue.put_nowait((channel, data))
        except asyncio.QueueFull:
            self._dirty = True

    async def _publisher(self) -> None:
        """Send queued messages in order, pipelined; a failure marks us dirty (resync later)."""
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            self._pending_wakes.clear()
            try:
                pipe = self._redis.pipeline(transaction=False)
                for channel, data in batch:
                    pipe.publish(channel, data)
                await pipe.execute()
                if self._dirty:
                    self._dirty = False
                    await self._redis.publish(
                        self._bcast,
                        json.dumps({"k": "_resync", "from": self.replica_id, "p": {}}),
                    )
            except Exception as exc:
                if not self._dirty:
                    log.warning("cluster: publish failed (%s); will resync", type(exc).__name__)
                self._dirty = True
                await asyncio.sleep(0.2)

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, replica: str, method: str, payload: Payload, *, timeout: float) -> Payload:
        """Ask ``replica`` to run ``method`` and return its answer.

        Raises:
            ClusterUnavailable: Redis is down, the replica is not listening, or no answer came
                within ``timeout`` seconds.
        """
        call_id, fut = self._calls.open()
        data = json.dumps(
            {
                "k": "_call",
                "from": self.replica_id,
                "id": call_id,
                "m": method,
                "p": payload,
            },
            ensure_ascii=False,
        )
        try:
            try:
                receivers = await asyncio.wait_for(
                    self._redis.publish(f"{self.prefix}:to:{replica}", data), 5
                )
            except Exception as exc:
                raise ClusterUnavailable(f"redis: {type(exc).__name__}") from exc
            if not receivers:
                raise ClusterUnavailable(f"replica {replica!r} is not listening")
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError as exc:
                raise ClusterUnavailable(f"replica {replica!r} did not answer") from exc
        finally:
            self._calls.close(call_id)

    async def _answer_call(self, msg: Payload) -> None:
        reply = await answer(self._services, msg)
        self._enqueue(f"{self.prefix}:to:{msg['from']}", "_reply", reply)

    # -- receiving -----------------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.2
        first = True
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._bcast, self._inbox)
                self.connected = True
                self._listening.set()
                backoff = 0.2
                if not first:
                    log.info("cluster: reconnected to redis; resyncing")
                    # our record (and links) first: a Redis that restarted empty has none
                    with contextlib.suppress(Exception):
                        await self._write_record()
                    await self._refresh_locations()
                    self._run_resync()
                    self._dirty = True  # others may have missed what we sent meanwhile
                    self._enqueue(self._bcast, "_resync", {})
                first = False
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self._dispatch(msg.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    log.warning("cluster: lost redis (%s); polling carries on", type(exc).__name__)
                self.connected = False
                first = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, raw: Any) -> None:
        try:
            msg = json.loads(raw)
        except (TypeError, ValueError):
            return
        kind = msg.get("k")
        sender = msg.get("from")
        if kind == "_reply":
            self._calls.answered(msg.get("p") or {})
            return
        if kind == "_call":
            self._spawn(self._answer_call(msg))
            return
        if sender == self.replica_id:
            return
        if kind == "_resync":
            self._run_resync()
            return
        if kind == "located":
            for agent_id, where in (msg.get("p") or {}).get("agents", {}).items():
                self._leases.set(agent_id, where)
            return
        if kind == "links":
            payload = msg.get("p") or {}
            self._peers.announced(str(sender), payload.get("v"), payload.get("agents"))
            return
        for handler in self._handlers.get(kind, ()):
            try:
                result = handler(msg.get("p") or {})
                if asyncio.iscoroutine(result):
                    self._spawn(result)
            except Exception:
                log.exception("cluster: handler for %s failed", kind)

    def _run_resync(self) -> None:
        for handler in self._resync:
            try:
                handler()
            except Exception:
                log.exception("cluster: resync handler failed")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # -- links ---------------------------------------------------------------------------------

    def set_links(self, agent_ids: Iterable[str]) -> None:
        """The agents this replica has a live link to now (all of them, not a change).

        Published at once when the set changed, and kept in this replica's record (renewed
        every beat) for replicas that missed the message or start later."""
        links = frozenset(agent_ids)
        if links == self._links:
            return
        self._links = links
        self._links_version += 1
        self.publish("links", {"v": self._links_stamp(), "agents": sorted(links)})

    def _links_stamp(self) -> list[float]:
        # ordered across this process's changes and across its restarts (same instance id)
        return [self.started_at, self._links_version]

    def links_of(self, agent_id: str) -> list[str]:
        """The replicas with a live link to ``agent_id`` (this one first), as known here."""
        here = [self.replica_id] if agent_id in self._links else []
        return here + self._peers.by_agent().get(agent_id, [])

    def linked_elsewhere(self, agent_id: str) -> list[str]:
        """The other replicas with a live link to ``agent_id``, as known here."""
        return list(self._peers.by_agent().get(agent_id, ()))

    def held_elsewhere(self) -> list[str]:
        """Agents whose turns this replica should leave to the others: an http-pull agent
        whose lease another replica holds, and an agent with a live link on another replica
        and none here. Everything else may be claimed here (http-webhook and openai agents
        need no link; an agent linked nowhere is claimed so its deadline can run out)."""
        leased = self._leases.elsewhere()
        linked = [a for a in self._peers.by_agent() if a not in self._links]
        return leased + linked

    # -- leases (http-pull) --------------------------------------------------------------------

    def _agent_key(self, agent_id: str) -> str:
        return f"{self.prefix}:agent:{agent_id}"

    def _replica_key(self, replica_id: str) -> str:
        return f"{self.prefix}:replica:{replica_id}"

    def location(self, agent_id: str) -> str | None:
        """Where ``agent_id`` is served, as last known here: the holder of its lease
        (http-pull), else a replica with a link to it (this one first); None: nowhere."""
        holder = self._leases.locations.get(agent_id)
        if holder is not None:
            return holder
        linked = self.links_of(agent_id)
        return linked[0] if linked else None

    def lease_holder(self, agent_id: str) -> str | None:
        """The replica holding ``agent_id``'s lease as last known here (None: nobody)."""
        return self._leases.locations.get(agent_id)

    def holds(self, agent_id: str) -> bool:
        return agent_id in self._leases.held

    def may_serve(self, agent_id: str) -> bool:
        """Whether this replica should offer ``agent_id``'s turns (http-pull): it holds the
        lease, or Redis is unreachable and no holder is known (degraded: serve rather than
        starve; the database still keeps each turn to one replica)."""
        return agent_id in self._leases.held or (
            not self.connected and agent_id not in self._leases.locations
        )

    async def release(self, agent_id: str) -> None:
        """Give up ``agent_id``'s lease (the agent was removed or no longer wants one)."""
        if agent_id not in self._leases.held:
            return
        self._leases.held.discard(agent_id)
        if self._leases.locations.get(agent_id) == self.replica_id:
            self._leases.set(agent_id, None)
        with contextlib.suppress(Exception):
            await self._drop(keys=[self._agent_key(agent_id)], args=[self.replica_id])
        self.publish("located", {"agents": {agent_id: None}})

    def want_lease(self, agent_id: str, wanted: bool = True) -> None:
        """Take ``agent_id``'s lease whenever it is free (http-pull agents)."""
        self._leases.want(agent_id, wanted)

    async def try_lease(self, agent_id: str) -> bool:
        """Take the lease now if it is free; True if this replica holds it afterwards."""
        if agent_id in self._leases.held:
            return True
        try:
            got = await self._redis.set(
                self._agent_key(agent_id),
                self.replica_id,
                px=int(self.presence_ttl * 1000),
                nx=True,
            )
            holder = self.replica_id if got else await self._redis.get(self._agent_key(agent_id))
        except Exception:
            return False
        where = holder.decode() if isinstance(holder, bytes) else holder
        if where == self.replica_id:
            self._leases.held.add(agent_id)
            self._leases.set(agent_id, self.replica_id)
            self.publish("located", {"agents": {agent_id: self.replica_id}})
            return True
        self._leases.set(agent_id, where)
        return False

    # -- the beat ------------------------------------------------------------------------------

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.beat)
            await self._beat_once()

    async def _beat_once(self) -> None:
        """Renew what we hold, take free leases we want, refresh locations and replicas."""
        try:
            ttl = int(self.presence_ttl * 1000)
            for agent_id in list(self._leases.held):
                holder = await self._renew(
                    keys=[self._agent_key(agent_id)], args=[self.replica_id, ttl]
                )
                where = holder.decode() if isinstance(holder, bytes) else holder
                if where != self.replica_id:
                    log.info("cluster: %s is now held by %s", agent_id, where)
                    self._leases.set(agent_id, where)
            await self._write_record()
            await self._refresh_locations()
            for agent_id, where in list(self._leases.locations.items()):
                if where != self.replica_id or agent_id in self._leases.held:
                    continue
                # Marked ours by an earlier life of this replica (same instance id, killed):
                # a lease we want is ours to take back; a stale presence is cleared.
                if agent_id in self._leases.wanted:
                    self._leases.held.add(agent_id)
                    self._leases.set(agent_id, self.replica_id, notify=True)
                else:
                    await self._drop(keys=[self._agent_key(agent_id)], args=[self.replica_id])
                    self._leases.set(agent_id, None)
            for agent_id in sorted(self._leases.wanted - self._leases.held):
                if agent_id in self._leases.locations:
                    self._leases.missing.discard(agent_id)
                    continue
                # Free two beats in a row: its holder (after a Redis restart) had a beat to
                # take it back, so this is not a race with a live holder.
                if agent_id in self._leases.missing:
                    await self.try_lease(agent_id)
                    self._leases.missing.discard(agent_id)
                else:
                    self._leases.missing.add(agent_id)
        except Exception as exc:
            log.debug("cluster: beat failed (%s)", type(exc).__name__)

    async def _write_record(self) -> None:
        """This replica's record: its status and its links, alive for ``presence_ttl``."""
        snapshot = {
            "id": self.replica_id,
            "started_at": self.started_at,
            "beat_at": time.time(),
            **self._status(),
            "links": sorted(self._links),
            "links_v": self._links_stamp(),
        }
        await self._redis.set(
            self._replica_key(self.replica_id),
            json.dumps(snapshot),
            px=int(self.presence_ttl * 1000),
        )

    async def _refresh_locations(self) -> None:
        keys = [k async for k in self._redis.scan_iter(match=f"{self.prefix}:agent:*", count=500)]
        values = await self._redis.mget(keys) if keys else []
        found: dict[str, str] = {}
        cut = len(self.prefix) + len(":agent:")
        for key, value in zip(keys, values, strict=True):
            if value is None:
                continue
            k = key.decode() if isinstance(key, bytes) else key
            found[k[cut:]] = value.decode() if isinstance(value, bytes) else value
        self._leases.refreshed(found)
        rkeys = [
            k async for k in self._redis.scan_iter(match=f"{self.prefix}:replica:*", count=500)
        ]
        replicas: dict[str, Payload] = {}
        for raw in await self._redis.mget(rkeys) if rkeys else []:
            if raw is None:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                snap = json.loads(raw)
                replicas[snap["id"]] = snap
        self._replicas = replicas
        self._peers.records(replicas)

    async def gather(
        self, method: str, payload: Payload, *, timeout: float = 2.0
    ) -> dict[str, Payload]:
        """``call`` every live replica (this one directly); replicas that do not answer in
        time are left out."""
        replicas = await self.fresh_replicas()
        replicas.setdefault(self.replica_id, {})
        service = self._services.get(method)

        async def one(replica: str) -> tuple[str, Payload | None]:
            try:
                if replica == self.replica_id and service is not None:
                    return replica, await service(payload)
                return replica, await self.call(replica, method, payload, timeout=timeout)
            except Exception:
                return replica, None

        answers = await asyncio.gather(*(one(r) for r in sorted(replicas)))
        return {r: a for r, a in answers if a is not None}

    def replicas(self) -> dict[str, Payload]:
        """The live replicas as of the last beat: id → its last published snapshot."""
        return dict(self._replicas)

    async def fresh_replicas(self) -> dict[str, Payload]:
        """Like ``replicas()`` but read from Redis now (falls back to the last beat's)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._refresh_locations(), 2)
        return self.replicas()
