"""``MockAgentTransport``: an agent that is a plain function, for tests and the demo.

As httpx's ``MockTransport`` wraps a request handler, this wraps a turn handler:

    async def answer(req: TurnRequest) -> str:
        return f"Echo: {req.frame['content']}"

    hub.install("agent1", MockAgentTransport(answer))

The handler (sync or async) gets the ``TurnRequest`` and returns an ``AgentOutcome``, a
string (a reply with that text) or None (``no_reply``). An exception it raises that is an
``AgentError`` (``AgentUnavailable``, ``AgentTimeout``) reaches the caller as it is; any other
ends the turn as an ``error`` outcome (``mock_error``). A handler still running at the turn's
deadline ends it as ``AgentTimeout``; one withdrawn by ``cancel_turn`` is cancelled and ends as
``TurnCancelled``. Events are kept in ``events``. It counts as connected
until closed, except after a turn the handler ended with ``AgentUnavailable``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from chatbridge.errors import AgentError, AgentTimeout, AgentUnavailable
from chatbridge.models import JsonObject
from chatbridge.transports.base import AgentOutcome, Capabilities, LocalTurns, TurnRequest
from chatbridge.transports.registry import TransportSpec

TurnHandler = Callable[
    [TurnRequest], Awaitable[AgentOutcome | str | None] | AgentOutcome | str | None
]


class MockAgentTransport(LocalTurns):
    """Runs each turn by calling ``handler`` (see the module docstring)."""

    spec = TransportSpec("mock", "chatbridge.transports.mock:MockAgentTransport")
    capabilities = Capabilities(live=False)  # a function returns its answer, nothing before

    def __init__(self, handler: TurnHandler, agent_id: str = "mock-agent") -> None:
        super().__init__(agent_id)
        self.handler = handler
        self.events: list[JsonObject] = []
        self._unavailable = False  # the last turn found the "agent" out of reach

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        async with self.running_turn(req.turn_key):
            started = time.monotonic()
            try:
                async with asyncio.timeout_at(_loop_time(req.deadline)):
                    answer = self.handler(req)
                    if inspect.isawaitable(answer):
                        answer = await answer
            except TimeoutError:
                raise AgentTimeout(f"agent {req.agent_id!r} did not answer in time") from None
            except AgentUnavailable:
                self._unavailable = True
                raise
            except AgentError:
                raise
            except Exception as exc:
                answer = AgentOutcome("error", error_code="mock_error", error_details=str(exc))
        self._unavailable = False
        self.stats.record(time.monotonic() - started)
        self.stats.last_seen = time.time()
        if isinstance(answer, AgentOutcome):
            return answer
        if answer is None:
            return AgentOutcome("no_reply")
        return AgentOutcome("reply", str(answer))

    async def send_event(self, frame: JsonObject) -> bool:
        if self.closed:
            return False
        self.events.append(frame)
        return True

    @property
    def connected(self) -> bool:
        """Open, and the last turn did not find the agent out of reach."""
        return not self.closed and not self._unavailable


def _loop_time(deadline: float) -> float:
    """``deadline`` (``time.time()``) on the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.time())
