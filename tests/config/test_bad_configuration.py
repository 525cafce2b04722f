"""A mistake in the configuration is told in one line on stderr, and the command exits 2.

Each test runs the real command line (``python -m chatbridge``) in a fresh directory with a
bare environment plus the one mistake, as an operator would meet it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

MAPPINGS_EXAMPLE = (
    'INBOX_AGENT_MAPPINGS=\'[{"inbox_id": 1, "agent_config": {"agent_id": "support-bot", '
    '"websocket_url": "ws://127.0.0.1:8765"}}]\''
)


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    base["CHATBRIDGE_DATABASE_URL"] = f"sqlite+aiosqlite:///{cwd}/bridge.db"
    return subprocess.run(
        [sys.executable, "-m", "chatbridge", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(cwd: Path, *args: str, **env: str) -> str:
    """The one line ``chatbridge`` prints before exiting 2."""
    result = run(cwd, *args, **env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_malformed_mappings_json_names_the_position(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", INBOX_AGENT_MAPPINGS='[{"inbox_id": 1,')
    assert line == (
        "INBOX_AGENT_MAPPINGS: invalid JSON at line 1, column 17 (Expecting property name "
        f"enclosed in double quotes); example: {MAPPINGS_EXAMPLE}"
    )


def test_json_error_on_a_later_line_and_the_prefixed_name(tmp_path: Path) -> None:
    line = refused(tmp_path, "migrate", CHATBRIDGE_INBOX_AGENT_MAPPINGS='[\n  {"inbox_id": 1}\n  x')
    assert line.startswith(
        "CHATBRIDGE_INBOX_AGENT_MAPPINGS: invalid JSON at line 3, column 3 (Expecting ',' "
        "delimiter); example: CHATBRIDGE_INBOX_AGENT_MAPPINGS='[{"
    )


def test_a_bad_field_inside_the_mappings_is_located(tmp_path: Path) -> None:
    line = refused(
        tmp_path,
        "serve",
        INBOX_AGENT_MAPPINGS='[{"inbox_id": "one", "agent_config": {"agent_id": "bot"}}]',
    )
    assert line == (
        f"INBOX_AGENT_MAPPINGS[0].inbox_id: 'one' is not a whole number; example: "
        f"{MAPPINGS_EXAMPLE}"
    )


@pytest.mark.parametrize(
    ("url", "suggested"),
    [
        (
            "postgres://bridge:pw@127.0.0.1:5432/test",
            "postgres:// is not supported, Chatbridge needs the asyncpg driver; use "
            "postgresql+asyncpg://bridge:***@127.0.0.1:5432/test",
        ),
        (
            "postgresql://bridge@db/test",
            "postgresql:// is not supported, Chatbridge needs the asyncpg driver; use "
            "postgresql+asyncpg://bridge@db/test",
        ),
        (
            "postgresql+psycopg2://bridge@db/test",
            "postgresql+psycopg2:// is not supported, Chatbridge needs the asyncpg driver; use "
            "postgresql+asyncpg://bridge@db/test",
        ),
        (
            "sqlite:///./chatbridge.db",
            "sqlite:// is not supported, Chatbridge needs the aiosqlite driver; use "
            "sqlite+aiosqlite:///./chatbridge.db",
        ),
        (
            "mysql://bridge@db/test",
            "unsupported database URL scheme 'mysql'; use sqlite+aiosqlite:///./chatbridge.db "
            "or postgresql+asyncpg://user:password@host:5432/dbname",
        ),
    ],
)
def test_database_url_schemes_suggest_the_right_one(
    tmp_path: Path, url: str, suggested: str
) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_DATABASE_URL=url)
    assert line == f"CHATBRIDGE_DATABASE_URL: {suggested}"
    assert "pw" not in line  # the password is never echoed


def test_a_database_url_flag_is_named_as_the_flag(tmp_path: Path) -> None:
    line = refused(tmp_path, "migrate", "--database-url", "postgres://u@h/d")
    assert line.startswith("--database-url: postgres:// is not supported")


def test_bad_number(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_TURN_CONCURRENCY="lots")
    assert line == (
        "CHATBRIDGE_TURN_CONCURRENCY: 'lots' is not a whole number; "
        "example: CHATBRIDGE_TURN_CONCURRENCY=256"
    )


def test_number_out_of_range(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_PORT="70000")
    assert line == (
        "CHATBRIDGE_PORT: '70000' is too large: must be at most 65535; "
        "example: CHATBRIDGE_PORT=8000"
    )


def test_bad_boolean_with_a_seed_name(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", ENABLE_ASYNC_RESPONSES="sometimes")
    assert line == (
        "ENABLE_ASYNC_RESPONSES: 'sometimes' is not a boolean (true or false); "
        "example: ENABLE_ASYNC_RESPONSES=true"
    )


def test_unknown_enum_value(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_LOG_FORMAT="xml")
    assert line == (
        "CHATBRIDGE_LOG_FORMAT: 'xml' is not one of 'text' or 'json'; "
        "example: CHATBRIDGE_LOG_FORMAT=text"
    )


def test_unknown_log_level_in_env_and_flag(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_LOG_LEVEL="LOUD")
    assert line == (
        "CHATBRIDGE_LOG_LEVEL: unknown level 'LOUD'; use one of DEBUG, INFO, WARNING, ERROR, "
        "CRITICAL"
    )
    line = refused(tmp_path, "serve", "--log-level", "chatty")
    assert line.startswith("--log-level: unknown level 'chatty'")


def test_a_short_secret_is_not_echoed(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATWOOT_WEBHOOK_SECRET="hunter2")
    assert line == (
        "CHATWOOT_WEBHOOK_SECRET: must be at least 16 characters long; "
        "example: CHATWOOT_WEBHOOK_SECRET=$(openssl rand -hex 24)"
    )


def test_a_bad_redis_url(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_REDIS_URL="127.0.0.1:6379")
    assert line == (
        "CHATBRIDGE_REDIS_URL: not a Redis URL; use redis://host:6379/0 "
        "(rediss:// with TLS, unix:///path)"
    )


def test_a_channel_setting_with_bad_json(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_HTTP_INBOXES="{7: {}}")
    assert line == (
        "CHATBRIDGE_HTTP_INBOXES: invalid JSON at line 1, column 2 "
        "(Expecting property name enclosed in double quotes)"
    )


def test_every_bad_setting_gets_its_own_line(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", CHATBRIDGE_PORT="x", CHATBRIDGE_LOG_FORMAT="xml")
    assert result.returncode == 2
    assert sorted(line.split(":")[0] for line in result.stderr.splitlines()) == [
        "CHATBRIDGE_LOG_FORMAT",
        "CHATBRIDGE_PORT",
    ]


def test_an_empty_secret_is_unset_with_a_warning(tmp_path: Path) -> None:
    """``CHATWOOT_WEBHOOK_SECRET=`` once made every webhook a silent 401: now it counts as
    unset, and the command says so."""
    result = run(tmp_path, "routes", CHATWOOT_WEBHOOK_SECRET="", CHATBRIDGE_ADMIN_KEY=" ")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: CHATBRIDGE_ADMIN_KEY is empty and treated as unset: only local clients may "
        "use the console and the management API",
        "warning: CHATWOOT_WEBHOOK_SECRET is empty and treated as unset: Chatwoot webhooks are "
        "accepted without a signature check",
    ]


def test_an_empty_secret_in_the_env_file_is_warned_about_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CHATWOOT_WEBHOOK_SECRET=\n")
    result = run(tmp_path, "routes")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: CHATWOOT_WEBHOOK_SECRET is empty and treated as unset: Chatwoot webhooks are "
        "accepted without a signature check",
    ]


def test_settings_treat_an_empty_secret_as_unset() -> None:
    from chatbridge.config import Settings

    settings = Settings(chatwoot_webhook_secret="", redis_url="", media_signing_key="")
    assert settings.chatwoot_webhook_secret is None
    assert settings.redis_url is None
    assert settings.media_signing_key is None


def test_an_unreachable_database_is_one_line_for_migrate_routes_and_serve(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        url = f"postgresql+asyncpg://bridge:pw@127.0.0.1:{port}/chatbridge"
        for command in ("migrate", "routes", "serve"):
            result = run(tmp_path, command, CHATBRIDGE_DATABASE_URL=url)
            assert result.returncode == 1
            assert result.stderr.splitlines() == [
                f"database postgresql+asyncpg://bridge:***@127.0.0.1:{port}/chatbridge: "
                "connection refused"
            ]


def test_json_of_the_wrong_shape(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", INBOX_AGENT_MAPPINGS='{"inbox_id": 1}')
    assert line == f"INBOX_AGENT_MAPPINGS: must be a JSON list ([...]); example: {MAPPINGS_EXAMPLE}"


def test_a_short_dial_in_token_is_located_by_its_agent(tmp_path: Path) -> None:
    line = refused(tmp_path, "serve", CHATBRIDGE_AGENT_TOKENS='{"bot": "short"}')
    assert line == (
        "CHATBRIDGE_AGENT_TOKENS[bot]: must be at least 16 characters long; example: "
        'CHATBRIDGE_AGENT_TOKENS=\'{"support-bot": "a-token-of-at-least-16-chars"}\''
    )
