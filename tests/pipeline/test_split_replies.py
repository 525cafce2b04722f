"""Human-paced replies (``split_replies``) through the store and the workers.

- the store: a finished ``typing_on`` with a hold keeps its conversation's next part back —
  in the same transaction, on SQLite and PostgreSQL (one finish, and a group commit's batch);
  a paced reply's status is its last part's;
- the workers, on a fake clock (``burst_rig``): each part typed, then sent, exactly once and
  in order, across a restart and across a crash between parts; a channel without typing
  gets the pauses and no indicator;
- over real sockets (mock agent, mock Chatwoot, the bridge): three paragraphs arrive as
  three messages, each between its typing_on and typing_off, after its pause.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from chatbridge.agent import Agent, Turn
from chatbridge.channels.base import Capabilities
from chatbridge.models import ContactInfo, InboundMessage, OutboundAction, SendResult
from chatbridge.pipeline.bridge import Bridge
from chatbridge.pipeline.decisions import paced_parts
from chatbridge.policies.model import RoutePolicies
from chatbridge.store import Store
from chatbridge.store import tables as t
from chatbridge.store.records import DeliverySpec, Route, TurnDecision
from chatbridge.testing.clock import FakeClock
from chatbridge.transports.base import AgentOutcome
from tests.e2e.harness import assert_typing_paired, running_stack
from tests.pipeline.burst_rig import CHANNEL, LEASE, FakeChannel, burst_bridge, say

POLICIES = RoutePolicies(split_replies=True, ms_per_char=100, max_typing_ms=2000)
REPLY = "Hi Ana!\n\nYour parcel left our depot today.\n\nAnything else?"
PARTS = ["Hi Ana!", "Your parcel left our depot today.", "Anything else?"]
HOLDS = [0.7, 2.0, 1.4]  # seconds: 7 chars, 33 (clamped to 2000 ms), 14


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with FakeClock().installed() as fake:
        yield fake


# ----------------------------------------------------------------------------- the store


async def conversation(store: Store, key: str) -> str:
    await store.upsert_agent(
        "a1", transport="ws-dial-out", url="ws://127.0.0.1:1", timeout_seconds=5
    )
    route, _ = await store.save_route(
        channel="chatwoot",
        inbox_id=1,
        agent_id="a1",
        reply_mode="async",
        timeout_seconds=5,
        fallback_text=None,
        on_failure="fallback",
        agent_bot_mode=False,
    )
    result = await store.ingest(
        InboundMessage(
            channel="chatwoot",
            inbox_id=1,
            channel_key=key,
            text="hello",
            external_message_id=f"{key}-0",
            contact=ContactInfo(external_id=f"contact-{key}"),
        ),
        route=route,
        response_mode="async",
        decide=lambda conv: TurnDecision(create_turn=False, owner="bot"),
    )
    assert result.conversation_id
    return result.conversation_id


async def queue_paced(store: Store, conversation_id: str, text: str = REPLY) -> str:
    done = await store.add_outbound(
        conversation_id,
        text=text,
        author="agent",
        deliveries=paced_parts(text, POLICIES, 3),
    )
    assert done.ok and done.reply_message_id
    return done.reply_message_id


async def test_a_part_waits_out_its_typing_across_a_restart(store: Store, clock: FakeClock) -> None:
    conversation_id = await conversation(store, "1:1")
    await queue_paced(store, conversation_id)
    [on] = await store.claim_deliveries("w", limit=5, lease_seconds=LEASE)
    assert (on.kind, on.payload) == ("typing_on", {"hold_ms": 700, "part": 1})
    finished, following = await store.finish_delivery(
        on.id, "w", external_id=None, claim_next=on, hold=(conversation_id, 0.7)
    )
    assert finished and following is None  # the part is not due yet: nothing leased
    assert await store.claim_deliveries("w", limit=5, lease_seconds=LEASE) == []
    # a restart: every lease given back, another process claims; still too early
    await store.release_leases("w")
    clock.advance(0.6)
    assert await store.claim_deliveries("next", limit=5, lease_seconds=LEASE) == []
    clock.advance(0.2)
    [message] = await store.claim_deliveries("next", limit=5, lease_seconds=LEASE)
    assert (message.kind, message.text) == ("message", "Hi Ana!")
    # without a hold the conversation goes straight on: the part's typing_off is leased
    finished, following = await store.finish_delivery(
        message.id, "next", external_id="ext-1", claim_next=message
    )
    assert finished and following is not None and following.payload == {"part": 1}


async def test_holds_written_by_one_batch_of_finishes(store: Store, clock: FakeClock) -> None:
    """Two conversations' typing_ons finish in one group commit (PostgreSQL writes such a
    batch set-wise): each holds its own next part, no other."""
    import asyncio

    for key in ("1:a", "1:b"):
        await queue_paced(store, await conversation(store, key))
    first = await store.claim_deliveries("w", limit=5, lease_seconds=LEASE)
    assert [d.kind for d in first] == ["typing_on", "typing_on"]
    batches = store._finishes.batches
    results = await asyncio.gather(
        *(
            store.finish_delivery(
                d.id,
                "w",
                external_id=None,
                claim_next=d,
                hold=(d.conversation_id, 0.5 if i == 0 else 1.5),
            )
            for i, d in enumerate(first)
        )
    )
    assert store._finishes.batches == batches + 1  # one batch for both
    assert results == [(True, None), (True, None)]
    clock.advance(0.6)
    [due] = await store.claim_deliveries("w", limit=5, lease_seconds=LEASE)
    assert due.conversation_id == first[0].conversation_id and due.text == "Hi Ana!"
    clock.advance(1.0)
    [later] = await store.claim_deliveries("w", limit=5, lease_seconds=LEASE)
    assert later.conversation_id == first[1].conversation_id and later.text == "Hi Ana!"


async def message_status(store: Store, message_id: str) -> str | None:
    async with store._tx() as conn:
        query = select(t.message_status.c.status).where(t.message_status.c.message_id == message_id)
        return (await conn.execute(query)).scalar_one_or_none()


async def test_a_paced_reply_reports_its_last_part_status(store: Store) -> None:
    conversation_id = await conversation(store, "1:1")
    message_id = await queue_paced(store, conversation_id)
    sent = 0
    while batch := await store.claim_deliveries("w", limit=5, lease_seconds=LEASE):
        [d] = batch
        external = None
        if d.kind == "message":
            sent += 1
            external = f"part-{sent}"
        await store.finish_delivery(d.id, "w", external_id=external)
    assert sent == 3
    # the earlier parts are ours, but "read" of the first is not the reply read
    assert await store.set_message_status("part-1", "read") == message_id
    assert await message_status(store, message_id) is None
    assert await store.set_message_status("part-3", "delivered") == message_id
    assert await message_status(store, message_id) == "delivered"
    assert await store.set_message_status("part-2", "failed") == message_id
    assert await message_status(store, message_id) == "failed"


# ----------------------------------------------------------------------------- the workers


class TypingChannel(FakeChannel):
    """``FakeChannel`` that shows typing (or not) and notes every action with the fake time."""

    def __init__(self, clock: FakeClock, *, typing: bool = True, notes: bool = False) -> None:
        super().__init__()
        self.clock = clock
        # ``notes`` read as the runner reads it (``getattr``), with or without the field
        self.capabilities: Any = SimpleNamespace(
            **{**dataclasses.asdict(Capabilities(typing=typing)), "notes": notes}
        )
        self.log: list[tuple[str, str | None, float]] = []

    async def send(self, action: OutboundAction) -> SendResult:
        result = await super().send(action)
        self.log.append((action.kind, action.text, self.clock.now()))
        return result

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.log]


async def pace(bridge: Bridge) -> None:
    """The burst rig's route, with ``split_replies`` on."""
    route = bridge.route_for(CHANNEL, 1)
    assert route is not None
    fields = {f.name: getattr(route, f.name) for f in dataclasses.fields(Route)}
    for name in ("id", "channel", "inbox_id", "created_at", "updated_at", "policies"):
        fields.pop(name)
    await bridge.store.save_route(channel=CHANNEL, inbox_id=1, policies=POLICIES, **fields)
    await bridge.reload_routes()


def rig_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'split.db'}"


async def test_parts_are_typed_and_sent_once_in_order_across_a_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    channel = TypingChannel(clock)
    url = rig_url(tmp_path)
    async with burst_bridge(url, clock, instance_id="first", channel=channel) as (bridge, agent, _):
        await pace(bridge)
        agent.script.append(AgentOutcome("reply", content=REPLY))
        await say(bridge, "c1", "where is my parcel?")
        start = clock.now()
        await bridge.run_until_idle()
        assert channel.kinds() == ["typing_on"]  # the first part waits its 0.7 s
        clock.advance(HOLDS[0] - 0.01)
        await bridge.run_until_idle()
        assert channel.kinds() == ["typing_on"]
        clock.advance(0.02)
        await bridge.run_until_idle()
        assert channel.kinds() == ["typing_on", "message", "typing_off", "typing_on"]
    # the first process stops (its leases given back) while part 2 is being typed;
    # another one takes over
    async with burst_bridge(url, clock, instance_id="second", channel=channel) as (bridge, _, _):
        await bridge.run_until_idle()
        assert channel.kinds()[-1] == "typing_on"  # not sent early
        clock.advance(HOLDS[1] + 0.01)
        await bridge.run_until_idle()
        clock.advance(HOLDS[2] + 0.01)
        await bridge.run_until_idle()
        assert await bridge.store.counts() == {
            "turns": {"done": 1},
            "deliveries": {"done": 9},  # no slow-agent typing_off: it never showed
        }
    assert channel.texts() == PARTS
    assert channel.kinds() == ["typing_on", "message", "typing_off"] * 3
    assert_typing_paired(channel.kinds())
    # each part went out its hold after its typing_on (the fake clock only moves on cue)
    ons = [at for k, _, at in channel.log if k == "typing_on"]
    sends = [at for k, _, at in channel.log if k == "message"]
    assert ons[0] == start
    for on_at, sent_at, hold in zip(ons, sends, HOLDS, strict=True):
        assert hold <= sent_at - on_at <= hold + 0.02


async def test_a_crash_while_a_part_is_typed_neither_skips_nor_doubles_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A process dies after sending a part's typing_on, before recording it: the next one
    shows the indicator again, then holds the part as usual."""
    channel = TypingChannel(clock)
    async with burst_bridge(rig_url(tmp_path), clock, channel=channel) as (bridge, agent, _):
        await pace(bridge)
        agent.script.append(AgentOutcome("reply", content=REPLY))
        await say(bridge, "c1", "where is my parcel?")
        await bridge._turns.run_until_idle()  # the turn only: its deliveries wait
        [on] = await bridge.store.claim_deliveries("dead", limit=5, lease_seconds=LEASE)
        assert on.kind == "typing_on"  # … sent by the dead process, never finished
        await bridge.run_until_idle()
        assert channel.log == []  # its lease still holds the conversation
        clock.advance(LEASE + 0.1)
        await bridge.run_until_idle()
        assert channel.kinds() == ["typing_on"]
        for hold in HOLDS:
            clock.advance(hold + 0.01)
            await bridge.run_until_idle()
    assert channel.texts() == PARTS
    assert_typing_paired(channel.kinds())


async def test_a_channel_without_typing_gets_the_pauses_without_indicators(
    tmp_path: Path, clock: FakeClock
) -> None:
    channel = TypingChannel(clock, typing=False)
    async with burst_bridge(rig_url(tmp_path), clock, channel=channel) as (bridge, agent, _):
        await pace(bridge)
        agent.script.append(AgentOutcome("reply", content=REPLY))
        await say(bridge, "c1", "where is my parcel?")
        start = clock.now()
        for hold in HOLDS:
            await bridge.run_until_idle()
            clock.advance(hold + 0.01)
        await bridge.run_until_idle()
        counts = await bridge.store.counts()
    assert channel.kinds() == ["message"] * 3 and channel.texts() == PARTS
    sends = [at for _, _, at in channel.log]
    assert sends[0] >= start + HOLDS[0]
    assert counts["deliveries"] == {"done": 9}  # the indicators finished without a send


@pytest.mark.parametrize("notes", [True, False])
async def test_a_note_is_sent_only_where_the_channel_keeps_notes(
    tmp_path: Path, clock: FakeClock, notes: bool
) -> None:
    channel = TypingChannel(clock, notes=notes)
    async with burst_bridge(rig_url(tmp_path), clock, channel=channel) as (bridge, agent, _):
        agent.script.append(AgentOutcome("no_reply"))
        conversation_id = await say(bridge, "c1", "hello")
        await bridge.run_until_idle()
        done = await bridge.store.add_outbound(
            conversation_id,
            text=None,
            author="system",
            deliveries=[DeliverySpec("note", 3, text="Handoff: the customer wants a refund")],
        )
        await bridge.run_until_idle()
        counts = await bridge.store.counts()
    assert done.ok and counts["deliveries"] == {"done": 1}
    assert channel.kinds() == (["note"] if notes else [])


# ----------------------------------------------------------------------------- real sockets


def paragraph_agent() -> Agent:
    agent = Agent("agent1")

    @agent.on_message
    async def answer(turn: Turn) -> str:
        return REPLY

    return agent


async def test_three_paragraphs_arrive_as_three_typed_messages(sqlite_url: str) -> None:
    policies = RoutePolicies(split_replies=True, ms_per_char=20, max_typing_ms=500)
    holds = [0.14, 0.5, 0.28]  # 7, 33 (clamped) and 14 characters
    async with running_stack(
        sqlite_url,
        agent=paragraph_agent(),
        mapping={"policies": policies},
        typing_delay_seconds=30.0,  # the agent is quick: no slow-agent indicator
    ) as stack:
        await stack.say("where is my parcel?")
        assert await stack.wait_replies(3) == PARTS
        await stack.idle()
        actions: list[dict[str, Any]] = [
            a
            for a in stack.mock.actions
            if a["conversation_id"] == 1 and a["kind"] in ("typing_on", "typing_off", "message")
        ]
    assert [a["kind"] for a in actions] == ["typing_on", "message", "typing_off"] * 3
    for i, hold in enumerate(holds):
        on, message, off = actions[3 * i : 3 * i + 3]
        assert message["data"]["content"] == PARTS[i]
        # the pause counts from when the bridge recorded the typing_on as sent, after the
        # mock took it in; the upper bound only says that the part was not forgotten
        assert hold <= message["at"] - on["at"] <= hold + 3.0
        assert off["at"] >= message["at"]
