"""``PeerLinks``: which *other* replicas have a live link to which agents, as known here.

A link is a live connection to an agent (ws-dial-out: every replica dials; ws-dial-in:
wherever the agent's connections landed). Each replica publishes its own set when it changes
and keeps it in its replica record, so a dead replica's links vanish with that record after
``presence_ttl`` seconds. Links do not route turns: every replica with a link claims the
agent's turns from the database. They say which turns a replica *without* a link should leave
alone (``held_elsewhere``), and where a turn goes when the link it was running on drops.

Decisions without I/O: ``RedisCluster`` feeds it what it reads (a ``links`` message, a
replica's record, a record gone) and asks it who is linked where. Each replica stamps its
announcements ``(started_at, version)``; an older stamp never overwrites a newer one, so a
record read from Redis after a newer message changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chatbridge.cluster.base import LinksListener, Payload

log = logging.getLogger("chatbridge.cluster")

Stamp = tuple[float, int]


def parse_stamp(raw: Any) -> Stamp:
    """A ``[started_at, version]`` stamp as sent; anything else is the oldest stamp."""
    try:
        return (float(raw[0]), int(raw[1]))
    except (TypeError, ValueError, IndexError, KeyError):
        return (0.0, 0)


class PeerLinks:
    """The other replicas' links (see the module docstring).

    Args:
        me: this replica's id (its own announcements are ignored here).
    """

    def __init__(self, me: str) -> None:
        self.me = me
        self._by_replica: dict[str, tuple[Stamp, frozenset[str]]] = {}
        self._by_agent: dict[str, list[str]] | None = None  # cache: agent -> replicas
        self._listeners: list[LinksListener] = []

    def on_change(self, listener: LinksListener) -> None:
        """``listener(agent_id)`` whenever the replicas linked to the agent change."""
        self._listeners.append(listener)

    def by_agent(self) -> dict[str, list[str]]:
        """agent id → the other replicas linked to it, in replica-id order."""
        if self._by_agent is None:
            found: dict[str, list[str]] = {}
            for replica in sorted(self._by_replica):
                for agent_id in self._by_replica[replica][1]:
                    found.setdefault(agent_id, []).append(replica)
            self._by_agent = found
        return self._by_agent

    def announced(self, replica: str, stamp: Any, agents: Any) -> None:
        """Another replica's links as it announced them (a message, or its record)."""
        if replica == self.me or not isinstance(agents, list):
            return
        version = parse_stamp(stamp)
        known = self._by_replica.get(replica)
        if known is not None and known[0] > version:
            return  # an older record read after a newer message
        self._replace(replica, (version, frozenset(map(str, agents))))

    def records(self, records: Mapping[str, Payload]) -> None:
        """The live replicas' records, as read now: their links; a replica without one has
        none left."""
        for replica, snap in records.items():
            self.announced(replica, snap.get("links_v"), snap.get("links"))
        for replica in list(self._by_replica):
            if replica not in records:
                self.gone(replica)

    def gone(self, replica: str) -> None:
        """``replica``'s record ran out (it died) or was deleted (it stopped): no links left."""
        self._replace(replica, None)

    def _replace(self, replica: str, entry: tuple[Stamp, frozenset[str]] | None) -> None:
        before = self._by_replica.get(replica, ((0.0, 0), frozenset()))[1]
        if entry is None:
            self._by_replica.pop(replica, None)
        else:
            self._by_replica[replica] = entry
        after = entry[1] if entry is not None else frozenset()
        changed = before ^ after
        if not changed:
            return
        self._by_agent = None
        for agent_id in sorted(changed):
            for listener in self._listeners:
                try:
                    listener(agent_id)
                except Exception:
                    log.exception("cluster: links listener failed")
