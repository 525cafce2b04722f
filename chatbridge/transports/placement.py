"""Which replica runs an agent's turn when there are several (``chatbridge.cluster``).

The database is the queue for every replica. A replica claims an agent's turns when it can
run them itself: it has a live link to the agent (ws-dial-out: every replica dials it;
ws-dial-in: the agent's connections landed here), or the agent needs none (http-webhook,
openai). An http-pull agent's turns are still offered by the one replica holding its lease.

- ``elsewhere()`` decides, without I/O, whether a turn belongs on another replica.
- ``Placement`` is the hub's side of the cluster: it announces this replica's links, answers
  ``where()`` for a turn about to run, and ends a turn still waiting here the moment it
  belongs elsewhere (its link here dropped while another replica has one), so the pipeline
  hands it back to the database (``AgentElsewhere``) for a replica with a link to claim.
- A dial-in agent may name each of its connections (``hello`` ``metadata.link_id``). The same
  link id arriving on another replica means the agent re-opened that connection there; the
  old one is closed wherever it still looks open (``link_taken``), so its turns move at once
  instead of after a heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from chatbridge.cluster import Cluster, ClusterUnavailable
from chatbridge.errors import AgentElsewhere
from chatbridge.models import JsonObject
from chatbridge.transports.registry import Placement as Where

log = logging.getLogger("chatbridge.transports")

EVENT_TIMEOUT = 5.0
"""Seconds another replica gets to pass an event to the agent over its link."""

T = TypeVar("T")


def elsewhere(
    placement: Where | None,
    *,
    me: str,
    linked_here: bool,
    lease_holder: str | None,
    linked_elsewhere: Sequence[str],
) -> str | None:
    """The replica a turn of this agent should run on instead of this one; None: here.

    Args:
        placement: where the agent's transport here may run its turns (``TransportSpec``:
            ``leased`` on the lease holder, ``linked`` where it has a link, ``anywhere``);
            None: not configured here (a dial-in agent that never connected here).
        me: this replica's id.
        linked_here: this replica has a live link to the agent.
        lease_holder: the replica holding the agent's lease (http-pull), if any.
        linked_elsewhere: other replicas with a live link to it, as known here.
    """
    if placement == "leased":
        return lease_holder if lease_holder not in (None, me) else None
    if placement == "anywhere":
        return None  # http-webhook, openai: any replica runs them
    if linked_here or not linked_elsewhere:
        # Linked nowhere: the turn waits here for a link (here or elsewhere) or its deadline.
        return None
    return linked_elsewhere[0]


class Placement:
    """The hub's view of the other replicas (see the module docstring).

    Args:
        cluster: this replica's ``Cluster``.
        placement_of: where the agent's transport here runs its turns (None: unknown here).
        linked_here: whether this replica has a live link to the agent.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        placement_of: Callable[[str], Where | None],
        linked_here: Callable[[str], bool],
    ) -> None:
        self.cluster = cluster
        self._placement_of = placement_of
        self._linked_here = linked_here
        self._moved: dict[str, list[asyncio.Future[str]]] = {}
        cluster.on_links(self.check)
        cluster.on_location(lambda agent_id, _where: self.check(agent_id))

    @property
    def replica_id(self) -> str:
        return self.cluster.replica_id

    def where(self, agent_id: str) -> str | None:
        """The replica a turn of ``agent_id`` should run on instead of this one; None: here."""
        return elsewhere(
            self._placement_of(agent_id),
            me=self.cluster.replica_id,
            linked_here=self._linked_here(agent_id),
            lease_holder=self.cluster.lease_holder(agent_id),
            linked_elsewhere=self.cluster.linked_elsewhere(agent_id),
        )

    async def run(self, agent_id: str, turn: Coroutine[Any, Any, T]) -> T:
        """Run ``turn`` here unless, or until, the agent's turns belong on another replica.

        Raises:
            AgentElsewhere: at once, or while ``turn`` still waits (it is cancelled then).
        """
        where = self.where(agent_id)
        if where is not None:
            turn.close()
            raise AgentElsewhere(where)
        moved: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._moved.setdefault(agent_id, []).append(moved)
        running = asyncio.ensure_future(turn)
        try:
            both: set[asyncio.Future[Any]] = {running, moved}
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting = self._moved.get(agent_id)
            if waiting is not None and moved in waiting:
                waiting.remove(moved)
                if not waiting:
                    del self._moved[agent_id]
            if not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        if running.cancelled() and moved.done():
            raise AgentElsewhere(moved.result())
        return running.result()

    def check(self, agent_id: str) -> None:
        """Something about ``agent_id`` changed (a link here or elsewhere, a lease): turns of
        it still running here end with ``AgentElsewhere`` if they now belong elsewhere."""
        if agent_id not in self._moved:
            return
        where = self.where(agent_id)
        if where is None:
            return
        for fut in self._moved.pop(agent_id, []):
            if not fut.done():
                fut.set_result(where)

    # -- links ---------------------------------------------------------------------------------

    def announce(self, linked: Iterable[str]) -> None:
        """The agents with a live link on this replica now (``Cluster.set_links``)."""
        self.cluster.set_links(linked)

    def link_taken(self, agent_id: str, link_id: str) -> None:
        """Tell the others the agent's connection ``link_id`` is here now."""
        self.cluster.publish("link_taken", {"agent_id": agent_id, "link_id": link_id})

    def on_link_taken(self, close: Callable[[str, str], None]) -> None:
        """``close(agent_id, link_id)`` when another replica got that connection."""

        def handler(payload: JsonObject) -> None:
            agent_id, link_id = payload.get("agent_id"), payload.get("link_id")
            if isinstance(agent_id, str) and isinstance(link_id, str):
                close(agent_id, link_id)

        self.cluster.on("link_taken", handler)

    # -- events over another replica's link ----------------------------------------------------

    def serve_events(self, send_here: Callable[[str, JsonObject], Awaitable[bool]]) -> None:
        """Let other replicas send an event to an agent over this replica's link."""

        async def service(payload: JsonObject) -> JsonObject:
            return {"sent": await send_here(str(payload.get("agent_id")), payload["frame"])}

        self.cluster.serve("agent_event", service)

    async def send_event_elsewhere(self, agent_id: str, frame: JsonObject) -> bool:
        """Send ``frame`` over another replica's link to the agent; False if none could."""
        for replica in self.cluster.linked_elsewhere(agent_id):
            try:
                answer = await self.cluster.call(
                    replica,
                    "agent_event",
                    {"agent_id": agent_id, "frame": frame},
                    timeout=EVENT_TIMEOUT,
                )
            except ClusterUnavailable as exc:
                log.info("event for %s not passed to %s: %s", agent_id, replica, exc)
                continue
            if answer.get("sent"):
                return True
        return False
