"""``LocalCluster``: the ``Cluster`` of a bridge that runs as one replica (no Redis).

It knows only itself and holds every agent: ``holds`` is always true, ``held_elsewhere`` and
``linked_elsewhere`` are always empty, and broadcasts reach nobody (a replica never hears its
own, so that is what a lone ``RedisCluster`` does too). A ``call`` to this replica runs its
own service, as one through Redis would; a call to any other replica fails at once.

So code written against ``Cluster`` does on one replica exactly what it did when it checked
for "no cluster" — each such branch becomes the call below that has the same effect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

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

__all__ = ["LocalCluster"]


class LocalCluster:
    """The single-replica ``Cluster`` (see the module docstring).

    Args:
        replica_id: this replica's ``CHATBRIDGE_INSTANCE_ID``.
    """

    distributed = False

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id
        self.started_at = time.time()
        self._services: dict[str, Service] = {}
        self._status: StatusProvider = dict
        self._links: frozenset[str] = frozenset()
        self._calls = PendingCalls()
        self._running: set[asyncio.Task[Any]] = set()
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to connect to."""
        self._stopped = False

    async def stop(self) -> None:
        """End waiting calls and the services they run; later calls fail."""
        self._stopped = True
        self.end_calls()
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running, timeout=2)

    def end_calls(self) -> None:
        self._calls.fail_all("this replica is shutting down")

    async def ping(self) -> bool:
        return not self._stopped

    # -- registration: nothing else can send, so only services are kept -------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """No other replica broadcasts: ``handler`` is never called."""

    def serve(self, method: str, service: Service) -> None:
        self._services[method] = service

    def on_resync(self, handler: Callable[[], None]) -> None:
        """Nothing is ever missed: ``handler`` is never called."""

    def on_location(self, listener: LocationListener) -> None:
        """Every agent is always here: ``listener`` is never called."""

    def on_links(self, listener: LinksListener) -> None:
        """No other replica links: ``listener`` is never called."""

    def status_provider(self, provider: StatusProvider) -> None:
        self._status = provider

    # -- broadcasts ----------------------------------------------------------------------------

    def publish(self, kind: str, payload: Payload) -> None:
        """Nobody else to tell."""

    def wake(self, what: str) -> None:
        """Nobody else to wake."""

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, replica: str, method: str, payload: Payload, *, timeout: float) -> Payload:
        """Run this replica's ``method``; any other replica is unknown.

        Raises:
            ClusterUnavailable: ``replica`` is not this one, no such service, it failed,
                it did not answer within ``timeout``, or this cluster is stopping.
        """
        if self._stopped:
            raise ClusterUnavailable("the cluster is stopped")
        if replica != self.replica_id:
            raise ClusterUnavailable(f"replica {replica!r} is not listening")
        call_id, fut = self._calls.open()
        msg: Payload = {"id": call_id, "m": method, "p": payload}
        task = asyncio.ensure_future(self._answer(msg))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise ClusterUnavailable(f"replica {replica!r} did not answer") from exc
        finally:
            self._calls.close(call_id)

    async def _answer(self, msg: Payload) -> None:
        # The service runs on its own, as on a replica answering over Redis: the caller
        # giving up (timeout, shutdown) does not cancel it.
        self._calls.answered(await answer(self._services, msg))

    async def gather(
        self, method: str, payload: Payload, *, timeout: float = 2.0
    ) -> dict[str, Payload]:
        service = self._services.get(method)
        if service is None:
            return {}
        try:
            return {self.replica_id: await service(payload)}
        except Exception:
            return {}

    # -- links ---------------------------------------------------------------------------------

    def set_links(self, agent_ids: Iterable[str]) -> None:
        self._links = frozenset(agent_ids)

    def links_of(self, agent_id: str) -> list[str]:
        return [self.replica_id] if agent_id in self._links else []

    def linked_elsewhere(self, agent_id: str) -> list[str]:
        return []

    def held_elsewhere(self) -> list[str]:
        return []

    # -- leases: every agent is held here ------------------------------------------------------

    def want_lease(self, agent_id: str, wanted: bool = True) -> None:
        """Every lease is this replica's already."""

    async def try_lease(self, agent_id: str) -> bool:
        return not self._stopped

    async def release(self, agent_id: str) -> None:
        """Nobody else would take it."""

    def holds(self, agent_id: str) -> bool:
        return True

    def lease_holder(self, agent_id: str) -> str | None:
        return self.replica_id

    def location(self, agent_id: str) -> str | None:
        return self.replica_id

    # -- replicas ------------------------------------------------------------------------------

    def replicas(self) -> dict[str, Payload]:
        """Only this one, with the snapshot a ``RedisCluster`` would publish for it."""
        snapshot: Payload = {
            "id": self.replica_id,
            "started_at": self.started_at,
            "beat_at": time.time(),
            **self._status(),
            "links": sorted(self._links),
        }
        return {self.replica_id: snapshot}

    async def fresh_replicas(self) -> dict[str, Payload]:
        return self.replicas()
