"""The ``burst`` scenario's stack: the ``chatwoot`` stack with a route that debounces, and an
agent that logs every turn (``chatbridge.bench.burst_agent``).

The customers and the counting are ``chatbridge.bench.burst_runner``'s: a burst is not a
stream of independent messages, so this stack is not run by the generic load generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatbridge.bench.scenarios.base import StackContext
from chatbridge.bench.scenarios.chatwoot import AGENT_ID, ChatwootStack


class BurstStack(ChatwootStack):
    name = "burst"
    description = (
        "customers typing bursts of 3 to 5 fragments 300 ms apart (Chatwoot webhooks) → bridge "
        "(debounce) → agent logging each turn → Chatwoot API"
    )
    supports_replicas = False

    def __init__(self, ctx: StackContext, *, policies: dict[str, Any] | None = None) -> None:
        """``policies``: the route's policies (``None``: the defaults, no debounce)."""
        super().__init__(ctx)
        self.policies = policies
        self.turn_log: Path = ctx.workdir / "turns.jsonl"
        """Where the agent writes one JSON line per turn it runs."""

    def agent_args(self, port: int) -> list[str]:
        args = ["-m", "chatbridge.bench.burst_agent", "--agent-id", AGENT_ID]
        args += ["--host", "127.0.0.1", "--port", str(port), "--log", str(self.turn_log)]
        if self.ctx.think_seconds > 0:
            args += ["--delay", str(self.ctx.think_seconds)]
        return args

    async def start(self) -> None:
        await super().start()
        self.info.settings["agent"] = "python " + " ".join(self.processes["agent"].argv[1:])

    def route_policies(self) -> dict[str, Any] | None:
        return self.policies
