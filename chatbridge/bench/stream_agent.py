"""A streaming agent for benchmarks: ``python -m chatbridge.bench.stream_agent``.

An SDK ``Agent`` served for the bridge to dial (ws-dial-out, like ``chatbridge mock-agent``)
that answers every turn with ``chunks`` ``agent_streaming`` frames, ``interval`` seconds apart,
then ``agent_complete``. Each chunk carries the wall-clock time it was handed to the socket
(``stamp``), so the widget that receives it can tell how long it took (``read_stamp``): both
processes run on one machine and share ``time.time()``. The first chunk starts with the echo
of the visitor's text (``Echo: b:3:7``), so the joined reply names the message it answers.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import AsyncIterator

from chatbridge.agent import Agent, Turn

CHUNKS = 20
INTERVAL = 0.05
"""Seconds between chunks: 20 chunks a second per reply, an LLM's token pace."""

_STAMP_RE = re.compile(r"⟨(\d+\.\d+)⟩")


def stamp(text: str, at: float | None = None) -> str:
    """``text`` with the send time appended: ``"chunk 3 ⟨1712345678.123456⟩ "``."""
    return f"{text} ⟨{time.time() if at is None else at:.6f}⟩ "


def read_stamp(content: str) -> float | None:
    """The send time a chunk carries, or ``None``."""
    found = _STAMP_RE.search(content)
    return float(found.group(1)) if found else None


def build_stream_agent(
    agent_id: str, *, chunks: int = CHUNKS, interval: float = INTERVAL, delay: float = 0.0
) -> Agent:
    """An agent that streams ``chunks`` stamped pieces per turn (after ``delay`` seconds)."""
    agent = Agent(agent_id)

    async def pieces(content: str) -> AsyncIterator[str]:
        if delay > 0:
            await asyncio.sleep(delay)
        for index in range(chunks):
            if index and interval > 0:
                await asyncio.sleep(interval)
            # stamped as late as possible: the SDK sends it as soon as it is yielded
            yield stamp(f"Echo: {content}" if index == 0 else f"chunk {index}")

    @agent.on_message
    async def answer(turn: Turn) -> AsyncIterator[str]:
        return pieces(turn.content)

    return agent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--agent-id", default="bench-stream-agent")
    parser.add_argument("--chunks", type=int, default=CHUNKS)
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds between chunks")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before the first chunk")
    args = parser.parse_args(argv)
    agent = build_stream_agent(
        args.agent_id, chunks=args.chunks, interval=args.interval, delay=args.delay
    )
    agent.run(serve=(args.host, args.port))


if __name__ == "__main__":  # pragma: no cover
    main()
