"""A route's agents dialed in to different replicas (real PostgreSQL and Redis): each turn is
claimed by the replica its agent is connected to, also after an agent handoff."""

from __future__ import annotations

from chatbridge.agent import Agent, HandTo, Turn
from chatbridge.config import RouteAgentConfig
from tests.e2e.harness import agent_ws_url, dialing_in, wait_until
from tests.e2e.test_replicas_in_process import (
    AGENT_TOKEN,
    NO_POLL,
    cluster,
    dial_in_config,
    held_by,
)
from tests.multiagent.rig import SPECIALIST_TOKEN, specialist_agent

HANDING = "Let me bring in our billing specialist."


def guide_agent() -> Agent:
    guide = Agent("agent1", reconnect_initial_delay=0.02, reconnect_max_delay=0.1)

    @guide.on_message
    async def answer(turn: Turn) -> str | HandTo:
        if "invoice" in turn.content:
            return HandTo(role="billing", reason="an invoice question", content=HANDING)
        return f"Guide here: {turn.content}"

    return guide


async def test_each_agents_turns_run_on_the_replica_it_dialed(database_url_pg: str) -> None:
    specialist, specialist_turns, _ = specialist_agent()
    agents = [
        RouteAgentConfig(agent_id="agent1", role="guide"),
        RouteAgentConfig(agent_id="specialist", role="billing"),
    ]
    async with cluster(
        database_url_pg,
        dial_in_config(),
        agents=agents,
        agent_tokens={"specialist": SPECIALIST_TOKEN},
        poll_interval=NO_POLL,
    ) as c:
        r0, r1 = c.replicas
        async with (
            dialing_in(guide_agent(), agent_ws_url(r0.url), AGENT_TOKEN),
            dialing_in(specialist, agent_ws_url(r1.url), SPECIALIST_TOKEN),
        ):
            await held_by(c, "agent1", "r0")
            await held_by(c, "specialist", "r1")
            await c.say(1, conv=20, text="hello")
            await wait_until(lambda: len(c.replies(20)) == 1, timeout=20)
            await c.say(1, conv=20, text="my invoice")
            await wait_until(lambda: len(c.replies(20)) == 2, timeout=20)
            await c.say(0, conv=20, text="two plans")
            # no claim loop polls within the hour: the specialist's replica was woken
            await wait_until(lambda: len(c.replies(20)) == 3, timeout=20)
            assert c.replies(20) == ["Guide here: hello", HANDING, "Billing here: two plans"]
            assert len(specialist_turns) == 1
            answered = {
                (r.name, s.agent_id): s.turns_answered
                for r in c.replicas
                for s in r.bridge.hub.status()
                if s.turns_answered
            }
            assert answered == {("r0", "agent1"): 2, ("r1", "specialist"): 1}
