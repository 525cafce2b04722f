"""The ``RedisCluster`` client on its own: what it leaves behind on the server."""

from __future__ import annotations

import redis.asyncio as aioredis

from chatbridge.cluster import ClusterUnavailable
from chatbridge.cluster.redis import RedisCluster
from chatbridge.testing.cluster import RedisServer
from tests.e2e.harness import wait_until


async def _connections(url: str, name: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return sum(1 for c in clients if c.get("name") == name)


async def test_a_stopped_cluster_opens_no_new_connections(redis_server: RedisServer) -> None:
    """A request still running on a stopping replica must not leave a socket open behind it."""
    cluster = RedisCluster(redis_server.url, "replica-a", presence_ttl=2.0, beat=0.4)
    await cluster.start()
    assert await cluster.try_lease("agent-1")
    assert await _connections(redis_server.url, "replica-a") >= 1

    await cluster.stop()
    assert await _connections(redis_server.url, "replica-a") == 0

    # What a late request does after the stop: it learns nothing, and opens nothing.
    assert not await cluster.try_lease("agent-2")
    assert not await cluster.ping()
    try:
        await cluster.call("replica-b", "http", {}, timeout=0.5)
    except ClusterUnavailable:
        pass
    else:
        raise AssertionError("a call after stop must fail")
    assert await _connections(redis_server.url, "replica-a") == 0


async def test_links_reach_the_other_replicas_and_leave_with_their_replica(
    redis_server: RedisServer,
) -> None:
    a = RedisCluster(redis_server.url, "replica-a", presence_ttl=2.0, beat=0.4)
    b = RedisCluster(redis_server.url, "replica-b", presence_ttl=2.0, beat=0.4)
    heard: list[str] = []
    b.on_links(heard.append)
    await a.start()
    await b.start()
    try:
        a.set_links(["agent-1"])
        await wait_until(lambda: b.links_of("agent-1") == ["replica-a"])
        assert heard == ["agent-1"]
        # b has no link of its own: agent-1's turns are a's to claim
        assert b.held_elsewhere() == ["agent-1"] and a.held_elsewhere() == []
        b.set_links(["agent-1"])
        assert b.held_elsewhere() == []  # linked here too: claim
        await wait_until(lambda: a.links_of("agent-1") == ["replica-a", "replica-b"])
        a.set_links([])
        await wait_until(lambda: b.links_of("agent-1") == ["replica-b"])
        a.set_links(["agent-1"])
        await wait_until(lambda: b.links_of("agent-1") == ["replica-b", "replica-a"])
        await a.stop()  # a stopping replica takes its links along
        await wait_until(lambda: b.links_of("agent-1") == ["replica-b"])
        assert heard == ["agent-1"] * 4
    finally:
        await a.stop()
        await b.stop()
