"""A mock AI agent built on the agent SDK, for tests, ``chatbridge demo`` and trying a setup.

Behaviours (``build_mock_agent(behaviour)``):

- ``echo``: answers ``Echo: <content>``.
- ``test``: canned answers to a few keywords (hello/hi, help, order, price, bye), otherwise
  ``I received your message: <content>``.
- ``delay``: waits ``delay`` seconds, then echoes (to try timeouts and typing indicators).
- ``error``: answers ``error_message`` (code ``mock_error``).
- ``stream``: streams ``Echo: <content>`` word by word (or in ``chunks`` pieces).
- ``handoff``: asks for a human, with a short message to the customer first.
- ``auto``: picks by the message: "human" → handoff, "stream" → stream, "error" → error,
  "slow" → delay, anything else → echo. This is what the demo runs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from chatbridge.agent import Agent, Handoff, Turn, TurnError

BEHAVIOURS = ("echo", "test", "delay", "error", "stream", "handoff", "auto")

HANDOFF_REASON = "customer asked for a human"
HANDOFF_TEXT = "Let me connect you with a human agent."

_KEYWORD_ANSWERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("hello", "hi"), "Hello! I'm the Chatbridge test agent. How can I help you today?"),
    (("help",), "I can answer questions about orders and prices. Just ask!"),
    (("order",), "I can look up your order. What is your order number?"),
    (("price",), "Our plans start at $10 per month. Want the details?"),
    (("bye",), "Goodbye! Thanks for chatting with us."),
)


def echo_text(content: str) -> str:
    """The echo behaviour's answer."""
    return f"Echo: {content}"


def keyword_answer(content: str) -> str:
    """The ``test`` behaviour's answer: the first keyword found, as a whole word, wins."""
    words = set(re.findall(r"[a-z]+", content.lower()))
    for keywords, answer in _KEYWORD_ANSWERS:
        if words.intersection(keywords):
            return answer
    return f"I received your message: {content}"


def auto_behaviour(content: str) -> str:
    """Which behaviour ``auto`` uses for this message."""
    text = content.lower()
    for word, behaviour in (
        ("human", "handoff"), ("stream", "stream"), ("error", "error"), ("slow", "delay"),
    ):  # fmt: skip
        if word in text:
            return behaviour
    return "echo"


def split_chunks(text: str, chunks: int | None) -> list[str]:
    """Cut ``text`` into stream chunks that join back to it exactly.

    Word by word (each word keeps the spaces after it) by default; ``chunks`` pieces of about
    the same length when given.
    """
    if not text:
        return []
    if chunks is None:
        return re.findall(r"\S+\s*|\s+", text)
    count = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def build_mock_agent(
    behaviour: str = "echo",
    *,
    agent_id: str = "mock-agent",
    delay: float = 1.0,
    chunks: int | None = None,
) -> Agent:
    """A ready SDK ``Agent`` answering with one of ``BEHAVIOURS``.

    Raises:
        ValueError: unknown behaviour.
    """
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown mock behaviour {behaviour!r}; choose from {BEHAVIOURS}")
    agent = Agent(agent_id)

    async def stream(text: str) -> AsyncIterator[str]:
        for piece in split_chunks(text, chunks):
            yield piece

    @agent.on_message
    async def answer(turn: Turn) -> str | Handoff | AsyncIterator[str]:
        chosen = auto_behaviour(turn.content) if behaviour == "auto" else behaviour
        match chosen:
            case "test":
                return keyword_answer(turn.content)
            case "delay":
                await asyncio.sleep(delay)
                return echo_text(turn.content)
            case "error":
                raise TurnError("mock_error", "the mock agent was asked to fail")
            case "stream":
                return stream(echo_text(turn.content))
            case "handoff":
                return Handoff(reason=HANDOFF_REASON, content=HANDOFF_TEXT)
            case _:
                return echo_text(turn.content)

    return agent


async def run_mock_agent(
    behaviour: str = "auto",
    *,
    agent_id: str = "mock-agent",
    serve_host: str | None = None,
    serve_port: int | None = None,
    dial_in_url: str | None = None,
    token: str | None = None,
    delay: float = 1.0,
    webhook_port: int | None = None,
    webhook_secret: str | None = None,
    webhook_host: str = "127.0.0.1",
) -> None:
    """Run a mock agent until cancelled: serve for a dialing bridge, dial in, answer
    http-webhook POSTs on ``webhook_port`` (at ``/``), or several of these.

    Used by ``chatbridge mock-agent``. Serving defaults to 127.0.0.1:8765 when only one of
    host/port is given.

    Raises:
        ValueError: neither serving nor dialing in was asked for, or dial-in without a token.
    """
    serving = serve_host is not None or serve_port is not None
    if not serving and dial_in_url is None and webhook_port is None:
        raise ValueError("give serve_host/serve_port, dial_in_url or webhook_port")
    if dial_in_url is not None and not token:
        raise ValueError("dial_in_url needs a token")
    agent = build_mock_agent(behaviour, agent_id=agent_id, delay=delay)
    async with asyncio.TaskGroup() as group:
        if serving:
            group.create_task(agent.serve(serve_host or "127.0.0.1", serve_port or 8765))
        if dial_in_url is not None and token:
            group.create_task(agent.dial_in(dial_in_url, token))
        if webhook_port is not None:
            group.create_task(
                agent.serve_webhook(webhook_host, webhook_port, secret=webhook_secret)
            )
