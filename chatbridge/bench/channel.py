"""The mock Chatwoot as a benchmark runs it: ``python -m chatbridge.bench.channel``.

The same app as ``chatbridge mock-chatwoot`` (``create_mock_chatwoot``), with three things a
benchmark needs:

* the benchmark's conversations exist from the start (the API answers 404 for a conversation
  it does not know, and the load generator sends the webhooks itself, without the mock);
* ``GET /bench/replies?after=N&wait=S`` returns the replies from the N-th on as compact
  ``[conversation_id, content, received_at]`` rows (waiting up to S seconds for one when there
  is none yet), so the benchmark follows ~100k replies as they arrive without re-reading the
  whole list;
* no access log, the API token checked as Chatwoot would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI

from chatbridge.testing.chatwoot_payloads import MockConversation
from chatbridge.testing.chatwoot_state import MockChatwoot
from chatbridge.testing.mock_chatwoot import create_mock_chatwoot

INBOX_ID = 1


def create_bench_channel(conversations: int, *, api_token: str | None) -> FastAPI:
    """The mock Chatwoot app with conversations ``1..conversations`` in inbox ``INBOX_ID``."""
    app = create_mock_chatwoot(api_token=api_token, emit_status_webhooks=False)
    mock: MockChatwoot = app.state.mock
    for display_id in range(1, conversations + 1):
        mock.conversation(display_id, inbox_id=INBOX_ID)

    # Wake a waiting ``/bench/replies`` as soon as a reply is recorded.
    arrived = asyncio.Event()
    record = mock.post_message

    def post_message(conv: MockConversation, body: dict[str, Any]) -> dict[str, Any]:
        result = record(conv, body)
        arrived.set()
        return result

    mock.post_message = post_message  # type: ignore[method-assign]

    @app.get("/bench/replies", tags=["bench"])
    async def replies(after: int = 0, wait: float = 0.0) -> list[list[Any]]:
        """Replies from the ``after``-th on; with ``wait``, hold up to that long for one."""
        after = max(after, 0)
        if wait > 0 and len(mock.received_messages) <= after:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), min(wait, 10.0))
        return [
            [m["conversation_id"], m["content"], m["received_at"]]
            for m in mock.received_messages[after:]
        ]

    @app.get("/bench/stats", tags=["bench"])
    async def stats() -> dict[str, int]:
        return {"received": len(mock.received_messages), "actions": len(mock.actions)}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conversations", type=int, default=1)
    parser.add_argument("--token", default=None, help="required api_access_token")
    args = parser.parse_args(argv)
    app = create_bench_channel(args.conversations, api_token=args.token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":  # pragma: no cover
    main()
