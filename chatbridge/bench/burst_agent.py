"""The agent of the ``burst`` benchmark: ``python -m chatbridge.bench.burst_agent``.

An SDK ``Agent`` served for the bridge to dial (ws-dial-out, like ``chatbridge mock-agent``)
that plays the model: every turn it runs is one model call. It writes one JSON line per turn
to ``--log`` — when it began, the turn's conversation, and the customer messages the
``user_message`` carried (``messages``, one by one: their ids and texts) — so the benchmark
counts model calls per customer message and checks that each fragment reached the model in
exactly one turn. It answers ``Echo: <content>`` (every message of the turn, newline-joined),
so the reply names the fragments it answers.

The log is written line-buffered, one ``write`` per turn: the benchmark reads it after the
run, while this process is still up, and sees every turn that began.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import IO, Any

from chatbridge.agent import Agent, Turn


def turn_record(turn: Turn, began_at: float) -> dict[str, Any]:
    """What the log keeps of a turn. A ``user_message`` without ``messages`` (an older bridge)
    counts as one message: its ``content``."""
    messages = [{"id": m.get("id"), "content": m.get("content")} for m in turn.messages] or [
        {"id": None, "content": turn.content}
    ]
    return {
        "at": began_at,
        "turn_id": turn.id,
        "conversation_id": turn.conversation_id,
        "messages": messages,
    }


def build_burst_agent(agent_id: str, log: IO[str], *, delay: float = 0.0) -> Agent:
    """An agent that logs every turn to ``log`` and echoes it after ``delay`` seconds."""
    agent = Agent(agent_id)

    @agent.on_message
    async def answer(turn: Turn) -> str:
        log.write(json.dumps(turn_record(turn, time.time()), separators=(",", ":")) + "\n")
        if delay > 0:
            await asyncio.sleep(delay)
        return f"Echo: {turn.content}"

    return agent


def read_turn_log(path: Path) -> list[dict[str, Any]]:
    """The turns logged at ``path`` (none if the file does not exist yet)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--agent-id", default="bench-burst-agent")
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per turn")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds of thinking per turn")
    args = parser.parse_args(argv)
    with args.log.open("a", encoding="utf-8", buffering=1) as log:
        agent = build_burst_agent(args.agent_id, log, delay=args.delay)
        agent.run(serve=(args.host, args.port))


if __name__ == "__main__":  # pragma: no cover
    main()
