"""Options of a pull client: flags first, then the web chat plugin's environment names.

``PullConfig.from_sources`` validates everything at once and names the flag or variable at
fault ("WEB_CHAT_POLL_INTERVAL must be a number > 0, got 'abc'").
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from chatbridge.errors import ConfigError

Api = Literal["native", "action"]
DEFAULT_URL = "http://127.0.0.1:8000"

# field: (flag, environment variable). A flag wins over the environment.
OPTIONS: dict[str, tuple[str, str | None]] = {
    "api": ("--api", "CHATBRIDGE_PULL_API"),
    "url": ("--url", "WEB_CHAT_API_URL"),
    "api_key": ("--api-key", "WEB_CHAT_API_KEY"),
    "agent_id": ("--agent-id", "CHATBRIDGE_AGENT_ID"),
    "token": ("--token", "CHATBRIDGE_AGENT_TOKEN"),
    "poll_interval": ("--poll-interval", "WEB_CHAT_POLL_INTERVAL"),
    "max_retries": ("--max-retries", "WEB_CHAT_MAX_RETRIES"),
    "retry_delay": ("--retry-delay", "WEB_CHAT_RETRY_DELAY"),
    "timeout": ("--timeout", "WEB_CHAT_TIMEOUT"),
    "wait": ("--wait", None),
    "concurrency": ("--concurrency", None),
    "drain_seconds": ("--drain-seconds", None),
}


@dataclass(frozen=True, slots=True)
class PullConfig:
    """How a pull client reaches its bridge. Build it from flags and the environment with
    ``from_sources`` (which validates); direct construction trusts its arguments.

    Attributes:
        url: the bridge's base URL (``WEB_CHAT_API_URL``).
        api: ``native`` (agent id + token) or ``action`` (``WEB_CHAT_API_KEY``).
        agent_id: native: the pull agent's id, as its route names it.
        token: native: the agent's token (``CHATBRIDGE_AGENT_TOKENS`` or its route's).
        api_key: action: the action API's key, the bridge's ``WEB_CHAT_API_KEY``.
        poll_interval: seconds between polls that brought nothing (native: between empty
            long-polls that returned early) (``WEB_CHAT_POLL_INTERVAL``).
        max_retries: attempts of one request before giving up on it (``WEB_CHAT_MAX_RETRIES``).
        retry_delay: the first retry's delay; it doubles per attempt (``WEB_CHAT_RETRY_DELAY``).
        timeout: seconds per request, on top of the long-poll wait (``WEB_CHAT_TIMEOUT``).
        wait: native long-poll wait (the bridge caps it with ``pull_max_wait``).
        concurrency: turns handled at once.
        drain_seconds: on stop, how long running turns may still finish.
    """

    url: str = DEFAULT_URL
    api: Api = "native"
    agent_id: str | None = None
    token: str | None = None
    api_key: str | None = None
    poll_interval: float = 5.0
    max_retries: int = 3
    retry_delay: float = 10.0
    timeout: float = 30.0
    wait: float = 25.0
    concurrency: int = 10
    drain_seconds: float = 10.0

    @classmethod
    def from_sources(
        cls, env: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None
    ) -> PullConfig:
        """Read every option from ``flags`` (CLI values, by field name) or else ``env``.

        Raises:
            ConfigError: one line per bad or missing value, naming the flag or variable.
        """
        r = _Reader(os.environ if env is None else env, flags or {})
        url = r.url("url", DEFAULT_URL)
        api_name, api_raw = r.get("api")
        agent_id, token, api_key = r.text("agent_id"), r.text("token"), r.text("api_key")
        poll_interval = r.number("poll_interval", 5.0, low=0.0)
        max_retries = int(r.number("max_retries", 3, low=1, integer=True))
        retry_delay = r.number("retry_delay", 10.0, low=0.0)
        timeout = r.number("timeout", 30.0, low=0.0)
        wait = r.number("wait", 25.0, low=0.0, high=60.0, low_ok=True)
        concurrency = int(r.number("concurrency", 10, low=1, integer=True))
        drain_seconds = r.number("drain_seconds", 10.0, low=0.0, low_ok=True)
        api = (api_raw or "auto").lower()
        if api == "auto" and not (agent_id or token or api_key):
            r.errors.append(
                "give --agent-id and --token (CHATBRIDGE_AGENT_ID, CHATBRIDGE_AGENT_TOKEN) for "
                "the native pull API, or --api-key (WEB_CHAT_API_KEY) for the action API"
            )
        elif api == "auto":
            api = "native" if agent_id or token else "action"
        if api == "native":
            if not agent_id:
                r.errors.append("the native pull API needs --agent-id or CHATBRIDGE_AGENT_ID")
            if not token:
                r.errors.append("the native pull API needs --token or CHATBRIDGE_AGENT_TOKEN")
        elif api == "action":
            if not api_key:
                r.errors.append("the action API needs --api-key or WEB_CHAT_API_KEY")
        elif api != "auto":
            r.errors.append(f"{api_name} must be native, action or auto, got {api_raw!r}")
        if r.errors or api not in ("native", "action"):
            raise ConfigError("\n".join(r.errors))
        return cls(
            url=url,
            api="native" if api == "native" else "action",
            agent_id=agent_id,
            token=token,
            api_key=api_key,
            poll_interval=poll_interval,
            max_retries=max_retries,
            retry_delay=retry_delay,
            timeout=timeout,
            wait=wait,
            concurrency=concurrency,
            drain_seconds=drain_seconds,
        )


class _Reader:
    """Reads options (flag first, then environment) and collects every error."""

    def __init__(self, env: Mapping[str, str], flags: Mapping[str, str | None]) -> None:
        self.env = env
        self.flags = flags
        self.errors: list[str] = []

    def get(self, field: str) -> tuple[str, str | None]:
        """(the name to blame, the raw value); an empty environment value counts as unset."""
        flag, var = OPTIONS[field]
        value = self.flags.get(field)
        if value is not None:
            return flag, value.strip()
        if var is not None and self.env.get(var, "").strip():
            return var, self.env[var].strip()
        return flag if var is None else var, None

    def text(self, field: str) -> str | None:
        return self.get(field)[1] or None

    def url(self, field: str, default: str) -> str:
        name, raw = self.get(field)
        if raw is None:
            return default
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.errors.append(f"{name} must be an http:// or https:// URL, got {raw!r}")
        return raw.rstrip("/")  # the plugin would send //api/v1/ for a trailing slash

    def number(
        self,
        field: str,
        default: float,
        *,
        low: float,
        high: float | None = None,
        low_ok: bool = False,
        integer: bool = False,
    ) -> float:
        name, raw = self.get(field)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value >= low if low_ok or integer else value > low)
        if ok and high is not None:
            ok = value <= high
        if not ok:
            kind = "a whole number" if integer else "a number"
            bound = (
                f"between {low:g} and {high:g}"
                if high is not None
                else f"{'>=' if low_ok or integer else '>'} {low:g}"
            )
            self.errors.append(f"{name} must be {kind} {bound}, got {raw!r}")
            return default
        return value
