"""Pull turns from a bridge over plain HTTP and answer them with an agent's handler.

For an agent that cannot accept connections and would rather not hold a WebSocket open:
``PullClient`` polls the bridge, runs the same handler an ``Agent`` runs over WebSocket
(``chatbridge.agent.turn``) and posts the answers. ``chatbridge pull-agent`` is its command.

    agent = Agent("agent1")

    @agent.on_message
    async def answer(turn: Turn) -> str:
        return f"Echo: {turn.content}"

    config = PullConfig(url="http://127.0.0.1:8000", api="native", agent_id="agent1",
                        token="secret")
    await PullClient(config, agent).run(stop_event)

Two bridge APIs:

- ``native``: ``GET /api/agent/turns?wait=…&limit=…`` long-polls for turns, each under a lease;
  ``POST /api/agent/turns/{turn}/reply?lease=…`` posts protocol v1 frames: an answer, a
  stream (``agent_streaming`` chunks, then ``agent_complete``), a handoff, no reply or an error.
- ``action``: the web chat plugin's drop-in API (``webchat-compat.md``): ``GET
  /api/v1/?action=inbox&limit=50&offset=0`` every poll interval and ``POST
  /api/v1/?action=outbox`` ``{session_id, response}``. Text only: a stream is sent whole, a
  handoff sends its ``content``, no reply or an error sends nothing.

No message is handled twice. Native: by turn id, so a turn offered again (its lease ran out)
while its handler runs is not started again (the answer goes out under the newest lease), and
one already answered gets the kept answer again instead of a second run. Action: by
``(session_id, id, timestamp)``, as the plugin does.

Turns of different conversations run concurrently (``concurrency`` at most); the action API's
messages of one session run in order. A request that fails with a connection error, a
timeout, 429 or 5xx is tried again after an exponential, jittered delay (never shorter than
the server's ``Retry-After``), up to ``max_retries`` attempts in all; then a poll is skipped
and an answer kept for a later offer. A refusal that retrying cannot fix (bad token or key,
an agent that is not http-pull, a wrong URL) stops the client.

Modules: ``config`` (options: flags, then the plugin's environment names), ``decisions``
(retry delays and dedupe, no I/O), ``handlers`` (any callable as a handler: the signature),
``client`` (``PullClient``, ``run_pull_agent``).

Errors::

    ChatbridgeError
    ├── ConfigError             bad options (``PullConfig.from_sources``, ``load_handler``)
    └── PullError
        ├── PullRejected        the bridge refuses this client; retrying will not help
        └── BridgeUnreachable   a request failed ``max_retries`` times in a row
"""

from chatbridge.agent.pull.client import (
    BridgeUnreachable,
    PullClient,
    PullError,
    PullRejected,
    run_pull_agent,
)
from chatbridge.agent.pull.config import OPTIONS, PullConfig
from chatbridge.agent.pull.decisions import (
    SeenMessages,
    TurnLedger,
    action_message_key,
    backoff_delay,
)
from chatbridge.agent.pull.handlers import adapt_handler, load_handler
from chatbridge.backoff import parse_retry_after

__all__ = [
    "OPTIONS",
    "BridgeUnreachable",
    "PullClient",
    "PullConfig",
    "PullError",
    "PullRejected",
    "SeenMessages",
    "TurnLedger",
    "action_message_key",
    "adapt_handler",
    "backoff_delay",
    "load_handler",
    "parse_retry_after",
    "run_pull_agent",
]
