"""The pure decisions: turn or not, owner changes, what a turn's ending writes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.backoff import backoff_delay, parse_retry_after
from chatbridge.pipeline.breaker import CircuitBreaker
from chatbridge.pipeline.decisions import decide_owner, decide_turn, plan_outcome
from chatbridge.store.records import ConversationRecord, Route
from chatbridge.transports.base import AgentOutcome


def route(**kw: object) -> Route:
    base = dict(
        id=1,
        channel="chatwoot",
        inbox_id=1,
        agent_id="a",
        reply_mode="async",
        timeout_seconds=5.0,
        fallback_text=None,
        on_failure="fallback",
        agent_bot_mode=False,
        created_at=0.0,
        updated_at=0.0,
    )
    base.update(kw)
    return Route(**base)  # type: ignore[arg-type]


def conv(owner: str = "bot", external_status: str | None = None) -> ConversationRecord:
    return ConversationRecord(
        id="c",
        channel="chatwoot",
        channel_key="1:1",
        inbox_id=1,
        contact_id=None,
        owner=owner,
        status="open",
        external_status=external_status,
        meta={},
    )


def test_bot_owned_conversation_gets_a_turn() -> None:
    d = decide_turn(route(), conv())
    assert d.create_turn and d.owner == "bot"


def test_human_owned_conversation_gets_no_turn() -> None:
    d = decide_turn(route(), conv(owner="human"))
    assert not d.create_turn and d.reason == "human_owner"


@pytest.mark.parametrize(
    ("status", "turn"),
    [("pending", True), ("open", False), ("snoozed", False), ("resolved", False)],
)
def test_agent_bot_mode_answers_only_pending(status: str, turn: bool) -> None:
    d = decide_turn(route(agent_bot_mode=True), conv(external_status=status))
    assert d.create_turn is turn
    assert d.owner == ("bot" if turn else "human")


def test_agent_bot_mode_pending_again_returns_to_bot() -> None:
    d = decide_turn(route(agent_bot_mode=True), conv(owner="human", external_status="pending"))
    assert d.create_turn and d.owner == "bot"


@pytest.mark.parametrize(
    ("signal", "status", "previous", "bot_mode", "expected"),
    [
        ("human", "pending", None, False, "human"),
        (None, "open", "pending", False, "human"),
        (None, "open", None, True, "human"),
        (None, "open", None, False, None),
        (None, "open", "snoozed", False, None),
        (None, "pending", "open", False, "bot"),
        (None, "resolved", "open", False, "bot"),
        (None, "snoozed", "open", True, None),
    ],
)
def test_decide_owner(
    signal: str | None, status: str, previous: str | None, bot_mode: bool, expected: str | None
) -> None:
    assert (
        decide_owner(
            signal_owner=signal,
            external_status=status,
            previous_status=previous,
            agent_bot_mode=bot_mode,
        )
        == expected
    )


def kinds(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return [d.kind for d in plan.deliveries]


def test_reply_is_sent_then_typing_off() -> None:
    plan = plan_outcome(
        AgentOutcome("reply", content="hi"), route=route(), default_fallback="fb", max_attempts=5
    )
    assert (plan.state, plan.outcome, plan.reply_text, kinds(plan)) == (
        "done",
        "reply",
        "hi",
        ["message", "typing_off"],
    )


@pytest.mark.parametrize("outcome", [AgentOutcome("no_reply"), AgentOutcome("reply", content="  ")])
def test_no_reply_only_stops_typing(outcome: AgentOutcome) -> None:
    plan = plan_outcome(outcome, route=route(), default_fallback="fb", max_attempts=5)
    assert plan.outcome == "no_reply" and kinds(plan) == ["typing_off"]


def test_handoff_sends_its_message_then_opens_the_conversation() -> None:
    plan = plan_outcome(
        AgentOutcome("handoff", content="A human will help"),
        route=route(),
        default_fallback="fb",
        max_attempts=5,
    )
    assert plan.handoff and kinds(plan) == ["message", "typing_off", "handoff"]


@pytest.mark.parametrize("failure", ["timeout", "disconnected", "circuit_open"])
def test_failure_sends_the_route_fallback(failure: str) -> None:
    plan = plan_outcome(
        None,
        route=route(fallback_text="Back soon"),
        default_fallback="fb",
        max_attempts=5,
        failure=failure,
    )
    assert (plan.state, plan.outcome, plan.reply_text, plan.error) == (
        "failed",
        "fallback",
        "Back soon",
        failure,
    )
    assert kinds(plan) == ["message", "typing_off"]


def test_agent_error_uses_default_fallback() -> None:
    plan = plan_outcome(
        AgentOutcome("error", error_code="boom"),
        route=route(),
        default_fallback="fb",
        max_attempts=5,
    )
    assert plan.reply_text == "fb" and plan.error == "agent_error:boom"


def test_failure_hands_off_when_the_route_says_so() -> None:
    plan = plan_outcome(
        None,
        route=route(on_failure="handoff"),
        default_fallback="fb",
        max_attempts=5,
        failure="timeout",
    )
    assert plan.handoff and plan.reply_text is None and kinds(plan) == ["typing_off", "handoff"]


@given(
    st.integers(1, 50),
    st.floats(0.01, 5),
    st.floats(1, 120),
    st.one_of(st.none(), st.floats(0, 600)),
)
def test_backoff_stays_within_bounds(
    attempt: int, base: float, cap: float, retry_after: float | None
) -> None:
    delay = backoff_delay(
        attempt, base=base, cap=cap, retry_after=retry_after, rng=random.Random(attempt)
    )
    assert delay >= 0
    assert delay <= max(cap, min(retry_after or 0, cap * 10)) + 1e-9
    if retry_after:
        assert delay >= min(retry_after, cap * 10) - 1e-9


def test_backoff_grows_exponentially_on_average() -> None:
    rng = random.Random(7)
    means = [
        sum(backoff_delay(a, base=1, cap=1000, rng=rng) for _ in range(2000)) / 2000
        for a in (1, 3, 5)
    ]
    assert means[0] < means[1] < means[2]
    assert 7 < means[2] < 9  # uniform(0, 16) has mean 8


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 1.5 ", 1.5), ("", None), (None, None), ("soon", None), ("-1", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_breaker_opens_after_threshold_and_half_opens_for_one_trial() -> None:
    b = CircuitBreaker(failure_threshold=3, reset_seconds=10)
    for i in range(3):
        assert b.allow(100 + i)
        b.record_failure(100 + i)
    assert b.state(103) == "open" and not b.allow(105)
    assert b.state(112.5) == "half_open"
    assert b.allow(112.5) and not b.allow(112.6)  # one trial at a time
    b.record_failure(113)
    assert b.state(114) == "open"
    assert b.allow(123.5)
    b.record_success()
    assert b.state(124) == "closed" and b.allow(124) and b.allow(124)


def test_breaker_success_resets_the_count() -> None:
    b = CircuitBreaker(failure_threshold=2, reset_seconds=10)
    b.record_failure(1)
    b.record_success()
    b.record_failure(2)
    assert b.state(2) == "closed"
