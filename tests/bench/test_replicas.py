"""The replica plan and what a replica's ``/metrics`` says it did (pure, no processes)."""

from __future__ import annotations

from chatbridge.bench.replicas import Replica, plan_replicas, replica_counts, replica_env
from chatbridge.metrics import Metrics


def test_one_replica_is_the_plain_bridge_of_before() -> None:
    (only,) = plan_replicas([8123], "abc")
    assert only == Replica("bridge", 8123)
    env = replica_env({"CHATBRIDGE_DATABASE_URL": "sqlite://"}, only, None)
    assert env == {"CHATBRIDGE_DATABASE_URL": "sqlite://"}


def test_several_replicas_get_their_own_names_and_instance_ids_and_share_redis() -> None:
    replicas = plan_replicas([8001, 8002, 8003], "abc")
    assert [r.name for r in replicas] == ["bridge-1", "bridge-2", "bridge-3"]
    assert [r.instance_id for r in replicas] == ["bench-abc-1", "bench-abc-2", "bench-abc-3"]
    assert replicas[1].url == "http://127.0.0.1:8002"
    env = replica_env({"A": "1"}, replicas[2], "redis://127.0.0.1:6390/0")
    assert env == {
        "A": "1",
        "CHATBRIDGE_REDIS_URL": "redis://127.0.0.1:6390/0",
        "CHATBRIDGE_INSTANCE_ID": "bench-abc-3",
    }


def test_replica_counts_reads_the_bridges_own_metrics() -> None:
    metrics = Metrics()
    metrics.webhooks.labels("chatwoot", "accepted").inc(7)
    metrics.webhooks.labels("chatwoot", "duplicate").inc(1)
    metrics.turns.labels("bench-agent", "replied").inc(6)
    metrics.deliveries.labels("chatwoot", "message", "ok").inc(6)
    metrics.deliveries.labels("chatwoot", "typing", "retry").inc(2)
    metrics.agent_connected.labels("bench-agent").set(1)
    metrics.agent_connected.labels("other-agent").set(0)

    counts = replica_counts(metrics.render().decode())

    assert counts["webhooks"] == 8
    assert counts["webhooks_by_result"] == {"accepted": 7, "duplicate": 1}
    assert counts["turns"] == 6 and counts["turns_by_outcome"] == {"replied": 6}
    assert counts["deliveries"] == 8
    assert counts["deliveries_by_result"] == {"ok": 6, "retry": 2}
    assert counts["deliveries_by_kind"] == {"message": 6, "typing": 2}
    assert counts["agent_replies_dropped"] == 0
    assert counts["agent_connected"] == ["bench-agent"]
