"""JSON log lines carry a message's ids as fields; CHATBRIDGE_TRACING turns tracing on."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from chatbridge import logs, tracing
from chatbridge.agent import Agent, Turn
from chatbridge.config import Settings
from tests.e2e.harness import running_stack


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The bridge's workers logging JSON lines at DEBUG into a buffer, as ``serve`` with
    ``CHATBRIDGE_LOG_FORMAT=json`` does (same formatter, same filter)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.BoundIds())
    workers = logging.getLogger("chatbridge.workers")
    level = workers.level
    workers.addHandler(handler)
    workers.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        workers.removeHandler(handler)
        workers.setLevel(level)


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def test_the_json_line_of_a_delivered_reply_carries_its_ids(
    sqlite_url: str, json_lines: io.StringIO
) -> None:
    agent = Agent("agent1")
    turns: list[Turn] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        turns.append(turn)
        return "hi"

    async with running_stack(sqlite_url, agent=agent) as stack:
        await stack.say("hello", conv=4)
        await stack.wait_replies(1, conv=4)
        await stack.idle()
    [turn] = turns
    sent = [
        line
        for line in parsed(json_lines)
        if line["message"].startswith("delivery")
        and "(message) sent to chatwoot" in line["message"]
    ]
    assert sent, json_lines.getvalue()
    line = sent[0]
    assert (line["level"], line["logger"]) == ("debug", "chatbridge.workers")
    assert (line["conversation_id"], line["turn_id"]) == (turn.conversation_id, turn.id)
    assert (
        isinstance(line["delivery_id"], int)
        and f"delivery {line['delivery_id']} " in (line["message"])
    )
    assert line["agent_id"] == "agent1"
    assert line["message_id"]  # the reply's stored message
    assert line["ts"].endswith("Z")


def test_bound_ids_reach_records_of_every_logger_and_are_restored() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.BoundIds())
    log = logging.getLogger("chatbridge.test_log_fields")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with logs.bound(conversation_id="c_1", turn_id="t_2"):
            token = logs.bind(delivery_id=3, turn_id=None)  # None: leave the turn id as it is
            log.info("inner")
            logs.unbind(token)
            log.info("outer", extra={"turn_id": "t_9"})  # extra= wins over the bound id
        log.info("after")
    finally:
        log.removeHandler(handler)
    inner, outer, after = parsed(out)
    assert (inner["conversation_id"], inner["turn_id"], inner["delivery_id"]) == ("c_1", "t_2", 3)
    assert "delivery_id" not in outer and outer["turn_id"] == "t_9"
    assert not set(logs.IDS) & set(after)


def test_text_lines_stay_readable() -> None:
    record = logging.LogRecord("chatbridge.workers", logging.INFO, "", 0, "turn %s", ("t_1",), None)
    with logs.bound(conversation_id="c_1"):
        logs.BoundIds().filter(record)
    line = logs.text_formatter().format(record)
    assert line.endswith("INFO    chatbridge.workers: turn t_1") and "{" not in line


# -- CHATBRIDGE_TRACING ---------------------------------------------------------------------------


def test_tracing_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBRIDGE_TRACING", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.tracing == "off"
    assert tracing.configure_from_settings(settings.tracing) is False
    assert tracing.ON is False


def test_console_tracing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBRIDGE_TRACING", "console")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    try:
        assert tracing.configure_from_settings(settings.tracing) is True
        assert tracing.ON is True
    finally:
        tracing.shutdown()
    assert tracing.ON is False


def test_a_bad_tracing_value_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBRIDGE_TRACING", "jaeger")
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)  # type: ignore[call-arg]
    [error] = info.value.errors()
    assert error["loc"] == ("tracing",) and "otlp" in error["msg"]


async def test_the_app_turns_tracing_on_while_it_runs(sqlite_url: str) -> None:
    try:
        async with running_stack(sqlite_url, tracing="console"):
            assert tracing.ON is True
        assert tracing.ON is False  # the app's shutdown flushed and turned it off
    finally:
        tracing.shutdown()
