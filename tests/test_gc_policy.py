"""The garbage-collector policy (``chatbridge.gc_policy``): when it compacts, and what it does
to this process's real collector: it freezes once warm, freezes what survives a full
collection, and its compaction frees the cyclic garbage that freezing kept."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from chatbridge.cli import gc_policy
from chatbridge.config import Settings
from chatbridge.gc_policy import (
    CompactionRule,
    CompactionSchedule,
    GcMetrics,
    GcPolicy,
    resident_bytes,
)

RULE = CompactionRule(
    interval=3600, growth=2.0, min_interval=600, quiet_collections=2, max_defer=300
)
MB = 2**20


# ---------------------------------------------------------------------- the schedule


def test_a_compaction_is_due_every_interval() -> None:
    schedule = CompactionSchedule(RULE, now=0, memory=100 * MB)
    assert not schedule.due(now=3599, memory=100 * MB, collections=0)
    assert schedule.due(now=3600, memory=100 * MB, collections=0)


def test_memory_growth_brings_it_forward_but_not_before_the_minimum_interval() -> None:
    schedule = CompactionSchedule(RULE, now=0, memory=100 * MB)
    assert not schedule.due(now=599, memory=500 * MB, collections=0)  # too soon
    assert not schedule.due(now=600, memory=199 * MB, collections=0)  # not grown enough
    assert schedule.due(now=600, memory=200 * MB, collections=0)


def test_a_due_compaction_waits_for_a_quiet_tick_then_runs_anyway() -> None:
    schedule = CompactionSchedule(RULE, now=0, memory=100 * MB)
    assert not schedule.due(now=3600, memory=100 * MB, collections=50)  # busy: wait
    assert not schedule.due(now=3899, memory=100 * MB, collections=3)
    assert schedule.due(now=3899.5, memory=100 * MB, collections=2)  # quiet enough
    assert schedule.due(now=3900, memory=100 * MB, collections=50)  # waited max_defer: anyway


def test_the_wait_for_a_quiet_tick_starts_again_when_no_longer_due() -> None:
    schedule = CompactionSchedule(RULE, now=0, memory=100 * MB)
    assert not schedule.due(now=600, memory=200 * MB, collections=50)
    assert not schedule.due(now=700, memory=150 * MB, collections=50)  # memory went back
    assert not schedule.due(now=950, memory=200 * MB, collections=50)  # due again since 950
    assert schedule.due(now=1250, memory=200 * MB, collections=50)


def test_a_compaction_starts_the_interval_again_from_the_memory_it_left() -> None:
    schedule = CompactionSchedule(RULE, now=0, memory=100 * MB)
    assert schedule.due(now=600, memory=400 * MB, collections=0)
    schedule.compacted(now=600, memory=300 * MB)
    assert not schedule.due(now=1199, memory=600 * MB, collections=0)  # too soon
    assert not schedule.due(now=1200, memory=599 * MB, collections=0)  # under 2 x 300 MB
    assert schedule.due(now=1200, memory=600 * MB, collections=0)
    schedule.compacted(now=1200, memory=300 * MB)
    assert not schedule.due(now=4799, memory=300 * MB, collections=0)
    assert schedule.due(now=4800, memory=300 * MB, collections=0)


# ------------------------------------------------------------- the real collector


class Node:
    """A weak-referenceable object for building reference cycles."""

    other: Node | None = None


def cycles(n: int) -> tuple[list[Node], list[weakref.ref[Node]]]:
    """``n`` pairs of objects referring to each other, and weak references to all of them."""
    nodes: list[Node] = []
    for _ in range(n):
        a, b = Node(), Node()
        a.other, b.other = b, a
        nodes += (a, b)
    return nodes, [weakref.ref(x) for x in nodes]


def frozen(obj: object) -> bool:
    """Whether ``obj`` is in the permanent generation: tracked, yet in none of the three."""
    return gc.is_tracked(obj) and all(
        not any(o is obj for o in gc.get_objects(generation)) for generation in range(3)
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def policy(clock: FakeClock) -> AsyncIterator[GcPolicy]:
    # every 60 s of the fake clock, busy or not; the resident memory is of no account
    rule = CompactionRule(interval=60, growth=1e9, quiet_collections=10**9, max_defer=0)
    the_policy = GcPolicy(rule, clock=clock, memory=lambda: 100 * MB)
    try:
        yield the_policy
    finally:
        await the_policy.stop()
    assert gc.get_freeze_count() == 0  # stopped: the process is CPython's default again


async def test_it_freezes_what_start_up_left_alive(policy: GcPolicy) -> None:
    warm = [object() for _ in range(10)]
    assert not frozen(warm)
    policy.start(run=False)
    assert frozen(warm)
    assert gc.get_freeze_count() > 0


async def test_a_sweep_frees_young_cycles_and_freezes_what_is_alive(policy: GcPolicy) -> None:
    policy.start(run=False)
    gc.disable()  # no automatic collection in between (one could age the cycles past a sweep)
    try:
        alive = [object() for _ in range(10)]  # made after the start: not frozen yet
        nodes, refs = cycles(100)
        del nodes  # garbage before the sweep: it must be freed, not frozen
        assert not frozen(alive)
    finally:
        gc.enable()
    policy.sweep()
    assert frozen(alive)
    assert all(r() is None for r in refs)
    assert policy.stats.pauses["sweep"].count == 1


async def test_frozen_cyclic_garbage_is_freed_by_the_next_compaction(
    policy: GcPolicy, clock: FakeClock
) -> None:
    policy.start(run=False)
    nodes, refs = cycles(1000)
    policy.sweep()
    assert frozen(nodes[0])
    del nodes  # cyclic garbage now, and frozen: no collection reaches it
    gc.collect()
    policy.sweep()
    assert all(r() is not None for r in refs)

    clock.now = 59
    assert not policy.tick()  # not before the interval
    assert all(r() is not None for r in refs)
    clock.now = 60
    assert policy.tick()
    assert all(r() is None for r in refs)
    assert policy.stats.pauses["compaction"].count == 1
    assert policy.stats.compacted_garbage >= 2000


async def test_frozen_garbage_does_not_accumulate_over_many_rounds(
    policy: GcPolicy, clock: FakeClock
) -> None:
    """Round after round, sockets' worth of cycles are made, frozen and dropped: each
    compaction gives them back, so the frozen population stays where it started."""
    policy.start(run=False)
    start = gc.get_freeze_count()
    for _ in range(5):
        nodes, refs = cycles(5000)
        policy.sweep()
        assert gc.get_freeze_count() >= start + 10_000  # frozen with the rest
        del nodes
        clock.now += 60
        assert policy.tick()
        assert all(r() is None for r in refs)
        del refs
        # what is left frozen is what was frozen before the round (plus a little the test
        # itself keeps), not the 10,000 dropped objects
        assert gc.get_freeze_count() < start + 5000
    assert policy.stats.pauses["compaction"].count == 5


async def test_cpythons_own_collections_are_counted_and_timed(policy: GcPolicy) -> None:
    policy.start(run=False)
    gc.collect(0)
    gc.collect()
    pauses = policy.stats.pauses
    assert pauses["young"].count == 1 and pauses["full"].count == 1
    assert pauses["full"].seconds >= pauses["full"].longest > 0


async def test_stop_unfreezes_and_stops_following_the_collector(policy: GcPolicy) -> None:
    policy.start(run=False)
    assert gc.get_freeze_count() > 0
    await policy.stop()
    assert gc.get_freeze_count() == 0
    seen = policy.stats.pauses["full"].count
    gc.collect()
    assert policy.stats.pauses["full"].count == seen
    assert policy._on_collection not in gc.callbacks


async def test_its_task_runs_on_the_event_loop_until_stopped() -> None:
    the_policy = GcPolicy(sweep_seconds=3600)
    the_policy.start()
    try:
        assert the_policy._task is not None and not the_policy._task.done()
    finally:
        await the_policy.stop()
    assert the_policy._task is None


# ------------------------------------------------------------------ wiring and figures


def test_resident_memory_follows_what_the_process_holds() -> None:
    before = resident_bytes()
    held = bytearray(64 * MB)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: resident now
    assert resident_bytes() >= before + 32 * MB


def test_serve_installs_the_policy_unless_turned_off() -> None:
    assert gc_policy(Settings(gc_freeze=False)) is None
    registry = CollectorRegistry()
    installed = gc_policy(Settings(), registry)
    assert isinstance(installed, GcPolicy)
    assert b"chatbridge_gc_collections_total" in generate_latest(registry)


async def test_the_figures_are_exported(policy: GcPolicy) -> None:
    registry = CollectorRegistry()
    registry.register(GcMetrics(policy))
    policy.start(run=False)
    gc.collect()
    policy.sweep()
    text = generate_latest(registry).decode()
    for line in (
        'chatbridge_gc_collections_total{kind="full"} 1.0',
        'chatbridge_gc_collections_total{kind="sweep"} 1.0',
        'chatbridge_gc_collections_total{kind="compaction"} 0.0',
        'chatbridge_gc_collection_seconds_total{kind="young"}',
        'chatbridge_gc_longest_collection_seconds{kind="sweep"}',
    ):
        assert line in text
