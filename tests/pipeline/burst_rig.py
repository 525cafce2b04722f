"""A bridge on a real SQLite store whose workers run in burst mode on a fake clock.

Nothing in it polls: a test moves the clock (``FakeClock.advance``) and calls
``bridge.run_until_idle()``, which claims everything due *now*, runs it and returns. The
agent and the channel are fakes that record what they were asked and fail or hold on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select

from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.errors import RetryableDelivery
from chatbridge.models import InboundMessage, OutboundAction, SendResult
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store import Store
from chatbridge.store import tables as t
from chatbridge.store.records import DeliverySpec
from chatbridge.testing.clock import FakeClock
from chatbridge.transports.base import AgentOutcome, TurnRequest

CHANNEL = "memory"  # not a typing channel: the only deliveries are the ones a test makes
FALLBACK = "Back soon!"
LEASE = 15.0
RETRY_BASE = 1.0
RETRY_MAX = 8.0
RECEIPT_WAIT = 30.0
MAX_ATTEMPTS = 3


class FakeChannel:
    """The channel adapter: records each message sent, fails the next ones from
    ``failures``, holds a send in flight while ``hold`` is unset, answers ``already_sent``
    with ``already``. The next ``lost_answers`` sends land (they are in ``sent``) and then
    fail as a timeout after the request was written does. Typing indicators (every turn ends
    with a ``typing_off``) are only counted."""

    name = CHANNEL

    def __init__(self) -> None:
        self.sent: list[OutboundAction] = []  # sends that succeeded, in order
        self.calls: list[str | None] = []  # every send call's text, failed ones included
        self.failures: list[Exception] = []
        self.hold: asyncio.Event | None = None
        self.in_flight = asyncio.Event()  # a send call has begun
        self.already: bool | None = None
        self.asked: list[str] = []  # idempotency keys ``already_sent`` was asked about
        self.typing: list[str] = []
        self.lost_answers = 0

    async def send(self, action: OutboundAction) -> SendResult:
        if action.kind != "message":
            self.typing.append(action.kind)
            return SendResult(external_id=None)
        self.calls.append(action.text)
        self.in_flight.set()
        if self.failures:
            raise self.failures.pop(0)
        if self.hold is not None:
            await self.hold.wait()
        self.sent.append(action)
        if self.lost_answers:
            self.lost_answers -= 1
            raise RetryableDelivery("timed out", outcome_unknown=True)
        return SendResult(external_id=f"ext-{len(self.sent)}")

    async def already_sent(self, action: OutboundAction) -> bool | None:
        self.asked.append(action.idempotency_key)
        return self.already

    def texts(self) -> list[str | None]:
        return [a.text for a in self.sent]

    async def aclose(self) -> None:
        return None


class FakeAgent:
    """The agent hub's ``run_turn``: answers with an echo, or with the next scripted outcome
    or error; waits for ``hold`` when one is set."""

    def __init__(self) -> None:
        self.requests: list[TurnRequest] = []
        self.script: list[AgentOutcome | Exception] = []
        self.hold: asyncio.Event | None = None
        self.running = asyncio.Event()  # a turn has reached the agent

    async def run_turn(self, request: TurnRequest) -> AgentOutcome:
        self.requests.append(request)
        self.running.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        return AgentOutcome("reply", content=f"Echo: {request.frame['content']}")


class BurstBridge(Bridge):
    """The real bridge, but a wait for a receipt ends when the fake clock moves (or the
    receipt comes), instead of after real seconds: the receipt wait runs on the fake clock."""

    def __init__(self, settings: Settings, *, clock: FakeClock, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.clock = clock
        self.receipt_waits: asyncio.Queue[str] = asyncio.Queue()  # one entry per wait begun

    async def wait_for_receipt(self, idempotency_key: str, timeout: float) -> None:
        self.receipt_waits.put_nowait(idempotency_key)
        receipt = asyncio.ensure_future(super().wait_for_receipt(idempotency_key, 3600))
        tick = asyncio.ensure_future(self.clock.advanced())
        try:
            await asyncio.wait({receipt, tick}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receipt, tick):
                task.cancel()
            await asyncio.gather(receipt, tick, return_exceptions=True)


@asynccontextmanager
async def burst_bridge(
    database_url: str,
    clock: FakeClock,
    *,
    instance_id: str = "me",
    channel: FakeChannel | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[BurstBridge, FakeAgent, FakeChannel]]:
    """A started bridge (workers off: the test runs them in burst mode), its agent, its channel."""
    settings = Settings(
        database_url=database_url,
        instance_id=instance_id,
        inbox_agent_mappings=[
            InboxMapping(
                channel=CHANNEL,
                inbox_id=1,
                agent_config=AgentConfig(agent_id="agent1", transport="ws-dial-in"),
                fallback_text=FALLBACK,
            )
        ],
        lease_seconds=LEASE,
        retry_base_seconds=RETRY_BASE,
        retry_max_seconds=RETRY_MAX,
        receipt_wait_seconds=RECEIPT_WAIT,
        delivery_max_attempts=MAX_ATTEMPTS,
        drain_seconds=0.0,
        **overrides,
    )
    channel = channel or FakeChannel()
    bridge = BurstBridge(settings, clock=clock, channels={CHANNEL: channel})
    agent = FakeAgent()
    bridge.hub.run_turn = agent.run_turn  # type: ignore[method-assign]
    await bridge.start(workers=False)
    try:
        yield bridge, agent, channel
    finally:
        if bridge.started:
            with contextlib.suppress(Exception):
                await bridge.stop()


async def say(bridge: Bridge, conversation: str, text: str) -> str:
    """A customer message accepted as the webhook would; returns the conversation id."""
    accepted = await bridge.accept(
        InboundMessage(
            channel=CHANNEL,
            inbox_id=1,
            channel_key=conversation,
            text=text,
            external_message_id=f"{conversation}:{text}",
        )
    )
    assert accepted.status == "accepted" and accepted.conversation_id, accepted
    return accepted.conversation_id


async def queue_replies(store: Store, conversation_id: str, *texts: str) -> list[int]:
    """Agent messages queued in the outbox of a conversation; returns their delivery ids."""
    ids: list[int] = []
    for text in texts:
        done = await store.add_outbound(
            conversation_id,
            text=text,
            author="agent",
            deliveries=[DeliverySpec("message", MAX_ATTEMPTS, text=text)],
        )
        assert done.ok
        ids += done.delivery_ids
    return ids


async def messages(store: Store) -> list[Any]:
    """Every message delivery row (typing indicators left out), oldest first."""
    dd = t.deliveries
    async with store._tx() as conn:
        query = select(dd).where(dd.c.kind == "message").order_by(dd.c.id)
        return list((await conn.execute(query)).all())


async def delivery(store: Store, delivery_id: int) -> Any:
    async with store._tx() as conn:
        query = select(t.deliveries).where(t.deliveries.c.id == delivery_id)
        return (await conn.execute(query)).one()


async def turns(store: Store) -> list[Any]:
    """Every turn row, oldest first."""
    async with store._tx() as conn:
        return list((await conn.execute(select(t.turns).order_by(t.turns.c.id))).all())


async def renew_held_leases(bridge: Bridge) -> None:
    """One round of the housekeeping's lease renewal, as the running bridge does it."""
    await bridge.renew_held_leases()
