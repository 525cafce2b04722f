"""The transport kinds an agent may use, and what each needs, as plain data.

Every transport kind maps to a ``TransportSpec``: the ``"module:attr"`` of its
``AgentTransport`` class (imported by ``transports.registry.load()`` only when an agent uses
that kind, as uvicorn does with its protocol names, so the openai transport's code loads only
for an openai agent), and the facts the rest of the bridge asks about a kind instead of
comparing names:

- which ``AgentConfig`` field holds its URL, which fields it requires, which imply it, and
  which settings it keeps beside the URL (``chatbridge.config``, the management API);
- where its turns may run with several replicas (``placement``: ``linked`` needs a live link
  on the replica, ``leased`` runs on the one replica holding the agent's lease, ``anywhere``);
- whether the agent fetches its turns (``GET /api/agent/turns``) and whether it may post
  replies later (``POST /api/agent/turns/{id}/reply``).

It sits on the settings floor and imports nothing of the bridge but ``errors``: ``config``
validates an agent's settings with it, ``transports.registry`` loads the classes it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatbridge.errors import ConfigError

Transport = Literal["ws-dial-out", "ws-dial-in", "http-pull", "http-webhook", "openai"]
"""The kinds ``AgentConfig.transport`` accepts: the keys of ``SPECS``, in order (a test holds
them equal; the type checker needs the names spelled out)."""

Placement = Literal["linked", "leased", "anywhere"]


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """What the bridge knows about one transport kind before importing it."""

    kind: str
    target: str
    """``"module:attr"`` of the ``AgentTransport`` class."""
    placement: Placement = "anywhere"
    url_field: str | None = None
    """The ``AgentConfig`` field that holds the agent's URL; None: the agent comes to us."""
    url_schemes: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    implied_by: tuple[str, ...] = ()
    """Config fields whose presence picks this kind when ``transport`` is not given."""
    option_keys: tuple[str, ...] = ()
    """Config fields kept beside the URL (the store's ``options``), secrets included."""
    polled: bool = False
    """The agent fetches its turns with ``GET /api/agent/turns``."""
    posts_replies: bool = False
    """The agent may answer on ``POST /api/agent/turns/{id}/reply``."""

    def check_url(self, agent_id: str, url: str | None) -> None:
        """Refuse a URL this transport cannot use.

        Raises:
            ConfigError: the transport needs a URL of another scheme (or one at all).
        """
        if not self.url_schemes:
            return
        if not (url and url.startswith(tuple(f"{s}://" for s in self.url_schemes))):
            schemes = " or ".join(f"{s}://" for s in self.url_schemes)
            raise ConfigError(f"{self.kind} agent {agent_id!r} needs a {schemes} url")


SPECS: dict[str, TransportSpec] = {
    spec.kind: spec
    for spec in (
        TransportSpec(
            "ws-dial-out",
            "chatbridge.transports.dial_out:DialOutTransport",
            placement="linked",
            url_field="websocket_url",
            url_schemes=("ws", "wss"),
            required=("websocket_url",),
            implied_by=("websocket_url",),
        ),
        TransportSpec(
            "ws-dial-in", "chatbridge.transports.dial_in:DialInTransport", placement="linked"
        ),
        TransportSpec(
            "http-pull",
            "chatbridge.transports.pull:PullTransport",
            placement="leased",
            polled=True,
            posts_replies=True,
        ),
        TransportSpec(
            "http-webhook",
            "chatbridge.transports.webhook:WebhookTransport",
            url_field="webhook_url",
            url_schemes=("http", "https"),
            required=("webhook_url",),
            implied_by=("webhook_url",),
            option_keys=("secret",),
            posts_replies=True,
        ),
        TransportSpec(
            "openai",
            "chatbridge.transports.openai:OpenAITransport",
            url_field="base_url",
            url_schemes=("http", "https"),
            required=("base_url", "model"),
            implied_by=("base_url", "model"),
            option_keys=(
                "model",
                "api_key",
                "system_prompt",
                "temperature",
                "max_tokens",
                "max_history",
            ),
        ),
    )
}
"""Every transport kind (the order of ``Transport``); ``AgentConfig`` picks the first
whose ``implied_by`` fields it has when it names none (``http-pull`` must be named)."""
DEFAULT_KIND = "ws-dial-in"
"""The kind of an agent whose config names no transport and implies none."""


def spec(kind: str) -> TransportSpec:
    """The spec of ``kind``.

    Raises:
        ConfigError: no such transport.
    """
    found = SPECS.get(kind)
    if found is None:
        raise ConfigError(f"unknown agent transport {kind!r}; choose from {', '.join(SPECS)}")
    return found


def implied_kind(given: set[str]) -> str:
    """The kind a config with these (non-empty) fields picks when it names none."""
    for s in SPECS.values():
        if given.intersection(s.implied_by):
            return s.kind
    return DEFAULT_KIND
