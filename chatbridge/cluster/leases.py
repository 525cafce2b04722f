"""Leases of http-pull agents across replicas: the Redis scripts and ``LeaseBook``.

``<prefix>:agent:<id>`` holds the one replica that offers an http-pull agent's turns (its
offers live in that replica's memory; polls and replies reaching another replica are passed
to it, ``chatbridge.api.forward``). Keys expire unless their holder renews them, so a dead
replica's pull agents are free again after ``presence_ttl`` seconds.

``LeaseBook`` is this replica's record of who holds what, without I/O: ``RedisCluster`` tells
it what Redis answered and asks it where an agent is served.
"""

from __future__ import annotations

import logging

from chatbridge.cluster.base import LocationListener

log = logging.getLogger("chatbridge.cluster")

RENEW = """
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
"""Keep our hold: renew if ours, take it back if it vanished (a Redis restart), else say who."""

DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Delete the lease only if it is still ours."""


class LeaseBook:
    """Who holds which agent's lease, as this replica knows it.

    Args:
        me: this replica's id.

    Attributes:
        held: agents whose lease key is ours to renew.
        wanted: agents whose lease we would take when free.
        missing: wanted, and found free at the last beat.
        locations: agent id → the replica holding its lease.
    """

    def __init__(self, me: str) -> None:
        self.me = me
        self.held: set[str] = set()
        self.wanted: set[str] = set()
        self.missing: set[str] = set()
        self.locations: dict[str, str] = {}
        self._listeners: list[LocationListener] = []

    def on_change(self, listener: LocationListener) -> None:
        """``listener(agent_id, replica_or_None)`` whenever an agent's holder changes."""
        self._listeners.append(listener)

    def want(self, agent_id: str, wanted: bool) -> None:
        if wanted:
            self.wanted.add(agent_id)
        else:
            self.wanted.discard(agent_id)

    def elsewhere(self) -> list[str]:
        """Agents whose lease another replica holds."""
        return [a for a, r in self.locations.items() if r != self.me]

    def refreshed(self, found: dict[str, str]) -> None:
        """Every lease key as just read from Redis (agent id → holder)."""
        # Ours stay ours here: this read may predate our own SET (a lease just taken).
        # Losing one is learned from the renew script or a "located" message.
        for agent_id in self.held:
            found[agent_id] = self.me
        for agent_id in set(self.locations) | set(found):
            self.set(agent_id, found.get(agent_id))

    def set(self, agent_id: str, where: str | None, *, notify: bool = False) -> None:
        """``where`` holds ``agent_id``'s lease now (None: nobody); listeners hear of a change
        (or of every call with ``notify``)."""
        old = self.locations.get(agent_id)
        if where is None:
            self.locations.pop(agent_id, None)
        else:
            self.locations[agent_id] = where
        if where != self.me and agent_id in self.held:
            # Someone else holds it now (our lease lapsed while Redis was away): ours no
            # longer counts.
            self.held.discard(agent_id)
        if old != where or notify:
            for listener in self._listeners:
                try:
                    listener(agent_id, where)
                except Exception:
                    log.exception("cluster: location listener failed")
