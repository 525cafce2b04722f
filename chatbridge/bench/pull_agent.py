"""An http-pull echo agent for benchmarks: ``python -m chatbridge.bench.pull_agent``.

``pollers`` concurrent long-polls of ``GET /api/agent/turns`` (keep-alive aiohttp
connections); every pulled turn is answered at once (after ``delay`` seconds, the agent's
think time) with ``agent_message`` ``Echo: <content>`` by ``POST
/api/agent/turns/{id}/reply?lease=…``, while the poller that pulled it polls again. A reply
refused with 409 (the lease ran out and the turn was offered again) is dropped: whoever holds
the new lease answers. Connection errors, 5xx and 429 are retried with the same body.

A loop of our own rather than the SDK's pull client, so the figure is the bridge's pull
endpoints and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp

log = logging.getLogger("chatbridge.bench.pull_agent")

WAIT = 25.0
RETRIES = 5


class PullAgent:
    def __init__(
        self,
        bridge: str,
        *,
        agent_id: str,
        token: str,
        pollers: int,
        limit: int,
        delay: float = 0.0,
    ) -> None:
        self.bridge = bridge.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "X-Agent-Id": agent_id}
        self.pollers = pollers
        self.limit = limit
        self.delay = delay
        self.answered = 0
        self.refused = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Poll with ``pollers`` loops until cancelled."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.pollers):
                group.create_task(self._poll(http))

    async def _poll(self, http: aiohttp.ClientSession) -> None:
        url = f"{self.bridge}/api/agent/turns"
        params = {"wait": str(WAIT), "limit": str(self.limit)}
        while True:
            try:
                async with http.get(url, params=params, headers=self.headers) as response:
                    if response.status != 200:
                        log.warning("poll: HTTP %d %s", response.status, await response.text())
                        await asyncio.sleep(0.5)
                        continue
                    body = await response.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("poll failed: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(0.5)
                continue
            for pulled in body.get("turns", []):
                task = asyncio.get_running_loop().create_task(self._answer(http, pulled))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, http: aiohttp.ClientSession, pulled: dict[str, Any]) -> None:
        turn = pulled["turn"]
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        turn_id = turn["message_id"]
        frame = {
            "type": "agent_message",
            "message_id": turn_id,
            "conversation_id": turn.get("conversation_id"),
            "content": f"Echo: {turn.get('content', '')}",
        }
        body = json.dumps(frame).encode()
        url = f"{self.bridge}/api/agent/turns/{turn_id}/reply"
        headers = {**self.headers, "Content-Type": "application/json"}
        params = {"lease": pulled["lease_id"]}
        for attempt in range(1, RETRIES + 1):
            try:
                async with http.post(url, data=body, params=params, headers=headers) as response:
                    status = response.status
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            if status == 200:
                self.answered += 1
                return
            if status in (404, 409):  # answered already, or offered again to someone else
                self.refused += 1
                log.info("reply to %s refused: HTTP %d %s", turn_id, status, text[:200])
                return
            log.warning("reply to %s: HTTP %d %s (attempt %d)", turn_id, status, text, attempt)
            await asyncio.sleep(0.05 * attempt)


async def serve(args: argparse.Namespace) -> None:
    agent = PullAgent(
        args.bridge,
        agent_id=args.agent_id,
        token=args.token,
        pollers=args.pollers,
        limit=args.limit,
        delay=args.delay,
    )
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=WAIT + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await agent.run(http)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bridge", required=True, help="the bridge's base URL (http://…)")
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--pollers", type=int, default=4, help="concurrent long-polls")
    parser.add_argument("--limit", type=int, default=10, help="turns per poll at most")
    parser.add_argument("--delay", type=float, default=0.0, help="think time per turn (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as r:
        r.run(serve(args))


if __name__ == "__main__":  # pragma: no cover
    main()
