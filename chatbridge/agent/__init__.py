"""The agent SDK: write a Chatbridge agent in about ten lines.

It installs without the bridge (``pip install chatbridge``: websockets, httpx, pydantic) and
imports nothing of it; answering http-webhook turns needs ``pip install 'chatbridge[webhook]'``.

    from chatbridge.agent import Agent, Turn

    agent = Agent("agent1")

    @agent.on_message
    async def answer(turn: Turn) -> str:
        return f"Echo: {turn.content}"

    agent.run(dial_in="ws://127.0.0.1:8000/api/ws/agent", token="secret")  # or serve=(host, port)

Or over plain HTTP, polling the bridge (``chatbridge pull-agent``, ``chatbridge.agent.pull``):

    config = PullConfig(url="http://127.0.0.1:8000", agent_id="agent1", token="secret")
    asyncio.run(run_pull_agent(config, agent))

A handler may also return ``Answer(...)`` (text with choices, a WhatsApp template,
attachments or rich data such as cards), ``Handoff(...)`` (to a human), ``HandTo(...)`` (to
another agent of the route), ``NoReply()`` or ``None``, or be an async generator of text
chunks (a streamed reply). While it works it may show how it is doing: ``await
turn.status("Searching…")``, ``await turn.progress(0.5)``, ``turn.file_*(…)``,
``turn.notice(…)``; ``turn.files`` are the customer's attachments. The SDK speaks protocol
``chatbridge/1`` (revision 1.3, negotiated in ``hello``): acks, heartbeats, reconnects with
backoff, and answers a repeated turn from its cache instead of running the handler twice (a
turn is known by ``agent.identity.turn_key``, so two bridges that both count ``t_1, t_2, …``
never get each other's answers).
"""

from chatbridge.agent.app import Agent, HelloRejected
from chatbridge.agent.pull import PullClient, PullConfig, PullRejected, run_pull_agent
from chatbridge.agent.turn import (
    Answer,
    ChannelContext,
    Event,
    Handoff,
    HandTo,
    NoReply,
    Notice,
    SenderInfo,
    Session,
    Turn,
    TurnError,
    TurnMessage,
)
from chatbridge.protocol import FileRef

__all__ = [
    "Agent",
    "Answer",
    "ChannelContext",
    "Event",
    "FileRef",
    "HandTo",
    "Handoff",
    "HelloRejected",
    "NoReply",
    "Notice",
    "PullClient",
    "PullConfig",
    "PullRejected",
    "SenderInfo",
    "Session",
    "Turn",
    "TurnError",
    "TurnMessage",
    "run_pull_agent",
]
