"""The pure decisions: turn or not, owner changes, what a turn's ending writes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.backoff import backoff_delay, parse_retry_after
from chatbridge.pipeline.breaker import CircuitBreaker
from chatbridge.pipeline.decisions import decide_owner, decide_turn, plan_outcome
from chatbridge.policies.model import RoutePolicies
from chatbridge.store.base import delivers
from chatbridge.store.records import ConversationRecord, DeliverySpec, Route
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


# ------------------------------------------------------------------ paced replies (split)


def paced(**kw: object) -> Route:
    return route(
        policies=RoutePolicies(split_replies=True, ms_per_char=10, max_typing_ms=100, **kw)
    )


def test_a_paced_reply_is_a_typed_part_per_paragraph() -> None:
    text = "Hello!\n\nYour order shipped today and arrives Friday.\n\nAnything else?"
    plan = plan_outcome(
        AgentOutcome("reply", content=text), route=paced(), default_fallback="fb", max_attempts=5
    )
    assert (plan.outcome, plan.reply_text) == ("reply", text)  # one message row, whole text
    off, *parts = plan.deliveries
    assert (off.kind, off.payload) == ("typing_off", {})  # the slow agent's indicator first
    assert [(d.kind, d.text, d.payload) for d in parts] == [
        ("typing_on", None, {"hold_ms": 60, "part": 1}),
        ("message", "Hello!", {"part": 1, "parts": 3}),
        ("typing_off", None, {"part": 1}),
        ("typing_on", None, {"hold_ms": 100, "part": 2}),  # 44 chars: clamped
        ("message", "Your order shipped today and arrives Friday.", {"part": 2, "parts": 3}),
        ("typing_off", None, {"part": 2}),
        ("typing_on", None, {"hold_ms": 100, "part": 3}),
        ("message", "Anything else?", {"part": 3, "parts": 3}),
        ("typing_off", None, {"part": 3}),
    ]
    assert [d.max_attempts for d in parts if d.kind == "message"] == [5, 5, 5]


def test_a_paced_handoff_types_its_text_then_hands_off() -> None:
    plan = plan_outcome(
        AgentOutcome("handoff", content="I'll get a colleague.\n\nOne moment."),
        route=paced(),
        default_fallback="fb",
        max_attempts=5,
    )
    assert plan.handoff and kinds(plan) == ["typing_off"] + [
        "typing_on",
        "message",
        "typing_off",
    ] * 2 + ["handoff"]


def test_the_fallback_is_not_paced() -> None:
    plan = plan_outcome(
        None, route=paced(), default_fallback="Back\n\nsoon", max_attempts=5, failure="timeout"
    )
    assert kinds(plan) == ["message", "typing_off"] and plan.deliveries[0].text == "Back\n\nsoon"


def test_an_attachment_only_reply_is_one_message_when_paced() -> None:
    plan = plan_outcome(
        AgentOutcome("reply", content="", attachments=[{"url": "https://x.test/a.png"}]),
        route=paced(),
        default_fallback="fb",
        max_attempts=5,
    )
    assert kinds(plan) == ["typing_off", "message"] and plan.attachments


def test_without_the_policy_a_long_reply_is_one_message() -> None:
    plan = plan_outcome(
        AgentOutcome("reply", content="a\n\nb"),
        route=route(),
        default_fallback="fb",
        max_attempts=5,
    )
    assert [(d.kind, d.text) for d in plan.deliveries] == [
        ("message", "a\n\nb"),
        ("typing_off", None),
    ]


@given(st.lists(st.text(min_size=1, max_size=30).filter(str.strip), min_size=1, max_size=14))
def test_paced_typing_pairs_are_closed_and_parts_keep_their_order(paragraphs: list[str]) -> None:
    text = "\n\n".join(paragraphs)
    plan = plan_outcome(
        AgentOutcome("reply", content=text), route=paced(), default_fallback="fb", max_attempts=5
    )
    parts = plan.deliveries[1:]
    assert len(parts) % 3 == 0 and len(parts) // 3 <= 10
    for i in range(0, len(parts), 3):
        on, msg, off = parts[i : i + 3]
        n = i // 3 + 1
        assert (on.kind, msg.kind, off.kind) == ("typing_on", "message", "typing_off")
        assert on.payload["part"] == msg.payload["part"] == off.payload["part"] == n
        assert 0 <= on.payload["hold_ms"] <= 100
    texts = "".join(d.text or "" for d in parts)
    assert "".join(text.split()) == "".join(texts.split())


@pytest.mark.parametrize(
    ("payload", "to_bot", "no_typing", "written"),
    [
        ({}, True, False, True),  # the slow agent's indicator: off if it showed
        ({}, True, True, False),
        ({}, False, False, True),  # … even in a human's conversation
        ({"part": 1}, True, True, True),  # a part's indicator: with its part
        ({"part": 1}, False, False, False),  # a human's conversation: none of the parts
    ],
)
def test_which_typing_off_a_finished_turn_writes(
    payload: dict[str, int], to_bot: bool, no_typing: bool, written: bool
) -> None:
    spec = DeliverySpec("typing_off", 3, payload=payload)
    assert delivers(spec, to_bot=to_bot, no_typing=no_typing) is written
    on = DeliverySpec("typing_on", 3, payload={"hold_ms": 10, **payload})
    if payload:
        assert delivers(on, to_bot=to_bot, no_typing=no_typing) is to_bot
