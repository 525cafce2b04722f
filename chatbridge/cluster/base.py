"""The ``Cluster`` protocol: what one bridge replica asks of the others.

Two implementations, chosen once by ``chatbridge.cluster.make_cluster``:

- ``LocalCluster`` (``local.py``): one replica, no Redis. It knows only itself, holds every
  agent, and its broadcasts reach nobody (a replica never hears its own). Every call is cheap
  and synchronous where it can be, so code written against the protocol costs nothing extra
  on a single replica.
- ``RedisCluster`` (``redis.py``): several replicas sharing a Redis (``CHATBRIDGE_REDIS_URL``);
  the only module that imports ``redis``.

What the protocol covers, by the caller's need:

- **Lifecycle**: ``start``, ``stop``, ``end_calls`` (shutdown: fail what waits on another
  replica), ``ping``.
- **Broadcasts** to every *other* replica: ``publish`` / ``on``, ``wake``; ``on_resync`` for
  when broadcasts may have been lost.
- **Calls** to one named replica: ``call`` / ``serve``; ``gather`` asks every live replica.
- **Links** (which replicas have a live connection to an agent): ``set_links``, ``links_of``,
  ``linked_elsewhere``, ``held_elsewhere``, ``on_links``.
- **Leases** (the one replica offering an http-pull agent's turns): ``want_lease``,
  ``try_lease``, ``release``, ``holds``, ``lease_holder``, ``location``, ``on_location``.
- **Replicas**: ``replicas``, ``fresh_replicas``, ``status_provider``.

``distributed`` tells the few callers whose *output* differs with several replicas (the
health body's ``redis`` field, the per-replica rows of ``/agents/status``) which one to build,
and lets per-message code skip building a broadcast nobody will receive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

__all__ = [
    "Cluster",
    "ClusterUnavailable",
    "Handler",
    "LinksListener",
    "LocationListener",
    "Payload",
    "Service",
    "StatusProvider",
]

Payload = dict[str, Any]
"""A JSON object: what a broadcast or a call carries (it crosses Redis as JSON)."""
Handler = Callable[[Payload], Awaitable[None] | None]
Service = Callable[[Payload], Awaitable[Payload]]
LocationListener = Callable[[str, str | None], None]
LinksListener = Callable[[str], None]
StatusProvider = Callable[[], Payload]


class ClusterUnavailable(Exception):
    """Redis did not answer, or the replica called is not listening."""


class Cluster(Protocol):
    """One replica's view of the others (see the module docstring)."""

    @property
    def replica_id(self) -> str:
        """This replica's ``CHATBRIDGE_INSTANCE_ID``."""
        ...

    @property
    def distributed(self) -> bool:
        """Whether other replicas may exist (False: ``LocalCluster``)."""
        ...

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and start beating; the other replicas being unreachable is not fatal."""
        ...

    async def stop(self) -> None:
        """Give up what this replica holds and disconnect; calls after it fail."""
        ...

    def end_calls(self) -> None:
        """Fail every call still waiting for an answer with ``ClusterUnavailable``."""
        ...

    async def ping(self) -> bool:
        """Whether the shared layer answers (always True on a started local cluster)."""
        ...

    # -- registration --------------------------------------------------------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Run ``handler(payload)`` for every broadcast of ``kind`` from another replica."""
        ...

    def serve(self, method: str, service: Service) -> None:
        """Answer ``call(<this replica>, method, payload)`` with ``await service(payload)``."""
        ...

    def on_resync(self, handler: Callable[[], None]) -> None:
        """Called when broadcasts may have been missed: re-read what matters from the store."""
        ...

    def on_location(self, listener: LocationListener) -> None:
        """``listener(agent_id, replica_or_None)`` when the holder of an agent's lease changes."""
        ...

    def on_links(self, listener: LinksListener) -> None:
        """``listener(agent_id)`` when the other replicas linked to the agent change."""
        ...

    def status_provider(self, provider: StatusProvider) -> None:
        """What this replica publishes about itself (``replicas()``)."""
        ...

    # -- broadcasts ----------------------------------------------------------------------------

    def publish(self, kind: str, payload: Payload) -> None:
        """Send ``payload`` to every other replica (in order, fire and forget)."""
        ...

    def wake(self, what: str) -> None:
        """Tell the other replicas ``what`` ("turns" / "deliveries") has new work."""
        ...

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, replica: str, method: str, payload: Payload, *, timeout: float) -> Payload:
        """Ask ``replica`` to run ``method`` and return its answer.

        Raises:
            ClusterUnavailable: the replica is unknown or not listening, its service failed,
                no answer came within ``timeout`` seconds, or this cluster is stopping.
        """
        ...

    async def gather(
        self, method: str, payload: Payload, *, timeout: float = 2.0
    ) -> dict[str, Payload]:
        """``call`` every live replica (this one directly): replica id → its answer; replicas
        that do not answer in time are left out."""
        ...

    # -- links ---------------------------------------------------------------------------------

    def set_links(self, agent_ids: Iterable[str]) -> None:
        """The agents this replica has a live link to now (all of them, not a change)."""
        ...

    def links_of(self, agent_id: str) -> list[str]:
        """The replicas with a live link to ``agent_id`` (this one first)."""
        ...

    def linked_elsewhere(self, agent_id: str) -> list[str]:
        """The other replicas with a live link to ``agent_id``."""
        ...

    def held_elsewhere(self) -> list[str]:
        """Agents whose turns this replica should leave to the others."""
        ...

    # -- leases (http-pull) --------------------------------------------------------------------

    def want_lease(self, agent_id: str, wanted: bool = True) -> None:
        """Take ``agent_id``'s lease whenever it is free (or stop wanting it)."""
        ...

    async def try_lease(self, agent_id: str) -> bool:
        """Take the lease now if it is free; True if this replica holds it afterwards."""
        ...

    async def release(self, agent_id: str) -> None:
        """Give up ``agent_id``'s lease (the agent was removed or no longer wants one)."""
        ...

    def holds(self, agent_id: str) -> bool:
        """Whether this replica holds ``agent_id``'s lease (serves its pulls)."""
        ...

    def lease_holder(self, agent_id: str) -> str | None:
        """The replica holding ``agent_id``'s lease as known here (None: nobody)."""
        ...

    def location(self, agent_id: str) -> str | None:
        """Where ``agent_id`` is served: its lease holder, else a replica linked to it (this
        one first); None: nowhere known."""
        ...

    # -- replicas ------------------------------------------------------------------------------

    def replicas(self) -> dict[str, Payload]:
        """The live replicas as last known: id → its published snapshot."""
        ...

    async def fresh_replicas(self) -> dict[str, Payload]:
        """Like ``replicas()``, read now where that means a round trip."""
        ...
