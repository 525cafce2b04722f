"""A route's named agents and a conversation's current agent in the store, on SQLite and on
PostgreSQL (see conftest)."""

from __future__ import annotations

from chatbridge.models import ContactInfo, InboundMessage
from chatbridge.store import Store
from chatbridge.store.records import CURRENT_AGENT_KEY, Route, RouteAgent, TurnDecision

GUIDE = RouteAgent("guide", "guide", default=True)
SPECIALIST = RouteAgent("billing-bot", "billing")


def bot_decides(conv):  # type: ignore[no-untyped-def]
    return TurnDecision(create_turn=True, owner="bot")


async def save(store: Store, agents: list[RouteAgent]) -> tuple[Route, bool]:
    await store.upsert_agent(
        "guide", transport="ws-dial-out", url="ws://127.0.0.1:1", timeout_seconds=5
    )
    return await store.save_route(
        channel="chatwoot",
        inbox_id=1,
        agent_id="guide",
        reply_mode="async",
        timeout_seconds=5,
        fallback_text=None,
        on_failure="fallback",
        agent_bot_mode=False,
        agents=agents,
    )


def inbound(n: int, **metadata: str) -> InboundMessage:
    return InboundMessage(
        channel="chatwoot",
        inbox_id=1,
        channel_key="1:42",
        text=f"message {n}",
        external_message_id=f"1:42-{n}",
        contact=ContactInfo(external_id="contact-42", name="Ana"),
        metadata=metadata,
    )


async def test_a_route_keeps_its_named_agents(store: Store) -> None:
    route, created = await save(store, [GUIDE, SPECIALIST])
    assert created and route.agents == (GUIDE, SPECIALIST)
    [listed] = await store.list_routes()
    assert listed.agents == (GUIDE, SPECIALIST)
    assert listed.agent_with_role("BILLING") == SPECIALIST
    assert listed.names("billing-bot") and listed.names("guide") and not listed.names("other")
    # saved again without agents: back to the one agent
    route, created = await save(store, [])
    assert not created and route.agents == ()
    assert (await store.list_routes())[0].agents == ()


async def test_the_current_agent_is_set_under_the_turn_lease_only(store: Store) -> None:
    route, _ = await save(store, [GUIDE, SPECIALIST])
    await store.ingest(inbound(1), route=route, response_mode="async", decide=bot_decides)
    [turn] = await store.claim_turns("w1", limit=1, lease_seconds=30)
    # keys of meta written by others stay
    await store.set_offer(turn.conversation_id, {"kind": "buttons", "options": []})
    assert not await store.set_current_agent(
        turn.conversation_id, "billing-bot", turn_id=turn.id, owner="someone-else"
    )
    conv = await store.get_conversation(turn.conversation_id)
    assert conv is not None and CURRENT_AGENT_KEY not in conv.meta
    assert await store.set_current_agent(
        turn.conversation_id, "billing-bot", turn_id=turn.id, owner="w1"
    )
    done = await store.complete_turn(
        turn.id, "w1", state="done", outcome="no_reply", reply_text=None
    )
    assert done.ok
    # the next turn is claimed with the conversation as it now is
    await store.ingest(inbound(2), route=route, response_mode="async", decide=bot_decides)
    [nxt] = await store.claim_turns("w2", limit=1, lease_seconds=30)
    assert nxt.conversation.meta[CURRENT_AGENT_KEY] == "billing-bot"
    assert nxt.conversation.meta["offer"] == {"kind": "buttons", "options": []}
    # a finished turn's lease fences nothing any more
    assert not await store.set_current_agent(
        turn.conversation_id, "guide", turn_id=turn.id, owner="w1"
    )


async def test_turns_are_queued_for_the_agent_that_will_answer_them(store: Store) -> None:
    """``turns.agent_id`` (what replicas claim by) follows the conversation's agent: the
    addressed one, the current one, else the default; a switch moves the open turns too."""
    route, _ = await save(store, [GUIDE, SPECIALIST])
    await store.ingest(inbound(1), route=route, response_mode="async", decide=bot_decides)
    [first] = await store.claim_turns("w1", limit=1, lease_seconds=30)
    assert first.agent_id == "guide"
    # a message queued behind the running turn, then the running turn hands over
    await store.ingest(inbound(2), route=route, response_mode="async", decide=bot_decides)
    assert await store.set_current_agent(
        first.conversation_id, "billing-bot", turn_id=first.id, owner="w1"
    )
    await store.complete_turn(first.id, "w1", state="done", outcome="no_reply", reply_text=None)
    [second] = await store.claim_turns("w1", limit=1, lease_seconds=30)
    assert second.agent_id == "billing-bot"
    await store.complete_turn(second.id, "w1", state="done", outcome="no_reply", reply_text=None)
    # new turns: the current agent, or the one a message addresses
    await store.ingest(inbound(3), route=route, response_mode="async", decide=bot_decides)
    [third] = await store.claim_turns("w1", limit=1, lease_seconds=30)
    assert third.agent_id == "billing-bot"
    await store.complete_turn(third.id, "w1", state="done", outcome="no_reply", reply_text=None)
    await store.ingest(
        inbound(4, role="GUIDE"), route=route, response_mode="async", decide=bot_decides
    )
    [fourth] = await store.claim_turns("w1", limit=1, lease_seconds=30)
    assert fourth.agent_id == "guide"
    assert fourth.messages[-1].meta["role"] == "GUIDE"  # the turn runner sees the address too
