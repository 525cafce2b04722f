"""Which of a route's agents runs a turn, whom an ``agent_handoff`` names, and how such a
turn ends: the pure decisions (``pipeline.decisions``), no server."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.pipeline.decisions import AgentPick, handoff_target, pick_agent, plan_outcome
from chatbridge.store.records import (
    CURRENT_AGENT_KEY,
    ConversationRecord,
    MessageRecord,
    Route,
    RouteAgent,
)
from chatbridge.transports.base import AgentOutcome

GUIDE = RouteAgent("guide", "guide", default=True)
BILLING = RouteAgent("billing-bot", "Billing")
SHIPPING = RouteAgent("ship-bot", "shipping")


def route(*agents: RouteAgent, agent_id: str = "guide", **kw: Any) -> Route:
    return Route(
        id=1,
        channel="chatwoot",
        inbox_id=1,
        agent_id=agent_id,
        reply_mode="async",
        timeout_seconds=5,
        fallback_text="Sorry, try again later.",
        on_failure=kw.pop("on_failure", "fallback"),
        agent_bot_mode=False,
        created_at=0,
        updated_at=0,
        agents=agents,
    )


def conv(current: str | None = None) -> ConversationRecord:
    return ConversationRecord(
        id="c_1",
        channel="chatwoot",
        channel_key="1:1",
        inbox_id=1,
        contact_id=None,
        owner="bot",
        status="open",
        external_status=None,
        meta={} if current is None else {CURRENT_AGENT_KEY: current, "offer": None},
    )


def msg(text: str = "hi", **meta: Any) -> MessageRecord:
    return MessageRecord(
        id="m_1",
        conversation_id="c_1",
        direction="in",
        author="contact",
        text=text,
        content_type="text",
        attachments=[],
        external_id=None,
        created_at=0,
        meta=meta,
    )


MULTI = route(GUIDE, BILLING, SHIPPING)


def test_a_route_with_one_agent_ignores_addresses_and_current_agents() -> None:
    single = route()
    picked = pick_agent(single, conv("billing-bot"), [msg(agent="billing-bot", role="Billing")])
    assert picked == AgentPick("guide")  # no role: user_message carries no agent / role


def test_a_new_conversation_starts_on_the_default_agent_without_a_write() -> None:
    assert pick_agent(MULTI, conv(), [msg()]) == AgentPick("guide", "guide", switch=False)


def test_the_current_agent_keeps_the_conversation() -> None:
    assert pick_agent(MULTI, conv("billing-bot"), [msg()]) == AgentPick("billing-bot", "Billing")


def test_an_address_by_role_or_id_makes_that_agent_current() -> None:
    by_role = pick_agent(MULTI, conv(), [msg(role="billing")])  # roles ignore case
    assert by_role == AgentPick("billing-bot", "Billing", switch=True)
    by_id = pick_agent(MULTI, conv("billing-bot"), [msg(agent="ship-bot")])
    assert by_id == AgentPick("ship-bot", "shipping", switch=True)
    # ``agent`` may name a role too; addressing the current agent needs no write
    assert pick_agent(MULTI, conv("ship-bot"), [msg(agent="Shipping")]) == AgentPick(
        "ship-bot", "shipping"
    )


def test_the_newest_address_in_a_merged_turn_wins() -> None:
    messages = [msg(role="billing"), msg("no address"), msg(agent="ship-bot"), msg()]
    assert pick_agent(MULTI, conv(), messages).agent_id == "ship-bot"


def test_an_unknown_address_is_ignored() -> None:
    picked = pick_agent(MULTI, conv("billing-bot"), [msg(agent="root", role="admin")])
    assert picked == AgentPick("billing-bot", "Billing")


def test_a_current_agent_no_longer_on_the_route_falls_back_to_the_default() -> None:
    assert pick_agent(MULTI, conv("retired"), [msg()]) == AgentPick("guide", "guide", switch=True)


def test_a_fresh_session_starts_again_on_the_default() -> None:
    picked = pick_agent(MULTI, conv("billing-bot"), [msg()], fresh=True)
    assert picked == AgentPick("guide", "guide", switch=True)
    addressed = pick_agent(MULTI, conv("billing-bot"), [msg(role="shipping")], fresh=True)
    assert addressed.agent_id == "ship-bot"


@given(
    current=st.one_of(st.none(), st.sampled_from(["guide", "billing-bot", "ship-bot", "x"])),
    names=st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=4),
    fresh=st.booleans(),
)
def test_a_turn_always_runs_on_one_of_the_routes_agents(
    current: str | None, names: list[str | None], fresh: bool
) -> None:
    messages = [msg(agent=n) if n is not None else msg() for n in names]
    picked = pick_agent(MULTI, conv(current), messages, fresh=fresh)
    chosen = MULTI.agent_named(picked.agent_id)
    assert chosen is not None and picked.role == chosen.role
    # a write exactly when the conversation's agent changes (not for a first default)
    assert picked.switch == (
        picked.agent_id != current and (current is not None or picked.agent_id != "guide")
    )


@given(
    current=st.one_of(st.none(), st.sampled_from(["guide", "billing-bot", "ship-bot", "x"])),
    agent=st.one_of(st.none(), st.sampled_from(["ship-bot", "billing", "Guide", "nobody", ""])),
    role=st.one_of(st.none(), st.sampled_from(["BILLING", "shipping", "legal", ""])),
)
def test_a_turn_is_queued_for_the_agent_that_runs_it(
    current: str | None, agent: str | None, role: str | None
) -> None:
    """The ingest's ``Route.queued_agent`` (what replicas claim by) and the runner's
    ``pick_agent`` agree, so a turn is claimed where its agent is."""
    meta = {k: v for k, v in (("agent", agent), ("role", role)) if v is not None}
    c = conv(current)
    assert MULTI.queued_agent(c.meta, meta) == pick_agent(MULTI, c, [msg(**meta)]).agent_id
    assert route().queued_agent(c.meta, meta) == "guide"


def handoff(**kw: Any) -> AgentOutcome:
    return AgentOutcome("agent_handoff", kw.pop("content", None), reason="billing", **kw)


def test_a_handoff_names_an_agent_by_id_or_role() -> None:
    assert handoff_target(MULTI, handoff(to_agent="ship-bot")) == SHIPPING
    assert handoff_target(MULTI, handoff(to_role="BILLING")) == BILLING
    assert handoff_target(MULTI, handoff(to_agent="Billing")) is None  # ids are exact
    assert handoff_target(route(), handoff(to_agent="guide")) is None


def test_an_agent_handoff_ends_the_turn_with_its_words_first() -> None:
    plan = plan_outcome(
        handoff(to_role="billing", content="Let me get our billing expert."),
        route=MULTI,
        default_fallback="x",
        max_attempts=5,
    )
    assert (plan.state, plan.outcome, plan.to_agent) == ("done", "agent_handoff", BILLING)
    assert plan.reply_text == "Let me get our billing expert."
    assert [d.kind for d in plan.deliveries] == ["message", "typing_off"]
    assert not plan.handoff  # no human is involved
    silent = plan_outcome(
        handoff(to_agent="ship-bot"), route=MULTI, default_fallback="x", max_attempts=5
    )
    assert silent.reply_text is None and [d.kind for d in silent.deliveries] == ["typing_off"]


@pytest.mark.parametrize("on_failure", ["fallback", "handoff"])
def test_a_handoff_to_no_one_fails_the_turn_by_the_routes_rule(on_failure: str) -> None:
    r = route(GUIDE, BILLING, on_failure=on_failure)
    plan = plan_outcome(
        handoff(to_role="legal", content="Our lawyers will answer."),
        route=r,
        default_fallback="x",
        max_attempts=5,
    )
    assert plan.state == "failed" and plan.to_agent is None
    assert plan.error == "agent_handoff_unknown: no role 'legal' on this route"
    if on_failure == "fallback":
        assert (plan.outcome, plan.reply_text) == ("fallback", "Sorry, try again later.")
    else:
        assert plan.outcome == "fallback_handoff" and plan.handoff


def test_a_web_chat_frame_addresses_with_short_strings_only() -> None:
    from chatbridge.api.webchat import addressing
    from chatbridge.errors import BadInput

    assert addressing(None, None) is None
    assert addressing("billing-bot", None) == {"agent": "billing-bot"}
    assert addressing(None, "Billing") == {"role": "Billing"}
    for agent, role in ((42, None), ("", None), (None, "x" * 201), (None, "\ud800"), ([], "r")):
        with pytest.raises(BadInput) as refused:
            addressing(agent, role)
        assert refused.value.code == "invalid_message"
