"""``plan_window`` against a simulated conversation: bursts of any shape, a worker that
claims like the real store, races between a plan and its write.

The simulator keeps a conversation's turns table the way the store will, and applies each
``WindowPlan`` as the ingest transaction does:

- ``new`` inserts a pending turn (attempts 0, ``created_at`` now) carrying the message;
- ``merge`` appends the message to an unstarted turn and moves its ``available_at`` —
  only if the turn is still pending with no attempt, else the write falls back;
- ``supersede`` cancels the leased turn (or one given back for a retry) and inserts one
  pending turn carrying its messages and then this one — only if the turn is still
  leased (or waiting for its retry), else the write falls back.

A fallback either plans again against the turns as they are now (``replan``, what
``store/conversations.py`` does) or simply inserts a new turn at the planned time (``new``,
a weaker rule the ordering properties hold for too).
The worker claims exactly like ``store/hot_sql.py``'s claim: a conversation's oldest open
turn, if it is pending and due, at most one leased turn per conversation. A finished reply
is delivered only if its turn is still leased (the fence); a superseded turn's reply is
discarded.

Times are whole milliseconds. Properties that compare times at their exact boundaries
(a gap of exactly ``debounce_ms``) draw them on a 125 ms lattice, where milliseconds are
exact binary fractions of a second and so the float arithmetic in ``plan_window`` is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbridge.policies.model import InFlight, RoutePolicies
from chatbridge.policies.window import OpenTurn, WindowPlan, plan_window

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
IN_FLIGHT: tuple[InFlight, ...] = ("queue", "merge_next", "supersede")
Fallback = Literal["replan", "new"]
RETRY_AFTER_MS = 700


@dataclass(frozen=True)
class Arrival:
    """One customer message: when it arrives and how it meets the worker."""

    at_ms: int
    closes: bool = False
    # the worker's events due at this very instant happen before the message is planned
    worker_first: bool = True
    # a claim due at this instant slips in between the plan and its write (PostgreSQL:
    # the ingest read the open turns, a worker's claim commits, then the ingest writes)
    race: bool = False


@dataclass(frozen=True)
class Worker:
    """How the worker behaves, claim by claim (the k-th claim uses entry k)."""

    durations_ms: tuple[int, ...] = (0,)  # how long the agent takes (cyclic)
    lags_ms: tuple[int, ...] = (0,)  # how late after a turn is due the worker claims it
    failures: tuple[bool, ...] = ()  # the k-th claim fails and is retried (then: succeeds)

    @property
    def idle(self) -> bool:
        """Always free, instant, never late, never failing: no contention at all."""
        return set(self.durations_ms) == {0} and set(self.lags_ms) == {0} and not any(self.failures)


@dataclass
class SimTurn:
    id: int
    created_at: float
    available_at: float
    message_ids: list[str]
    state: str = "pending"  # pending | leased | done | cancelled
    attempts: int = 0
    shortcut: bool = False  # inserted by the naive ``new`` fallback at a merge's time

    @property
    def open(self) -> bool:
        return self.state in ("pending", "leased")

    @property
    def unstarted(self) -> bool:
        return self.state == "pending" and self.attempts == 0


@dataclass
class Lease:
    finish_at: float
    turn_id: int
    fails: bool


@dataclass
class Conversation:
    """One conversation's turns table, its worker, and the checks made along the way."""

    policies: RoutePolicies
    worker: Worker = field(default_factory=Worker)
    fallback: Fallback = "replan"
    turns: dict[int, SimTurn] = field(default_factory=dict)
    leases: list[Lease] = field(default_factory=list)
    clock: float = 0.0
    claims: int = 0
    delivered: list[int] = field(default_factory=list)  # turn ids, in delivery order
    discarded: list[int] = field(default_factory=list)  # replies the fence refused
    superseded: list[tuple[int, int]] = field(default_factory=list)  # (cancelled, successor)
    arrivals: list[str] = field(default_factory=list)

    # -- the store's view ------------------------------------------------------------------

    def open_turns(self) -> list[OpenTurn]:
        return [
            OpenTurn(t.id, t.state, t.attempts, t.created_at, t.available_at, tuple(t.message_ids))
            for t in sorted(self.turns.values(), key=lambda t: t.id)
            if t.open
        ]

    def _insert(self, now: float, available_at: float, message_ids: list[str]) -> SimTurn:
        turn = SimTurn(len(self.turns) + 1, now, available_at, message_ids)
        self.turns[turn.id] = turn
        return turn

    # -- the worker ------------------------------------------------------------------------

    def _next_event(self) -> tuple[float, int, Lease | SimTurn] | None:
        events: list[tuple[float, int, Lease | SimTurn]] = [
            (lease.finish_at, 0, lease) for lease in self.leases
        ]
        head = next((t for t in sorted(self.turns.values(), key=lambda t: t.id) if t.open), None)
        if head is not None and head.state == "pending":
            lag = self.worker.lags_ms[self.claims % len(self.worker.lags_ms)] / 1000
            events.append((max(head.available_at + lag, self.clock), 1, head))
        # finishes before claims at the same instant: a finished turn frees the next one
        return min(events, key=lambda e: (e[0], e[1])) if events else None

    def advance(self, until: float, *, inclusive: bool) -> None:
        """Run the worker's finishes and claims due before ``until`` (or at it)."""
        while (event := self._next_event()) is not None:
            at, kind, what = event
            if at > until or (at == until and not inclusive):
                return
            self.clock = max(self.clock, at)
            if isinstance(what, Lease):
                self._finish(what)
            else:
                assert kind == 1
                self._claim(what)

    def _claim(self, turn: SimTurn) -> None:
        assert turn.available_at <= self.clock, "claimed before it was available"
        k = self.claims
        self.claims += 1
        turn.state, turn.attempts = "leased", turn.attempts + 1
        duration = self.worker.durations_ms[k % len(self.worker.durations_ms)] / 1000
        fails = k < len(self.worker.failures) and self.worker.failures[k]
        self.leases.append(Lease(self.clock + duration, turn.id, fails))
        leased = [t.id for t in self.turns.values() if t.state == "leased"]
        assert len(leased) <= 1, f"two turns leased at once: {leased}"

    def _finish(self, lease: Lease) -> None:
        self.leases.remove(lease)
        turn = self.turns[lease.turn_id]
        if turn.state != "leased":  # the fence: a superseded turn's reply is thrown away
            assert turn.state == "cancelled"
            self.discarded.append(turn.id)
        elif lease.fails:
            turn.state = "pending"
            turn.available_at = self.clock + RETRY_AFTER_MS / 1000
        else:
            turn.state = "done"
            self.delivered.append(turn.id)

    def drain(self) -> None:
        self.advance(math.inf, inclusive=True)

    # -- the ingest --------------------------------------------------------------------------

    def receive(self, arrival: Arrival) -> WindowPlan:
        """Plan and write one customer message, as the ingest transaction will."""
        message_id = f"m{len(self.arrivals)}"
        self.arrivals.append(message_id)
        now = arrival.at_ms / 1000
        self.advance(now, inclusive=arrival.worker_first)
        self.clock = max(self.clock, now)
        before = self.open_turns()
        plan = plan_window(before, now=now, policies=self.policies, closes=arrival.closes)
        check_plan(plan, before)
        if arrival.race:
            self.advance(now, inclusive=True)
        turn = self._write(plan, message_id, now, arrival.closes)
        self._check_written(turn, message_id, now, arrival.closes)
        return plan

    def _write(self, plan: WindowPlan, message_id: str, now: float, closes: bool) -> SimTurn:
        if plan.action == "merge":
            assert plan.turn_id is not None
            turn = self.turns[plan.turn_id]
            if turn.unstarted:
                turn.message_ids.append(message_id)
                turn.available_at = plan.available_at
                return turn
        elif plan.action == "supersede":
            assert plan.turn_id is not None
            running = self.turns[plan.turn_id]
            # the store's ``turn_supersede``: a turn running, or given back for a retry
            if running.state == "leased" or (running.state == "pending" and running.attempts):
                running.state = "cancelled"
                successor = self._insert(now, plan.available_at, [*running.message_ids, message_id])
                self.superseded.append((running.id, successor.id))
                return successor
        else:
            return self._insert(now, plan.available_at, [message_id])
        # the turn changed between the plan and the write: a worker claimed or finished it
        if self.fallback == "new":
            turn = self._insert(now, plan.available_at, [message_id])
            turn.shortcut = plan.action == "merge"
            return turn
        again = plan_window(self.open_turns(), now=now, policies=self.policies, closes=closes)
        check_plan(again, self.open_turns())
        return self._write(again, message_id, now, closes)

    def _check_written(self, turn: SimTurn, message_id: str, now: float, closes: bool) -> None:
        debounce = self.policies.debounce_ms / 1000
        cap = self.policies.max_wait_ms / 1000
        assert turn.open and turn.message_ids[-1] == message_id
        if closes or not debounce:
            assert turn.available_at <= now, "a closing message (or no debounce) waits"
        elif not turn.shortcut:
            # the debounce is honoured, up to the cap
            assert turn.available_at >= min(now + debounce, turn.created_at + cap)
        for t in self.turns.values():
            if debounce and t.unstarted:
                assert t.available_at <= t.created_at + cap, f"turn {t.id} waits past the cap"
        unstarted = [t.id for t in self.turns.values() if t.unstarted]
        if self.policies.in_flight != "queue":
            # merge_next and supersede hold everything new in one next turn
            assert len(unstarted) <= 1, f"several unstarted turns: {unstarted}"
        leased = [t for t in self.turns.values() if t.state == "leased"]
        assert len(leased) <= 1
        if (
            self.policies.in_flight == "supersede"
            and self.fallback == "replan"
            and not any(self.worker.failures)
        ):
            # nothing runs at the agent while a newer message waits: its reply would not
            # answer everything the customer said
            assert not leased, f"turn {leased[0].id} still runs after {message_id}"

    # -- outcomes ------------------------------------------------------------------------------

    def windows(self) -> list[list[str]]:
        """The message ids of each turn that was not cancelled, by turn id."""
        return [
            list(t.message_ids)
            for t in sorted(self.turns.values(), key=lambda t: t.id)
            if t.state != "cancelled"
        ]


def check_plan(plan: WindowPlan, open_turns: list[OpenTurn]) -> None:
    """A plan names a turn it may act on, and carries exactly that turn's messages."""
    by_id = {t.id: t for t in open_turns}
    if plan.action == "new":
        assert plan.turn_id is None and plan.carried == ()
    elif plan.action == "merge":
        assert plan.turn_id in by_id
        target = by_id[plan.turn_id]
        assert target.state == "pending" and target.attempts == 0
        # the newest unstarted turn: merging into an older one would reorder messages
        assert all(t.id <= target.id for t in open_turns if t.state == "pending")
    else:
        assert plan.turn_id in by_id
        target = by_id[plan.turn_id]
        assert target.state == "leased" or target.attempts > 0
        assert plan.carried == by_id[plan.turn_id].message_ids


def run(
    policies: RoutePolicies,
    arrivals: list[Arrival],
    worker: Worker | None = None,
    fallback: Fallback = "replan",
) -> Conversation:
    conv = Conversation(policies, worker or Worker(), fallback)
    for arrival in arrivals:
        conv.receive(arrival)
    conv.drain()
    return conv


def expected_windows(policies: RoutePolicies, arrivals: list[Arrival]) -> list[list[str]]:
    """One window per run of messages less than ``debounce_ms`` apart, spanning less than
    ``max_wait_ms``, and ended at once by a closing message."""
    windows: list[list[int]] = []
    for i, arrival in enumerate(arrivals):
        if windows:
            start, prev = arrivals[windows[-1][0]], arrivals[windows[-1][-1]]
            if (
                not prev.closes
                and arrival.at_ms - prev.at_ms < policies.debounce_ms
                and arrival.at_ms - start.at_ms < policies.max_wait_ms
            ):
                windows[-1].append(i)
                continue
        windows.append([i])
    return [[f"m{i}" for i in w] for w in windows]


# -- strategies ---------------------------------------------------------------------------------


@st.composite
def route_policies(
    draw: st.DrawFn, unit: int = 1, in_flight: tuple[InFlight, ...] = IN_FLIGHT
) -> RoutePolicies:
    """Any windowing policy; times are multiples of ``unit`` ms."""
    debounce = draw(st.integers(0, 5000 // unit)) * unit
    max_wait = draw(st.integers(debounce // unit, 15_000 // unit)) * unit
    return RoutePolicies(
        debounce_ms=debounce, max_wait_ms=max_wait, in_flight=draw(st.sampled_from(in_flight))
    )


@st.composite
def bursts(
    draw: st.DrawFn, policies: RoutePolicies, unit: int = 1, contention: bool = True
) -> list[Arrival]:
    """A burst of any shape: gaps of 0 to 3 times the debounce; ties and races if ``contention``."""
    top = max(3 * policies.debounce_ms, 3 * unit) // unit
    gaps = draw(st.lists(st.integers(0, top), min_size=1, max_size=12))
    arrivals, at = [], 0
    for gap in gaps:
        at += gap * unit
        arrivals.append(
            Arrival(
                at_ms=at,
                closes=draw(st.integers(0, 4)) == 0,
                worker_first=draw(st.booleans()) if contention else True,
                race=draw(st.booleans()) if contention else False,
            )
        )
    return arrivals


@st.composite
def workers(draw: st.DrawFn, policies: RoutePolicies) -> Worker:
    """A worker that takes any time, claims late, and sometimes fails and retries."""
    longest = max(4 * policies.debounce_ms, 50)
    return Worker(
        durations_ms=tuple(draw(st.lists(st.integers(0, longest), min_size=1, max_size=6))),
        lags_ms=tuple(
            draw(st.lists(st.integers(0, max(policies.debounce_ms, 10)), min_size=1, max_size=4))
        ),
        failures=tuple(draw(st.lists(st.booleans(), max_size=4))),
    )


@st.composite
def scenarios(
    draw: st.DrawFn, unit: int = 1, in_flight: tuple[InFlight, ...] = IN_FLIGHT
) -> tuple[RoutePolicies, list[Arrival], Worker]:
    policies = draw(route_policies(unit, in_flight))
    return policies, draw(bursts(policies, unit)), draw(workers(policies))


# -- properties -------------------------------------------------------------------------------


@SETTINGS
@given(scenarios(), st.sampled_from(["replan", "new"]))
def test_every_message_is_answered_once_in_order(
    scenario: tuple[RoutePolicies, list[Arrival], Worker], fallback: Fallback
) -> None:
    """None lost, none duplicated, arrival order kept across turns and within each, and no
    reply of a superseded turn delivered — for every policy, worker and interleaving."""
    policies, arrivals, worker = scenario
    conv = run(policies, arrivals, worker, fallback)

    assert all(t.state in ("done", "cancelled") for t in conv.turns.values())
    answered = [m for turn_id in conv.delivered for m in conv.turns[turn_id].message_ids]
    assert answered == conv.arrivals
    assert [m for w in conv.windows() for m in w] == conv.arrivals
    cancelled = {t.id for t in conv.turns.values() if t.state == "cancelled"}
    assert cancelled.isdisjoint(conv.delivered)
    assert set(conv.discarded) <= cancelled
    if policies.in_flight != "supersede":
        assert not cancelled


@SETTINGS
@given(scenarios(in_flight=("supersede",)), st.sampled_from(["replan", "new"]))
def test_a_superseded_turn_reappears_whole_in_its_successor(
    scenario: tuple[RoutePolicies, list[Arrival], Worker], fallback: Fallback
) -> None:
    policies, arrivals, worker = scenario
    conv = run(policies, arrivals, worker, fallback)
    for cancelled, successor in conv.superseded:
        carried = conv.turns[cancelled].message_ids
        assert conv.turns[successor].message_ids[: len(carried)] == carried
        assert successor > cancelled
    # a cancelled turn's messages are answered by the turn at the end of its chain
    final = {m: t for t in conv.windows() for m in t}
    for t in conv.turns.values():
        if t.state == "cancelled":
            assert all(m in final for m in t.message_ids)


@SETTINGS
@given(scenarios(unit=125, in_flight=("queue",)))
def test_queue_makes_one_turn_per_window_whatever_the_worker_does(
    scenario: tuple[RoutePolicies, list[Arrival], Worker],
) -> None:
    """Under ``queue`` the windows depend on arrival times alone: a gap ≥ debounce, a span
    ≥ max_wait or a closing message starts the next one, busy worker or not."""
    policies, arrivals, worker = scenario
    assert run(policies, arrivals, worker).windows() == expected_windows(policies, arrivals)


@SETTINGS
@given(st.data(), route_policies(unit=125))
def test_one_turn_per_window_without_contention(
    data: st.DataObject, policies: RoutePolicies
) -> None:
    arrivals = data.draw(bursts(policies, unit=125, contention=False))
    conv = run(policies, arrivals, Worker())
    assert conv.windows() == expected_windows(policies, arrivals)
    assert conv.claims == len(conv.windows())  # one agent call per window


@SETTINGS
@given(st.data())
def test_queue_without_debounce_is_one_turn_per_message(data: st.DataObject) -> None:
    """The defaults keep today's behaviour, however busy or flaky the worker is."""
    policies = RoutePolicies(max_wait_ms=data.draw(st.integers(0, 10_000)))
    assert not policies.windowed()
    arrivals = data.draw(bursts(RoutePolicies(debounce_ms=1000)))
    conv = run(policies, arrivals, data.draw(workers(policies)))
    assert conv.windows() == [[m] for m in conv.arrivals]
    assert len(conv.delivered) == len(arrivals)


@SETTINGS
@given(st.data(), route_policies(in_flight=("merge_next",)))
def test_merge_next_sends_what_came_during_a_turn_as_one_next_turn(
    data: st.DataObject, policies: RoutePolicies
) -> None:
    arrivals = data.draw(bursts(policies))
    worker = data.draw(workers(policies))
    conv = Conversation(policies, worker)
    for arrival in arrivals:
        conv.receive(arrival)
        running = [t for t in conv.turns.values() if t.state == "leased"]
        waiting = [t for t in conv.turns.values() if t.unstarted]
        if running:
            # what arrived while a turn runs waits in one turn, behind it
            assert len(waiting) == 1 and waiting[0].id > running[0].id
            assert waiting[0].message_ids[-1] == conv.arrivals[-1]
    conv.drain()
    assert [m for w in conv.windows() for m in w] == conv.arrivals


# -- fixed cases --------------------------------------------------------------------------------


def _policies(**kw: object) -> RoutePolicies:
    return RoutePolicies.model_validate(kw)


def test_a_five_message_burst_becomes_one_turn() -> None:
    policies = _policies(debounce_ms=1000, max_wait_ms=10_000)
    conv = run(policies, [Arrival(at) for at in (0, 300, 600, 900, 1200)])
    assert conv.windows() == [["m0", "m1", "m2", "m3", "m4"]]
    # claimed one debounce after the last message
    assert conv.turns[1].available_at == pytest.approx(2.2)


def test_a_gap_of_exactly_the_debounce_starts_a_new_window() -> None:
    policies = _policies(debounce_ms=500, max_wait_ms=10_000)
    for worker_first in (True, False):
        conv = run(policies, [Arrival(0), Arrival(500, worker_first=worker_first)])
        assert conv.windows() == [["m0"], ["m1"]]


def test_the_cap_answers_a_chatty_customer() -> None:
    policies = _policies(debounce_ms=1000, max_wait_ms=2000)
    conv = run(policies, [Arrival(at) for at in range(0, 5000, 500)])
    assert conv.windows() == [
        ["m0", "m1", "m2", "m3"],
        ["m4", "m5", "m6", "m7"],
        ["m8", "m9"],
    ]
    assert conv.turns[1].available_at == 2.0


def test_a_closing_message_ends_the_window_at_once() -> None:
    policies = _policies(debounce_ms=3000, max_wait_ms=10_000)
    conv = Conversation(policies)
    conv.receive(Arrival(0))
    conv.receive(Arrival(1000, closes=True))
    assert conv.turns[1].available_at == 1.0
    conv.receive(Arrival(1000))  # the same instant, after the worker took the closed window
    conv.drain()
    assert conv.windows() == [["m0", "m1"], ["m2"]]


def test_supersede_cancels_the_running_turn_and_restarts_with_everything() -> None:
    policies = _policies(in_flight="supersede")
    conv = Conversation(policies, Worker(durations_ms=(5000,)))
    conv.receive(Arrival(0))
    assert conv.turns[1].state == "pending"
    conv.receive(Arrival(100))  # turn 1 was claimed at 0 and is running
    assert conv.turns[1].state == "cancelled"
    assert conv.turns[2].message_ids == ["m0", "m1"]
    conv.drain()
    assert conv.delivered == [2] and conv.discarded == [1]


def test_merge_next_holds_a_retried_turn_apart() -> None:
    """A turn the worker already tried is not reopened: its messages went to the agent."""
    policies = _policies(in_flight="merge_next")
    conv = Conversation(policies, Worker(durations_ms=(100,), failures=(True,)))
    conv.receive(Arrival(0))
    conv.receive(Arrival(200))  # turn 1 failed at 100 and waits for its retry
    assert conv.turns[1].attempts == 1 and conv.turns[1].state == "pending"
    assert conv.turns[2].message_ids == ["m1"]
    conv.drain()
    assert conv.windows() == [["m0"], ["m1"]]


def test_a_claim_between_plan_and_write_does_not_lose_the_message() -> None:
    policies = _policies(debounce_ms=1000, max_wait_ms=1000, in_flight="merge_next")
    fallbacks: tuple[Fallback, ...] = ("replan", "new")
    for fallback in fallbacks:
        conv = Conversation(policies, Worker(durations_ms=(2000,)), fallback)
        conv.receive(Arrival(0))
        plan = conv.receive(Arrival(1000, worker_first=False, race=True))
        assert plan.action == "merge" and conv.turns[1].state == "leased"
        assert conv.turns[2].message_ids == ["m1"]
        conv.drain()
        assert conv.windows() == [["m0"], ["m1"]]


def test_replanning_after_a_race_supersedes_the_turn_just_claimed() -> None:
    """Under supersede, a window claimed between the plan and its write is superseded at
    once when the write plans again: one turn answers both messages."""
    policies = _policies(debounce_ms=1000, max_wait_ms=1000, in_flight="supersede")
    conv = Conversation(policies, Worker(durations_ms=(2000,)), "replan")
    conv.receive(Arrival(0))
    conv.receive(Arrival(1000, worker_first=False, race=True))
    conv.drain()
    assert conv.windows() == [["m0", "m1"]] and conv.discarded == [1]
    assert conv.turns[2].available_at == 2.0  # and m1 still gets its debounce
