"""``Cluster``: what several bridge replicas tell each other through Redis.

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
  agents (ws-dial-out: every replica dials; ws-dial-in: wherever the agent's connections
  landed). Each replica publishes its own set when it changes and keeps it in its replica
  record, so a dead replica's links vanish with that record after ``presence_ttl`` seconds.
  Links do not route turns: every replica with a link claims the agent's turns from the
  database. They say which turns a replica *without* a link should leave alone
  (``held_elsewhere``), and where a turn goes when the link it was running on drops.
- **Leases** (``want_lease`` / ``location``): ``<prefix>:agent:<id>`` holds the one replica
  that offers an http-pull agent's turns (its offers live in that replica's memory; polls and
  replies reaching another replica are passed to it, ``chatbridge.api.forward``). Keys expire
  unless their holder renews them, so a dead replica's pull agents are free again after
  ``presence_ttl`` seconds.
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
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger("chatbridge.cluster")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
Service = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
LocationListener = Callable[[str, str | None], None]
LinksListener = Callable[[str], None]

# Keep our hold: renew if ours, take it back if it vanished (a Redis restart), else say who.
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return ARGV[1]
elseif not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return v
"""
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
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


class ClusterUnavailable(Exception):
    """Redis did not answer, or the replica called is not listening."""


class Cluster:
    """One replica's view of the others (see the module docstring).

    Args:
        redis_url: ``redis://…``.
        replica_id: this replica's ``CHATBRIDGE_INSTANCE_ID``; must differ between replicas.
        prefix: key and channel prefix, so several deployments may share a Redis.
        presence_ttl: seconds an agent location or replica record lives without renewal.
        beat: seconds between renewals (and location refreshes).
    """

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
        self._location_listeners: list[LocationListener] = []
        self._status: Callable[[], dict[str, Any]] = dict
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_LIMIT)
        self._pending_wakes: set[str] = set()
        self._calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._held: set[str] = set()  # agents whose location key is ours to renew
        self._wanted: set[str] = set()  # agents whose lease we would take when free
        self._missing: set[str] = set()  # wanted, and found free at the last beat
        self._locations: dict[str, str] = {}
        self._links: frozenset[str] = frozenset()  # agents with a live link here
        self._links_version = 0
        # other replicas' links: replica -> ((started_at, version), agent ids)
        self._peer_links: dict[str, tuple[tuple[float, int], frozenset[str]]] = {}
        self._linked_elsewhere: dict[str, list[str]] | None = None  # cache: agent -> replicas
        self._links_listeners: list[LinksListener] = []
        self._replicas: dict[str, dict[str, Any]] = {}
        self._listening = asyncio.Event()
        self._dirty = False  # a message may have been lost: resync everyone when we can
        self.connected = False
        self.started_at = time.time()
        self._renew = self._redis.register_script(_RENEW)
        self._drop = self._redis.register_script(_DROP)

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
        for agent_id in list(self._held):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._drop(keys=[self._agent_key(agent_id)], args=[self.replica_id]), 1
                )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._redis.delete(self._replica_key(self.replica_id)), 1)
        if self._held:
            self.publish("located", {"agents": {a: None for a in self._held}})
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
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(ClusterUnavailable("this replica is shutting down"))

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
        self._location_listeners.append(listener)

    def on_links(self, listener: LinksListener) -> None:
        """``listener(agent_id)`` whenever the set of *other* replicas linked to the agent
        changes, as far as this replica knows."""
        self._links_listeners.append(listener)

    def status_provider(self, provider: Callable[[], dict[str, Any]]) -> None:
        """What this replica publishes about itself every beat (``replicas()``)."""
        self._status = provider

    # -- broadcasts ----------------------------------------------------------------------------

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` to every other replica (in order, fire and forget)."""
        self._enqueue(self._bcast, kind, payload)

    def wake(self, what: str) -> None:
        """Tell the others ``what`` ("turns" / "deliveries") has new work; coalesced."""
        if what in self._pending_wakes:
            return
        self._pending_wakes.add(what)
        self._enqueue(self._bcast, "wake", {"what": what})

    def _enqueue(self, channel: str, kind: str, payload: dict[str, Any]) -> None:
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

    async def call(
        self, replica: str, method: str, payload: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        """Ask ``replica`` to run ``method`` and return its answer.

        Raises:
            ClusterUnavailable: Redis is down, the replica is not listening, or no answer came
                within ``timeout`` seconds.
        """
        call_id = os.urandom(8).hex()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = fut
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
            self._calls.pop(call_id, None)

    async def _answer_call(self, msg: dict[str, Any]) -> None:
        service = self._services.get(msg.get("m", ""))
        try:
            if service is None:
                raise LookupError(f"no service {msg.get('m')!r}")
            result: dict[str, Any] = {"ok": True, "p": await service(msg.get("p") or {})}
        except Exception as exc:
            log.exception("cluster: call %s failed", msg.get("m"))
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self._enqueue(
            f"{self.prefix}:to:{msg['from']}",
            "_reply",
            {"id": msg.get("id"), **result},
        )

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
            payload = msg.get("p") or {}
            fut = self._calls.get(payload.get("id", ""))
            if fut is not None and not fut.done():
                if payload.get("ok"):
                    fut.set_result(payload.get("p") or {})
                else:
                    fut.set_exception(ClusterUnavailable(payload.get("error", "call failed")))
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
                self._set_location(agent_id, where)
            return
        if kind == "links":
            payload = msg.get("p") or {}
            self._set_peer_links(str(sender), payload.get("v"), payload.get("agents"))
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
        return here + self._linked_elsewhere_map().get(agent_id, [])

    def linked_elsewhere(self, agent_id: str) -> list[str]:
        """The other replicas with a live link to ``agent_id``, as known here."""
        return list(self._linked_elsewhere_map().get(agent_id, ()))

    def _linked_elsewhere_map(self) -> dict[str, list[str]]:
        if self._linked_elsewhere is None:
            found: dict[str, list[str]] = {}
            for replica in sorted(self._peer_links):
                for agent_id in self._peer_links[replica][1]:
                    found.setdefault(agent_id, []).append(replica)
            self._linked_elsewhere = found
        return self._linked_elsewhere

    def _set_peer_links(self, replica: str, stamp: Any, agents: Any) -> None:
        """Another replica's links as it announced them (a message, or its record)."""
        if replica == self.replica_id or not isinstance(agents, list):
            return
        try:
            version = (float(stamp[0]), int(stamp[1]))
        except (TypeError, ValueError, IndexError, KeyError):
            version = (0.0, 0)
        known = self._peer_links.get(replica)
        if known is not None and known[0] > version:
            return  # an older record read after a newer message
        self._replace_peer_links(replica, (version, frozenset(map(str, agents))))

    def _replace_peer_links(
        self, replica: str, entry: tuple[tuple[float, int], frozenset[str]] | None
    ) -> None:
        before = self._peer_links.get(replica, ((0.0, 0), frozenset()))[1]
        if entry is None:
            self._peer_links.pop(replica, None)
        else:
            self._peer_links[replica] = entry
        after = entry[1] if entry is not None else frozenset()
        changed = before ^ after
        if not changed:
            return
        self._linked_elsewhere = None
        for agent_id in sorted(changed):
            for listener in self._links_listeners:
                try:
                    listener(agent_id)
                except Exception:
                    log.exception("cluster: links listener failed")

    def held_elsewhere(self) -> list[str]:
        """Agents whose turns this replica should leave to the others: an http-pull agent
        whose lease another replica holds, and an agent with a live link on another replica
        and none here. Everything else may be claimed here (http-webhook and openai agents
        need no link; an agent linked nowhere is claimed so its deadline can run out)."""
        leased = [a for a, r in self._locations.items() if r != self.replica_id]
        linked = [a for a in self._linked_elsewhere_map() if a not in self._links]
        return leased + linked

    # -- leases (http-pull) --------------------------------------------------------------------

    def _agent_key(self, agent_id: str) -> str:
        return f"{self.prefix}:agent:{agent_id}"

    def _replica_key(self, replica_id: str) -> str:
        return f"{self.prefix}:replica:{replica_id}"

    def location(self, agent_id: str) -> str | None:
        """Where ``agent_id`` is served, as last known here: the holder of its lease
        (http-pull), else a replica with a link to it (this one first); None: nowhere."""
        holder = self._locations.get(agent_id)
        if holder is not None:
            return holder
        linked = self.links_of(agent_id)
        return linked[0] if linked else None

    def lease_holder(self, agent_id: str) -> str | None:
        """The replica holding ``agent_id``'s lease as last known here (None: nobody)."""
        return self._locations.get(agent_id)

    def holds(self, agent_id: str) -> bool:
        return agent_id in self._held

    def may_serve(self, agent_id: str) -> bool:
        """Whether this replica should offer ``agent_id``'s turns (http-pull): it holds the
        lease, or Redis is unreachable and no holder is known (degraded: serve rather than
        starve; the database still keeps each turn to one replica)."""
        return agent_id in self._held or (not self.connected and agent_id not in self._locations)

    def _set_location(self, agent_id: str, where: str | None, *, notify: bool = False) -> None:
        old = self._locations.get(agent_id)
        if where is None:
            self._locations.pop(agent_id, None)
        else:
            self._locations[agent_id] = where
        if where != self.replica_id and agent_id in self._held:
            # Someone else holds it now (our lease lapsed while Redis was away): ours no
            # longer counts.
            self._held.discard(agent_id)
        if old != where or notify:
            for listener in self._location_listeners:
                try:
                    listener(agent_id, where)
                except Exception:
                    log.exception("cluster: location listener failed")

    async def release(self, agent_id: str) -> None:
        """Give up ``agent_id``'s lease (the agent was removed or no longer wants one)."""
        if agent_id not in self._held:
            return
        self._held.discard(agent_id)
        if self._locations.get(agent_id) == self.replica_id:
            self._set_location(agent_id, None)
        with contextlib.suppress(Exception):
            await self._drop(keys=[self._agent_key(agent_id)], args=[self.replica_id])
        self.publish("located", {"agents": {agent_id: None}})

    def want_lease(self, agent_id: str, wanted: bool = True) -> None:
        """Take ``agent_id``'s lease whenever it is free (http-pull agents)."""
        if wanted:
            self._wanted.add(agent_id)
        else:
            self._wanted.discard(agent_id)

    async def try_lease(self, agent_id: str) -> bool:
        """Take the lease now if it is free; True if this replica holds it afterwards."""
        if agent_id in self._held:
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
            self._held.add(agent_id)
            self._set_location(agent_id, self.replica_id)
            self.publish("located", {"agents": {agent_id: self.replica_id}})
            return True
        self._set_location(agent_id, where)
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
            for agent_id in list(self._held):
                holder = await self._renew(
                    keys=[self._agent_key(agent_id)], args=[self.replica_id, ttl]
                )
                where = holder.decode() if isinstance(holder, bytes) else holder
                if where != self.replica_id:
                    log.info("cluster: %s is now held by %s", agent_id, where)
                    self._set_location(agent_id, where)
            await self._write_record()
            await self._refresh_locations()
            for agent_id, where in list(self._locations.items()):
                if where != self.replica_id or agent_id in self._held:
                    continue
                # Marked ours by an earlier life of this replica (same instance id, killed):
                # a lease we want is ours to take back; a stale presence is cleared.
                if agent_id in self._wanted:
                    self._held.add(agent_id)
                    self._set_location(agent_id, self.replica_id, notify=True)
                else:
                    await self._drop(keys=[self._agent_key(agent_id)], args=[self.replica_id])
                    self._set_location(agent_id, None)
            for agent_id in sorted(self._wanted - self._held):
                if agent_id in self._locations:
                    self._missing.discard(agent_id)
                    continue
                # Free two beats in a row: its holder (after a Redis restart) had a beat to
                # take it back, so this is not a race with a live holder.
                if agent_id in self._missing:
                    await self.try_lease(agent_id)
                    self._missing.discard(agent_id)
                else:
                    self._missing.add(agent_id)
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
        # Ours stay ours here: this read may predate our own SET (a lease just taken).
        # Losing one is learned from the renew script or a "located" message.
        for agent_id in self._held:
            found[agent_id] = self.replica_id
        for agent_id in set(self._locations) | set(found):
            self._set_location(agent_id, found.get(agent_id))
        rkeys = [
            k async for k in self._redis.scan_iter(match=f"{self.prefix}:replica:*", count=500)
        ]
        replicas: dict[str, dict[str, Any]] = {}
        for raw in await self._redis.mget(rkeys) if rkeys else []:
            if raw is None:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                snap = json.loads(raw)
                replicas[snap["id"]] = snap
        self._replicas = replicas
        for replica, snap in replicas.items():
            self._set_peer_links(replica, snap.get("links_v"), snap.get("links"))
        for replica in [r for r in self._peer_links if r not in replicas]:
            # its record ran out (it died) or was deleted (it stopped): no links left
            self._replace_peer_links(replica, None)

    async def gather(
        self, method: str, payload: dict[str, Any], *, timeout: float = 2.0
    ) -> dict[str, dict[str, Any]]:
        """``call`` every live replica (this one directly); replicas that do not answer in
        time are left out."""
        replicas = await self.fresh_replicas()
        replicas.setdefault(self.replica_id, {})
        service = self._services.get(method)

        async def one(replica: str) -> tuple[str, dict[str, Any] | None]:
            try:
                if replica == self.replica_id and service is not None:
                    return replica, await service(payload)
                return replica, await self.call(replica, method, payload, timeout=timeout)
            except Exception:
                return replica, None

        answers = await asyncio.gather(*(one(r) for r in sorted(replicas)))
        return {r: a for r, a in answers if a is not None}

    def replicas(self) -> dict[str, dict[str, Any]]:
        """The live replicas as of the last beat: id → its last published snapshot."""
        return dict(self._replicas)

    async def fresh_replicas(self) -> dict[str, dict[str, Any]]:
        """Like ``replicas()`` but read from Redis now (falls back to the last beat's)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._refresh_locations(), 2)
        return self.replicas()
