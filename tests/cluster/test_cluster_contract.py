"""The ``Cluster`` contract: what every implementation does for a replica on its own.

One suite over ``LocalCluster`` and ``RedisCluster`` (the real Redis at 127.0.0.1:6379, under
a key prefix of its own per test): what callers may count on whichever ``make_cluster`` chose,
so code written against the protocol behaves the same on one replica with or without Redis.
What only several replicas show (broadcasts heard elsewhere, leases and links moving) is in
``test_cluster_client.py`` and ``test_replicas.py``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from chatbridge.cluster import Cluster, ClusterUnavailable, LocalCluster, make_cluster
from chatbridge.cluster.base import Payload
from chatbridge.cluster.redis import RedisCluster
from chatbridge.config import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
ME = "replica-a"

NewCluster = Callable[[], Cluster]


async def _redis_answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@pytest.fixture(params=["local", "redis"])
async def new_cluster(request: pytest.FixtureRequest) -> AsyncIterator[NewCluster]:
    """Builds this test's (not yet started) cluster of the parametrised kind; stops it after."""
    kind: str = request.param
    if kind == "redis" and not await _redis_answers(REDIS_URL):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI but {REDIS_URL} does not answer")
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"contract-{uuid.uuid4().hex[:12]}"  # tests running at once do not meet
    built: list[Cluster] = []

    def new() -> Cluster:
        cluster: Cluster
        if kind == "local":
            cluster = LocalCluster(ME)
        else:
            cluster = RedisCluster(REDIS_URL, ME, prefix=prefix, presence_ttl=2.0, beat=0.4)
        built.append(cluster)
        return cluster

    yield new
    for cluster in built:
        await cluster.stop()


@pytest.fixture
async def cluster(new_cluster: NewCluster) -> Cluster:
    started = new_cluster()
    await started.start()
    return started


async def echo(payload: Payload) -> Payload:
    return {"echo": payload}


def test_make_cluster_uses_redis_only_when_configured() -> None:
    local = make_cluster(Settings(instance_id="solo", redis_url=None))
    assert isinstance(local, LocalCluster)
    assert (local.replica_id, local.distributed) == ("solo", False)
    settings = Settings(
        instance_id="r1", redis_url=REDIS_URL, redis_prefix="p", cluster_presence_seconds=5
    )
    shared = make_cluster(settings)
    assert isinstance(shared, RedisCluster)
    assert (shared.replica_id, shared.distributed, shared.prefix) == ("r1", True, "p")
    assert (shared.presence_ttl, shared.beat) == (5.0, 1.0)


async def test_a_started_replica_knows_itself(new_cluster: NewCluster) -> None:
    cluster = new_cluster()
    cluster.status_provider(lambda: {"agents": [{"agent_id": "a1"}]})
    await cluster.start()
    assert cluster.replica_id == ME
    assert await cluster.ping()
    for replicas in (cluster.replicas(), await cluster.fresh_replicas()):
        assert list(replicas) == [ME]
        assert replicas[ME]["id"] == ME
        assert replicas[ME]["agents"] == [{"agent_id": "a1"}]


async def test_a_call_to_this_replica_runs_its_service(cluster: Cluster) -> None:
    cluster.serve("echo", echo)
    assert await cluster.call(ME, "echo", {"n": 1}, timeout=5) == {"echo": {"n": 1}}
    assert await cluster.gather("echo", {"n": 2}) == {ME: {"echo": {"n": 2}}}


async def test_a_missing_or_failing_service_is_unavailable(cluster: Cluster) -> None:
    async def broken(payload: Payload) -> Payload:
        raise ValueError("no such agent")

    cluster.serve("broken", broken)
    with pytest.raises(ClusterUnavailable, match="no service 'nope'"):
        await cluster.call(ME, "nope", {}, timeout=5)
    with pytest.raises(ClusterUnavailable, match="ValueError: no such agent"):
        await cluster.call(ME, "broken", {}, timeout=5)
    assert await cluster.gather("broken", {}) == {}  # left out, not raised


async def test_a_call_to_an_unknown_replica_fails(cluster: Cluster) -> None:
    cluster.serve("echo", echo)
    with pytest.raises(ClusterUnavailable, match="not listening"):
        await cluster.call("replica-nobody", "echo", {}, timeout=5)


async def test_a_call_without_an_answer_in_time_fails(cluster: Cluster) -> None:
    release = asyncio.Event()

    async def stuck(payload: Payload) -> Payload:
        await release.wait()
        return {}

    cluster.serve("stuck", stuck)
    try:
        with pytest.raises(ClusterUnavailable, match="did not answer"):
            await cluster.call(ME, "stuck", {}, timeout=0.3)
    finally:
        release.set()


async def test_shutting_down_ends_the_calls_still_waiting(cluster: Cluster) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(payload: Payload) -> Payload:
        entered.set()
        await release.wait()
        return {}

    cluster.serve("held", held)
    waiting = asyncio.ensure_future(cluster.call(ME, "held", {}, timeout=30))
    await entered.wait()
    cluster.end_calls()
    with pytest.raises(ClusterUnavailable, match="shutting down"):
        await waiting
    release.set()


async def test_a_replica_never_hears_its_own_broadcasts(cluster: Cluster) -> None:
    heard: list[Payload] = []
    cluster.on("news", heard.append)
    cluster.on("wake", heard.append)
    cluster.serve("echo", echo)
    cluster.publish("news", {"n": 1})
    cluster.wake("turns")
    # A call's answer is sent after what was published before it, and arrives after it on
    # the same connection: once it is back, our own broadcasts have come and gone.
    assert await cluster.call(ME, "echo", {}, timeout=5) == {"echo": {}}
    assert heard == []


async def test_a_lease_taken_is_held_here(cluster: Cluster) -> None:
    cluster.want_lease("pull-1")
    assert await cluster.try_lease("pull-1")
    assert cluster.holds("pull-1")
    assert cluster.lease_holder("pull-1") == ME
    assert cluster.location("pull-1") == ME
    assert cluster.held_elsewhere() == []
    await cluster.release("pull-1")
    assert cluster.held_elsewhere() == []  # nobody else took it
    assert await cluster.try_lease("pull-1")  # and it can be taken again
    assert cluster.holds("pull-1")


async def test_links_here_are_not_elsewhere(cluster: Cluster) -> None:
    cluster.set_links(["ws-1", "ws-2"])
    assert cluster.links_of("ws-1") == [ME]
    assert cluster.linked_elsewhere("ws-1") == []
    assert cluster.held_elsewhere() == []
    cluster.set_links(["ws-2"])
    assert cluster.links_of("ws-1") == []
    assert cluster.links_of("ws-2") == [ME]
    assert cluster.location("ws-2") == ME


async def test_a_stopped_replica_answers_nothing(cluster: Cluster) -> None:
    cluster.serve("echo", echo)
    await cluster.stop()
    assert not await cluster.ping()
    assert not await cluster.try_lease("pull-2")
    with pytest.raises(ClusterUnavailable):
        await cluster.call(ME, "echo", {}, timeout=1)
