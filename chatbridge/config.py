"""Settings: one typed object, built once by the CLI (or the caller of ``create_app``).

Most settings live under the ``CHATBRIDGE_`` prefix. The original Chatwoot bridge's own
environment names are accepted as they were (``CHATWOOT_BASE_URL``, ``INBOX_AGENT_MAPPINGS``,
``DEFAULT_RESPONSE_TIMEOUT`` …) so an existing deployment keeps its ``.env``.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatbridge import transport_kinds  # each transport kind's needs, as plain data
from chatbridge.policies.model import DEFAULT_POLICIES, RoutePolicies
from chatbridge.protocol import FEATURES
from chatbridge.transport_kinds import Transport as Transport  # re-exported: hub, API

DEFAULT_FALLBACK_TEXT = (
    "Thanks for your message! We can't answer right now, but a member of our team "
    "will get back to you shortly."
)

ReplyMode = Literal["async", "sync"]
OnFailure = Literal["fallback", "handoff"]


# Printable text: no control characters (a NUL would reach the database or a socket call).
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

MIN_SECRET_CHARS = 16
"""The shortest key or token the bridge accepts for a credential it checks (the admin key,
agent tokens, the web chat action API keys, the Chatwoot webhook secret): 16 random
characters are out of reach of guessing, and a short one is refused at start-up or on save."""
# What a web chat visitor may upload by default: images, PDF, plain text and office documents.
WEBCHAT_UPLOAD_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
# The PHP web chat bridge's default keys: public knowledge, never accepted.
WEAK_WEB_CHAT_KEYS = frozenset({"free0ps", "YOUR_WEB_CHAT_API_KEY"})


def check_secret(name: str, value: str | None) -> str | None:
    """``value`` if it is long enough to be a credential; an empty one means "not set".

    Raises:
        ValueError: naming ``name`` and the minimum length.
    """
    if value is None or value == "":
        return None
    if len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"{name} must be at least {MIN_SECRET_CHARS} characters long")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Settings where an empty value (``NAME=`` in an env file or compose) means "not set".
EMPTY_IS_UNSET = (
    "admin_key",
    "chatwoot_webhook_secret",
    "chatwoot_api_access_token",
    "web_chat_api_key",
    "web_chat_admin_key",
    "openai_api_key",
    "media_signing_key",
    "redis_url",
    "public_url",
    "media_dir",
)
# The drivers the store runs on; the usual URLs without them fail deep in SQLAlchemy.
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_DIALECT_ALIASES = {"postgres": "postgresql"}


def check_database_url(url: str) -> str:
    """``url`` if the store can open it (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).

    Raises:
        ValueError: saying which URL to write instead: the same one with the right driver
            (password hidden) when only the driver is wrong or missing.
    """
    scheme, sep, rest = url.partition("://")
    dialect = scheme.lower().partition("+")[0]
    dialect = _DIALECT_ALIASES.get(dialect, dialect)
    want = _DRIVERS.get(dialect)
    if not sep or want is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}; use sqlite+aiosqlite:///./chatbridge.db"
            " or postgresql+asyncpg://user:password@host:5432/dbname"
        )
    if scheme.lower() == want:
        return url
    fixed = f"{want}://{rest}"
    if dialect == "postgresql":
        from sqlalchemy import make_url

        try:
            fixed = make_url(fixed).render_as_string(hide_password=True)
        except Exception:  # unparsable: shown without the rest rather than a password
            fixed = f"{want}://user:password@host:5432/dbname"
    needs = f"the {want.partition('+')[2]} driver"
    raise ValueError(f"{scheme}:// is not supported, Chatbridge needs {needs}; use {fixed}")


def _check_ws_url(url: str) -> None:
    """A dial-out URL must be one the WebSocket client can actually open; refused here it is
    a clear configuration error, accepted it would be a dial-out loop failing forever."""
    from websockets.uri import parse_uri

    try:
        parse_uri(url)
    except Exception as exc:
        raise ValueError(f"websocket_url is not a WebSocket URI ({exc})") from None


def _check_http_url(url: str, field: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http:// or https:// URL with a host")


_URL = r"^[^\x00-\x20\x7f]*$"
# Agent settings that are secrets: stored (the bridge needs them to sign or call), never shown.
SECRET_OPTIONS = ("secret", "api_key")


class AgentConfig(BaseModel):
    """How to reach one agent (the seed's ``agent_config``).

    ``transport`` picks the way: ``ws-dial-out`` (``websocket_url``), ``ws-dial-in`` and
    ``http-pull`` (the agent comes to us with ``token``), ``http-webhook`` (we POST each turn
    to ``webhook_url``, signed with ``secret``), ``openai`` (the bridge is the agent: it calls
    ``{base_url}/chat/completions`` with ``model``, ``system_prompt`` and the history).
    """

    agent_id: str = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    websocket_url: str | None = Field(default=None, max_length=2000, pattern=_URL)
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    transport: Transport | None = None
    token: str | None = Field(
        default=None,
        min_length=MIN_SECRET_CHARS,
        max_length=1000,
        pattern=_PRINTABLE,
        description="token the agent authenticates with (dial-in, http-pull, late http-webhook "
        f"replies), at least {MIN_SECRET_CHARS} characters; write-only",
    )
    # http-webhook
    webhook_url: str | None = Field(default=None, max_length=2000, pattern=_URL)
    secret: str | None = Field(
        default=None,
        max_length=1000,
        pattern=_PRINTABLE,
        description="http-webhook: HMAC-SHA256 key of X-Chatbridge-Signature; write-only",
    )
    # openai
    base_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=_URL,
        description="openai: the API root, e.g. https://api.openai.com/v1",
    )
    model: str | None = Field(default=None, min_length=1, max_length=200, pattern=_PRINTABLE)
    api_key: str | None = Field(
        default=None,
        max_length=1000,
        pattern=_PRINTABLE,
        description="openai: Bearer key (else CHATBRIDGE_OPENAI_API_KEY); write-only",
    )
    system_prompt: str | None = Field(default=None, max_length=20000, pattern=r"^[^\x00]*$")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_history: int = Field(
        default=20, ge=0, le=200, description="openai: earlier messages sent along"
    )
    features: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="protocol 1.3 features the agent takes ("
        + ", ".join(sorted(FEATURES))
        + "): it is sent the frames of these only. A ws-dial-in agent announces its own in "
        "its hello instead",
    )

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - FEATURES)
        if unknown:
            raise ValueError(f"unknown features {unknown}; known: {sorted(FEATURES)}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _pick_transport(self) -> AgentConfig:
        # What each kind needs is in transport_kinds, not a list of names here.
        kind: str | None = self.transport
        if kind is None:
            kind = transport_kinds.implied_kind(
                {f for f in type(self).model_fields if getattr(self, f)}
            )
            self.transport = kind  # type: ignore[assignment]
        spec = transport_kinds.spec(kind)
        if not all(getattr(self, name) for name in spec.required):
            raise ValueError(f"{spec.kind} needs {' and '.join(spec.required)}")
        url = getattr(self, spec.url_field) if spec.url_field else None
        if url and spec.url_schemes[:1] == ("ws",):
            _check_ws_url(url)
        elif url and spec.url_field is not None:
            _check_http_url(url, spec.url_field)
        return self

    @property
    def url(self) -> str | None:
        """Where the transport reaches the agent (the ``url`` the store keeps)."""
        field = transport_kinds.spec(self.transport).url_field if self.transport else None
        url: str | None = getattr(self, field) if field else self.websocket_url
        return url

    def options(self) -> dict[str, Any]:
        """Transport settings beyond the URL, as the store keeps them (secrets included)."""
        keys = transport_kinds.spec(self.transport).option_keys if self.transport else ()
        out = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        if self.features:  # every kind (TransportContext: AgentTransport.features)
            out["features"] = list(self.features)
        return out


class RouteAgentConfig(BaseModel):
    """One of a route's named agents (protocol 1.3 multi-agent routes; docs/multi-agent.md).

    ``agent_config`` says how to reach it, as the route's own ``agent_config`` does for the
    default agent, and is saved with the route. Without one, the agent keeps the connection
    details it has (another route's ``agent_config`` named it), or else it is a dial-in agent
    (a token in ``CHATBRIDGE_AGENT_TOKENS``), as for any agent the bridge does not know.
    """

    agent_id: str = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    role: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$",
        description="what the agent is for (guide, billing …); customers and agents address "
        "it by this name, compared without regard to case",
    )
    default: bool = Field(
        default=False, description="the agent a conversation starts on: agent_config's agent"
    )
    agent_config: AgentConfig | None = Field(
        default=None, description="how to reach this agent (its agent_id must be the same)"
    )

    @model_validator(mode="after")
    def _same_agent(self) -> RouteAgentConfig:
        if self.agent_config is not None and self.agent_config.agent_id != self.agent_id:
            raise ValueError(
                f"agent_config.agent_id {self.agent_config.agent_id!r} is not {self.agent_id!r}"
            )
        return self


class InboxMapping(BaseModel):
    """One route: which agent answers which inbox (the seed's ``INBOX_AGENT_MAPPINGS`` item)."""

    inbox_id: int = Field(ge=0, le=2**31 - 1)
    channel: str = Field(
        default="chatwoot", min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$"
    )
    agent_config: AgentConfig
    reply_mode: ReplyMode = "async"
    fallback_text: str | None = Field(default=None, max_length=4000, pattern=r"^[^\x00]*$")
    on_failure: OnFailure = "fallback"
    agent_bot_mode: bool = Field(
        default=False,
        description="Chatwoot agent-bot inbox: answer only while the conversation is pending",
    )
    policies: RoutePolicies = Field(
        default=DEFAULT_POLICIES,
        description="debounce, in-flight rule, keywords, expiry, paced replies, business "
        "hours, handoff summaries, ignore lists (README: Policies)",
    )
    agents: list[RouteAgentConfig] = Field(
        default_factory=list,
        max_length=20,
        description="several named agents on one route (docs/multi-agent.md); agent_config's "
        "agent is the default among them (added with role 'default' if not listed)",
    )

    @model_validator(mode="after")
    def _check_agents(self) -> InboxMapping:
        if not self.agents:
            return self
        default_id = self.agent_config.agent_id
        ids: set[str] = set()
        roles: set[str] = set()
        for a in self.agents:
            if a.agent_id in ids:
                raise ValueError(f"agents: agent {a.agent_id!r} is listed twice")
            if a.role.casefold() in roles:
                raise ValueError(f"agents: role {a.role!r} is given to two agents")
            if a.default and a.agent_id != default_id:
                raise ValueError(
                    f"agents: the default agent is agent_config's ({default_id!r}), "
                    f"not {a.agent_id!r}"
                )
            if a.agent_id == default_id and a.agent_config is not None:
                raise ValueError(
                    f"agents: {default_id!r} is configured by the route's agent_config; "
                    "leave its agent_config out here"
                )
            ids.add(a.agent_id)
            roles.add(a.role.casefold())
        if default_id not in ids:
            if "default" in roles:
                raise ValueError(
                    f"agents: agent_config's agent {default_id!r} is not listed, and the "
                    "role 'default' it would get is taken"
                )
            self.agents = [RouteAgentConfig(agent_id=default_id, role="default"), *self.agents]
        self.agents = [
            a.model_copy(update={"default": a.agent_id == default_id}) for a in self.agents
        ]
        return self


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Settings(BaseSettings):
    """Every knob of the bridge. See the README for the full table."""

    model_config = SettingsConfigDict(
        env_prefix="CHATBRIDGE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- server -----------------------------------------------------------------------
    host: str = Field(
        default="127.0.0.1",
        description="the address `chatbridge serve` listens on (`serve --host`)",
    )
    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        description="the port `chatbridge serve` listens on (`serve --port`)",
    )
    public_url: str | None = Field(
        default=None,
        description="the bridge's address as agents see it: the reply_url of http-webhook turns "
        "and the base of signed media URLs; unset: http://<host>:<port>",
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///./chatbridge.db",
        description="SQLAlchemy URL of the store: sqlite+aiosqlite:///path.db or "
        "postgresql+asyncpg://user@host/db",
    )
    auto_migrate: bool = Field(
        default=True,
        description="bring the database schema up to date at start-up; false: run `chatbridge "
        "migrate` yourself before starting",
    )
    admin_key: str | None = Field(
        default=None,
        description="key of the management API and the console (at least 16 characters); unset: "
        "only direct local clients (loopback, no proxy headers) are let in",
    )
    instance_id: str = Field(
        default_factory=_default_instance_id,
        description="this process's name in leases; set a stable one so a restarted process takes "
        "its own leases back at once (default: host, pid and a random suffix)",
    )
    log_level: str = Field(
        default="INFO", description="the lowest level logged: DEBUG, INFO, WARNING, ERROR"
    )
    access_log: bool = Field(
        default=False,
        description="log one line per HTTP request (`serve --access-log`); off: only errors",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: readable lines for a terminal; json: one JSON object per line",
    )
    tracing: Literal["off", "console", "otlp"] = Field(
        default="off",
        description="OpenTelemetry traces, one per customer message (docs/tracing.md): otlp "
        "sends them to OTEL_EXPORTER_OTLP_ENDPOINT, console prints them; needs the tracing "
        "extra",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="request bodies larger than this are refused with 413",
    )
    gc_freeze: bool = Field(
        default=True,
        description="serve and demo: freeze long-lived objects out of the garbage collector's "
        "full collections once warm (chatbridge/gc_policy.py); false: CPython's default",
    )
    # --- the server's edge (``chatbridge serve``; see docs/deployment.md) -------------------
    # Behind a reverse proxy: trust X-Forwarded-For / -Proto only from these addresses.
    proxy_headers: bool = Field(
        default=False,
        description="behind a reverse proxy: trust X-Forwarded-For / X-Forwarded-Proto from "
        "forwarded_allow_ips (`serve --proxy-headers`)",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        max_length=2000,
        description="comma-separated addresses of the proxies whose X-Forwarded-* headers are "
        "trusted",
    )
    # Refuse to serve on a non-loopback address while a channel's webhooks are unauthenticated.
    allow_unsigned_webhooks: bool = Field(
        default=False,
        description="let `serve` start on a non-loopback address while a channel's webhooks are "
        "unauthenticated (refused otherwise)",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        le=16 * 1024 * 1024,
        description="request heads larger than this are refused with 431",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="a request head that takes longer to arrive is refused with 408",
    )
    body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="a request body that takes longer to arrive is refused with 408",
    )
    keep_alive_seconds: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="idle keep-alive connections are closed after this many seconds",
    )
    limit_concurrency: int = Field(
        default=2000, ge=1, description="connections past this many are answered 503"
    )
    # Of a body over its limit, this much more is read and dropped so the client gets the 413.
    body_discard_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="of a body over its limit, this much more is read and dropped so the client "
        "receives the 413",
    )
    webchat_max_pending_sockets: int = Field(
        default=64,
        ge=1,
        description="web chat widget sockets that may be setting up at once; more are refused",
    )
    # dial-in agent sockets that have not said hello yet (anyone may open one)
    agent_max_pending_sockets: int = Field(
        default=64,
        ge=1,
        description="dial-in agent sockets that may be open before their hello at once; more are "
        "refused",
    )

    # --- Chatwoot (seed names accepted) ---------------------------------------------------
    chatwoot_base_url: str = Field(
        default="http://127.0.0.1:3000",
        validation_alias=AliasChoices("CHATWOOT_BASE_URL", "CHATBRIDGE_CHATWOOT_BASE_URL"),
        description="Chatwoot's address, where replies are posted",
    )
    chatwoot_api_access_token: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "CHATWOOT_API_ACCESS_TOKEN", "CHATBRIDGE_CHATWOOT_API_ACCESS_TOKEN"
        ),
        description="the Chatwoot bot (or user) token replies are posted with",
    )
    chatwoot_account_id: int = Field(
        default=1,
        validation_alias=AliasChoices("CHATWOOT_ACCOUNT_ID", "CHATBRIDGE_CHATWOOT_ACCOUNT_ID"),
        description="the Chatwoot account used when a webhook payload names none",
    )
    chatwoot_webhook_secret: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "CHATWOOT_WEBHOOK_SECRET", "CHATBRIDGE_CHATWOOT_WEBHOOK_SECRET"
        ),
        description="HMAC secret of Chatwoot's webhooks (at least 16 characters); when set, "
        "unsigned or badly signed webhooks are refused with 401",
    )
    chatwoot_timeout_seconds: float = Field(
        default=10.0,
        description="time limit of one call to Chatwoot's API (a reply, a status change)",
    )
    # Signed deliveries older (or newer) than this are refused; 0 turns the window off.
    chatwoot_signature_max_age_seconds: float = Field(
        default=300.0,
        ge=0,
        description="signed webhooks whose X-Chatwoot-Timestamp is further than this from the "
        "bridge's clock are refused (replays); 0 turns the window off",
    )

    # --- routes and replies (seed names accepted) -----------------------------------------
    inbox_agent_mappings: list[InboxMapping] = Field(
        default_factory=list,
        validation_alias=AliasChoices("INBOX_AGENT_MAPPINGS", "CHATBRIDGE_INBOX_AGENT_MAPPINGS"),
        description="JSON list of routes: which agent answers which inbox, how it is reached, its "
        "reply mode and policies (README: Running it for real)",
    )
    default_response_timeout: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices(
            "DEFAULT_RESPONSE_TIMEOUT", "CHATBRIDGE_DEFAULT_RESPONSE_TIMEOUT"
        ),
        description="seconds an agent may take over a turn, for routes without a timeout of their "
        "own",
    )
    enable_async_responses: bool = Field(
        default=True,
        validation_alias=AliasChoices(
            "ENABLE_ASYNC_RESPONSES", "CHATBRIDGE_ENABLE_ASYNC_RESPONSES"
        ),
        description="false: routes from the environment default to sync replies (the answer in the"
        " webhook's response)",
    )
    max_sync_response_time: float = Field(
        default=25.0,
        gt=0,
        validation_alias=AliasChoices(
            "MAX_SYNC_RESPONSE_TIME", "CHATBRIDGE_MAX_SYNC_RESPONSE_TIME"
        ),
        description="seconds a sync route's webhook call waits for the agent's answer",
    )
    fallback_text: str = Field(
        default=DEFAULT_FALLBACK_TEXT,
        description="sent to the customer when an agent fails and the route has no fallback_text "
        "of its own",
    )

    # --- agents ---------------------------------------------------------------------------
    agent_tokens: dict[str, str] = Field(
        default_factory=dict, description="dial-in tokens: {agent_id: token}"
    )
    heartbeat_interval: float = Field(
        default=20.0,
        gt=0,
        description="seconds between pings on agent WebSockets; an agent silent for longer is "
        "taken for gone",
    )
    ws_max_frame_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="the largest WebSocket frame an agent may send (and the bridge accepts on "
        "dial-out links)",
    )
    reconnect_initial_delay: float = Field(
        default=0.5,
        description="first wait (seconds) before a ws-dial-out link is opened again after it "
        "dropped; doubled each failure",
    )
    reconnect_max_delay: float = Field(
        default=30.0,
        description="the longest wait (seconds) between ws-dial-out reconnection attempts",
    )
    breaker_failure_threshold: int = Field(
        default=5,
        ge=1,
        description="consecutive failures after which an agent is paused (its circuit breaker "
        "opens)",
    )
    breaker_reset_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long a paused agent rests before one turn tries it again",
    )
    # Only under our prefix: a developer's own OPENAI_API_KEY must not go, unasked, to every
    # base_url an openai route names (a local or third-party server).
    openai_api_key: str | None = Field(
        default=None, description="key for openai agents whose config has no api_key of its own"
    )

    # --- workers --------------------------------------------------------------------------
    lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how long a claimed turn or delivery stays locked to its worker; a crashed "
        "process's work is taken over after this",
    )
    poll_interval: float = Field(
        default=0.5,
        gt=0,
        description="seconds between the workers' looks for due work when nothing wakes them",
    )
    turn_concurrency: int = Field(
        default=256, ge=1, description="turns (agent calls) one process runs at once"
    )
    delivery_concurrency: int = Field(
        default=64, ge=1, description="deliveries (sends to channels) one process runs at once"
    )
    delivery_max_attempts: int = Field(
        default=8, ge=1, description="attempts at sending a reply before it becomes a dead letter"
    )
    retry_base_seconds: float = Field(
        default=0.5,
        gt=0,
        description="first wait before a failed delivery is tried again; doubled each attempt",
    )
    retry_max_seconds: float = Field(
        default=60.0, gt=0, description="the longest wait between delivery attempts"
    )
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="at shutdown, how long in-flight turns and deliveries may finish before they "
        "are cancelled",
    )
    receipt_wait_seconds: float = Field(
        # Chatwoot's agent-bot job tries a webhook 3 times, 3 s apart: an echo refused while
        # a bridge restarts can come back up to ~6 s (plus queueing) after the send
        default=10.0,
        ge=0,
        le=600,
        description=(
            "after a crash, how long a delivery whose send had started waits for the channel's"
            " receipt (its echo of our message) before it is sent again"
        ),
    )
    typing_delay_seconds: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description=(
            "how long an agent may think before the channel's typing indicator is shown"
            " (0: as soon as the turn starts); a faster reply goes out without one"
        ),
    )
    store_retry_seconds: float = Field(
        default=600.0,
        ge=0,
        description=(
            "how long a worker keeps retrying to write a result it holds (an agent's answer,"
            " a send's outcome) while the database is unreachable"
        ),
    )

    # --- web chat (widget, native API, the drop-in action API) ------------------------------
    webchat_session_timeout: float = Field(
        default=1800.0, gt=0, description="a session idle this long has expired (seconds)"
    )
    webchat_max_message_chars: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="longer web chat visitor messages are refused with 413",
    )
    webchat_cors_origins: list[str] = Field(
        default_factory=list,
        description="origins (scheme://host[:port]) whose pages may embed the widget and call "
        "the web chat API; empty: only the bridge's own pages; ['*']: any (the demo)",
    )
    # The action API is off unless both keys are set (see ``webchat_compat_enabled``).
    web_chat_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("WEB_CHAT_API_KEY", "CHATBRIDGE_WEB_CHAT_API_KEY"),
        description="the drop-in action API's key for the web chat plugin (16+ characters, not a "
        "published default); the API is off unless both keys are set",
    )
    web_chat_admin_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("WEB_CHAT_ADMIN_KEY", "CHATBRIDGE_WEB_CHAT_ADMIN_KEY"),
        description="the drop-in action API's admin key (16+ characters, different from the API "
        "key)",
    )
    webchat_compat_inbox_id: int = Field(
        default=0, ge=0, description="the web chat inbox the action API's messages go to"
    )
    webchat_compat_agent_id: str = Field(
        default="web_chat",
        min_length=1,
        max_length=200,
        description="the http-pull agent the action API's inbox/outbox act as",
    )
    webchat_compat_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="how long an action API inbox offer is held before the message is offered "
        "again",
    )
    webchat_compat_max_offers: int = Field(
        default=3,
        ge=1,
        description="how many times the action API's inbox offers a message before giving up",
    )
    webchat_mark_on_read: bool = Field(
        default=False,
        description="strict mark-on-read: an action API inbox message is offered once and marked "
        "read at once",
    )
    # visitor uploads (POST /api/webchat/upload, docs/webchat.md): a cap of their own and the
    # declared types a visitor may send (the bytes must also be that type)
    webchat_upload_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="the largest file a visitor may upload"
    )
    webchat_upload_types: list[str] = Field(
        default_factory=lambda: list(WEBCHAT_UPLOAD_TYPES),
        description="JSON list of the types (image/png, or image/* for all images) a visitor "
        "may upload",
    )

    # --- http-pull agents -------------------------------------------------------------------
    pull_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how long an http-pull agent holds a pulled turn before it is offered again",
    )
    pull_max_wait: float = Field(
        default=30.0,
        ge=0,
        description="the longest long-poll (seconds) an http-pull agent may ask for",
    )

    # --- scale-out ---------------------------------------------------------------------------
    # Redis turns on distributed mode (``chatbridge.cluster``): wake-ups, live events, agent
    # presence and leases between replicas, and the shared rate limits.
    redis_url: str | None = Field(
        default=None,
        description="redis://…: distributed mode, several replicas share wake-ups, live events, "
        "agent presence, leases and rate limits; unset: one replica",
    )
    cluster_presence_seconds: float = Field(
        default=10.0,
        ge=1.0,
        le=300.0,
        description="how long an agent's presence (and a replica's heartbeat) lives in Redis "
        "without renewal",
    )
    # Prefix of every Redis key and channel, so deployments can share one Redis (e.g.
    # Chatwoot's). Replicas of one deployment must use the same prefix.
    redis_prefix: str = Field(
        default="chatbridge",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="prefix of every Redis key and channel, so deployments can share one Redis; "
        "the same on every replica",
    )

    # --- each channel's own settings (chatbridge/channels/registry.py) --------------------
    # A channel reads its settings from CHATBRIDGE_<CHANNEL>_* (the http channel's inboxes,
    # every webhook channel's ALLOWED_NETWORKS, ...); these values, by channel name, go on
    # top: {"http": {"inboxes": {...}}} (what a test or a caller of create_app gives).
    # (not in the repr: they may hold secrets)
    channel_settings: dict[str, dict[str, object]] = Field(
        default_factory=dict,
        repr=False,
        description="each channel's settings by channel name, on top of CHATBRIDGE_<CHANNEL>_* "
        "(for callers of create_app and tests)",
    )
    # Each channel's settings once built from those (``registry.channel_settings``).
    _built_channel_settings: dict[str, BaseSettings] = PrivateAttr(default_factory=dict)

    # --- rate limits (limits' string notation, per the key named) -------------------------
    rate_limit_enabled: bool = Field(
        default=True,
        description="false turns the public endpoints' rate limits off (the failed-authentication "
        "limit stays)",
    )
    rate_limit_session_create: str = Field(
        default="30/minute",
        description="web chat sessions created per client address (limits notation: "
        "N/second|minute|hour)",
    )
    rate_limit_messages_ip: str = Field(
        default="120/minute", description="web chat messages per client address"
    )
    rate_limit_messages_session: str = Field(
        default="30/minute", description="web chat messages per session"
    )
    rate_limit_history: str = Field(
        default="240/minute", description="web chat history reads and long-polls per client address"
    )
    rate_limit_agent: str = Field(
        default="1200/minute", description="agent pulls (and failed authentications) per agent key"
    )
    rate_limit_agent_replies: str = Field(
        default="60000/minute", description="agent replies and streamed chunks per agent"
    )
    # Failed authentications per client address and credential (admin key, dial-in and pull
    # tokens, action API keys); over it: 429. Independent of rate_limit_enabled; "" turns it off.
    auth_failure_limit: str = Field(
        default="10/minute",
        description="failed authentications per client address and credential (admin key, console "
        'login, agent tokens, action API keys); past it 429; "" turns it off',
    )

    # --- the media store (chatbridge/media; docs/whatsapp/media.md) ----------------------
    # Folder of stored media (inbound downloads, uploads); replicas must share it. Unset: a
    # "media" folder beside the SQLite database, or ./media on PostgreSQL.
    media_dir: str | None = Field(
        default=None,
        description="folder of stored media (downloads, uploads); replicas must share it; unset: a"
        " media folder beside the SQLite database, or ./media on PostgreSQL",
    )
    media_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="the largest stored media file"
    )
    # HMAC key of the signed media URLs (at least 16 characters); unset: a random key kept in
    # the media folder (".signing-key"), the same for every replica sharing the folder.
    media_signing_key: str | None = Field(
        default=None,
        min_length=16,
        repr=False,
        description="HMAC key of signed media URLs (16+ characters); unset: a random key kept in "
        "the media folder",
    )
    media_url_ttl_seconds: int = Field(
        default=900, ge=10, le=7 * 24 * 3600, description="lifetime of a signed media URL"
    )
    # How long a message's turn waits for its media (download, voice note transcript).
    media_wait_seconds: float = Field(
        default=20.0,
        ge=0.0,
        le=600.0,
        description="how long a message's turn waits for its media (a download, a voice note's "
        "transcript)",
    )

    @field_validator("inbox_agent_mappings", mode="before")
    @classmethod
    def _empty_mappings(cls, value: Any) -> Any:
        if value in ("", None):
            return []
        return value

    @field_validator(*EMPTY_IS_UNSET, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # ``CHATWOOT_WEBHOOK_SECRET=`` in an env file means "no secret", not a secret of ""
        # (the CLI warns about it: ``config_errors.empty_settings``)
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        return check_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and value.partition("://")[0].lower() not in REDIS_SCHEMES:
            raise ValueError(
                "not a Redis URL; use redis://host:6379/0 (rediss:// with TLS, unix:///path)"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown level {value!r}; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator(
        "admin_key", "chatwoot_webhook_secret", "web_chat_api_key", "web_chat_admin_key"
    )
    @classmethod
    def _long_enough(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_secret(info.field_name or "key", value)

    @field_validator("web_chat_api_key", "web_chat_admin_key")
    @classmethod
    def _not_a_php_default(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value in WEAK_WEB_CHAT_KEYS:
            raise ValueError(f"{info.field_name} is a published default key; choose your own")
        return value

    @field_validator("webchat_upload_types")
    @classmethod
    def _media_types(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            mime = item.strip().lower()
            major, slash, minor = mime.partition("/")
            if not slash or not major or "*" in major or not (minor == "*" or "*" not in minor):
                raise ValueError(f"not a media type like image/png or image/*: {item!r}")
            out.append(mime)
        return out

    @field_validator("agent_tokens")
    @classmethod
    def _tokens_long_enough(cls, value: dict[str, str]) -> dict[str, str]:
        for agent_id, token in value.items():
            check_secret(f"agent_tokens[{agent_id}]", token or "-")
        return value

    @field_validator("auth_failure_limit")
    @classmethod
    def _limit_notation(cls, value: str) -> str:
        if value:
            from limits import parse

            try:
                parse(value)
            except ValueError:
                raise ValueError(f"not a limit like '10/minute': {value!r}") from None
        return value

    @model_validator(mode="after")
    def _distinct_web_chat_keys(self) -> Settings:
        if self.web_chat_api_key is not None and self.web_chat_api_key == self.web_chat_admin_key:
            raise ValueError("web_chat_api_key and web_chat_admin_key must differ")
        return self

    @property
    def built_channel_settings(self) -> dict[str, BaseSettings]:
        """Each channel's own settings, by name, as ``registry.channel_settings`` built them
        (kept here so they are built once per ``Settings``)."""
        return self._built_channel_settings

    @property
    def webchat_compat_enabled(self) -> bool:
        """The drop-in action API (``/api/v1/?action=…``) answers only when both of its keys
        are set; otherwise every action is refused and nothing is read or written."""
        return bool(self.web_chat_api_key and self.web_chat_admin_key)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
