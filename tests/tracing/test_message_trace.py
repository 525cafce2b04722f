"""One trace per customer message: a Chatwoot round trip seen through OpenTelemetry.

webhook → store.ingest, and — in the worker that claims the turn from the database — turn →
agent.call and turn → delivery; the agent receives the agent.call span's W3C traceparent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chatbridge import tracing
from chatbridge.agent import Agent, Turn
from chatbridge.config import AgentConfig, InboxMapping
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import running_stack, wait_until

TRACE_SPANS = ("webhook", "store.ingest", "turn", "agent.call", "delivery")


def recording_agent(seen: list[Turn]) -> Agent:
    agent = Agent("agent1")

    @agent.on_message
    async def answer(turn: Turn) -> str:
        seen.append(turn)
        return f"Echo: {turn.content}"

    return agent


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def traceparent_of(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def message_delivered(spans: InMemorySpanExporter) -> bool:
    return any(
        s.name == "delivery" and (s.attributes or {}).get("chatbridge.delivery_kind") == "message"
        for s in spans.get_finished_spans()
    )


async def test_a_chatwoot_round_trip_is_one_trace_in_parent_child_order(
    database_url: str, spans: InMemorySpanExporter
) -> None:
    seen: list[Turn] = []
    async with running_stack(database_url, agent=recording_agent(seen)) as stack:
        await stack.say("where is my order?", conv=7)
        assert await stack.wait_replies(1, conv=7) == ["Echo: where is my order?"]
        await wait_until(lambda: message_delivered(spans))
        await stack.idle()

    found = by_name(spans.get_finished_spans())
    # the customer's message was written once (the mock's echo of our reply is a webhook too)
    [ingest] = found["store.ingest"]
    assert ingest.parent is not None
    [webhook] = [s for s in found["webhook"] if s.context.span_id == ingest.parent.span_id]
    assert webhook.parent is None  # the root
    trace_id = webhook.context.trace_id
    [turn] = found["turn"]
    [call] = found["agent.call"]
    [delivery] = [
        s
        for s in found["delivery"]
        if (s.attributes or {}).get("chatbridge.delivery_kind") == "message"
    ]
    # one trace, across the database hop to the worker
    for span in (ingest, turn, call, delivery):
        assert span.context.trace_id == trace_id, span.name
    assert turn.parent is not None and turn.parent.span_id == webhook.context.span_id
    assert call.parent is not None and call.parent.span_id == turn.context.span_id
    assert delivery.parent is not None and delivery.parent.span_id == turn.context.span_id
    assert (webhook.kind, call.kind) == (SpanKind.SERVER, SpanKind.CLIENT)
    # a child runs within its parent
    assert webhook.start_time is not None and ingest.start_time is not None
    assert webhook.start_time <= ingest.start_time
    assert turn.start_time is not None and call.start_time is not None
    assert turn.start_time <= call.start_time and call.end_time <= turn.end_time  # type: ignore[operator]

    attributes = turn.attributes or {}
    assert attributes["chatbridge.turn_id"] == seen[0].id
    assert attributes["chatbridge.conversation_id"] == seen[0].conversation_id
    assert (call.attributes or {})["chatbridge.outcome"] == "reply"
    assert (webhook.attributes or {})["chatbridge.channel"] == "chatwoot"

    # the agent got the agent.call span's context, so its spans join this trace
    [got] = seen
    assert got.traceparent == traceparent_of(call)
    assert got.traceparent.split("-")[1] == f"{trace_id:032x}"


async def test_off_by_default_no_traceparent_reaches_the_agent(sqlite_url: str) -> None:
    assert tracing.ON is False
    seen: list[Turn] = []
    async with running_stack(sqlite_url, agent=recording_agent(seen)) as stack:
        await stack.say("hello", conv=1)
        await stack.wait_replies(1, conv=1)
    [turn] = seen
    assert turn.traceparent is None and "traceparent" not in turn.raw


@asynccontextmanager
async def hook_agent(received: list[tuple[dict[str, Any], str | None]]) -> AsyncIterator[str]:
    """An http-webhook agent answering at once; keeps each frame with its traceparent header."""
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        frame = json.loads(await request.body())
        received.append((frame, request.headers.get("traceparent")))
        if frame.get("type") != "user_message":
            return Response(status_code=204)
        return JSONResponse(
            {"type": "agent_message", "message_id": frame["message_id"], "content": "ok"}
        )

    async with serve_app(app) as url:
        yield f"{url}/hook"


async def test_a_webhook_agent_gets_the_traceparent_header(
    sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    received: list[tuple[dict[str, Any], str | None]] = []
    async with hook_agent(received) as url:
        config = AgentConfig(
            agent_id="agent1", transport="http-webhook", webhook_url=url, timeout_seconds=5
        )
        async with running_stack(sqlite_url, agent_config=config) as stack:
            await stack.say("hi", conv=2)
            await stack.wait_replies(1, conv=2)
    [(frame, header)] = [(f, h) for f, h in received if f.get("type") == "user_message"]
    [call] = by_name(spans.get_finished_spans())["agent.call"]
    assert header == frame["traceparent"] == traceparent_of(call)


PULL_TOKEN = "pull-secret-0123456"
PULL_HEADERS = {"Authorization": f"Bearer {PULL_TOKEN}", "X-Agent-Id": "agent1"}


async def test_an_http_pull_answer_carries_the_traceparent_header(
    sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    async with running_stack(sqlite_url, transport="ws-dial-in") as stack:
        pull_agent = AgentConfig(
            agent_id="agent1", transport="http-pull", token=PULL_TOKEN, timeout_seconds=30
        )
        await stack.bridge.save_mapping(InboxMapping(inbox_id=1, agent_config=pull_agent))
        await stack.say("pull me", conv=5)
        r = await stack.http.get(
            "/api/agent/turns", params={"wait": 10, "limit": 1}, headers=PULL_HEADERS
        )
        assert r.status_code == 200, r.text
        [item] = r.json()["turns"]
        reply = await stack.http.post(
            f"/api/agent/turns/{item['turn']['message_id']}/reply",
            params={"lease": item["lease_id"]},
            json={"type": "agent_message", "content": "pulled"},
            headers=PULL_HEADERS,
        )
        assert reply.status_code == 200, reply.text
        await stack.wait_replies(1, conv=5)
    [call] = by_name(spans.get_finished_spans())["agent.call"]
    assert r.headers["traceparent"] == item["turn"]["traceparent"] == traceparent_of(call)
