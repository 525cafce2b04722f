"""The openai transport: the bridge is the agent, answering with any OpenAI-compatible model.

Each turn is one ``POST {base_url}/chat/completions`` with ``stream: true``:

- ``messages`` = the route's ``system_prompt`` (if any), then up to ``max_history`` earlier
  messages of the conversation from the store (the customer's as ``user``; the agent's and the
  human operators' replies as ``assistant``; notes and system lines left out), then this
  turn's text as ``user``;
- ``model``, and ``temperature`` / ``max_tokens`` when configured;
- ``Authorization: Bearer <api_key>`` (the agent's own, else ``CHATBRIDGE_OPENAI_API_KEY``);
  no header when neither is set (a local server such as Ollama or vLLM needs none).

The streamed deltas go to live widgets as chunks, and the whole text becomes the reply. A
server that ignores ``stream`` and answers with one JSON completion works too.

Failures: a connection error, 408, 429 or a 5xx *before the first chunk* is retried with
full-jitter backoff (honouring ``Retry-After``) until the turn's deadline, then the turn ends
as ``AgentUnavailable``; a request that went out but got no complete answer by the deadline
ends as ``AgentTimeout``. Another 4xx (bad key, unknown model, bad request) ends it at once as
an error naming the server's own message; so does a stream that breaks off after it started
(its chunks were already shown) or an empty completion. The route's fallback or handoff
applies, as for any agent error.

``OpenAITransport`` is the agent's ``AgentTransport``; ``OpenAICaller`` does the calls. A model
cannot decline to answer, hand over, or take an event (``Capabilities``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

from chatbridge.backoff import parse_retry_after
from chatbridge.errors import AgentTimeout, AgentUnavailable
from chatbridge.models import JsonObject
from chatbridge.store.records import MessageRecord
from chatbridge.transports.base import (
    AgentOutcome,
    AgentStatus,
    Capabilities,
    ChunkCallback,
    LocalTurns,
    TurnRequest,
)
from chatbridge.transports.http import RETRYABLE, describe, retry_pause
from chatbridge.transports.log import log_event
from chatbridge.transports.registry import spec

if TYPE_CHECKING:
    from chatbridge.transports.context import TransportContext

History = Callable[[str, int], Awaitable[list[MessageRecord]]]


class _Retry(Exception):
    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class _Progress:
    """How far a turn's model call got, to name a missed deadline right: ``AgentTimeout`` once
    the current attempt's request was sent, ``AgentUnavailable`` while connecting or waiting
    to retry (the model was never reached)."""

    def __init__(self) -> None:
        self.sent = False
        self.problem: str | None = None  # the last retryable failure

    async def trace(self, event: str, info: JsonObject) -> None:
        """httpx's ``trace`` extension: called as the request goes out."""
        if event.endswith(".send_request_headers.started"):
            self.sent = True


class _Refused(Exception):
    def __init__(self, code: str, details: JsonObject) -> None:
        super().__init__(code)
        self.code = code
        self.details = details


def chat_messages(
    frame: JsonObject, history: list[MessageRecord], system_prompt: str | None
) -> list[dict[str, str]]:
    """The ``messages`` of the completion request for one turn (see the module docstring)."""
    out: list[dict[str, str]] = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    this_turn = {m.get("id") for m in frame.get("messages") or [] if isinstance(m, dict)}
    for m in history:
        if m.id in this_turn:
            break  # this turn's own messages, and what came after them, are not earlier
        if not m.text:
            continue
        if m.direction == "in":
            out.append({"role": "user", "content": m.text})
        elif m.direction == "out" and m.author in ("agent", "human"):
            out.append({"role": "assistant", "content": m.text})
    out.append({"role": "user", "content": str(frame.get("content") or "")})
    return out


def _server_message(r: httpx.Response) -> str:
    """The error text an OpenAI-compatible server put in its body, else the status line."""
    try:
        data = r.json()
    except ValueError:
        text = r.text.strip()[:300]
        return text or f"HTTP {r.status_code}"
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])[:500]
    if isinstance(err, str):
        return err[:500]
    return f"HTTP {r.status_code}"


class OpenAICaller:
    """Runs turns of openai agents (see the module docstring)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        history: History,
        *,
        on_chunk: ChunkCallback | None = None,
        default_api_key: str | None = None,
        retry_base: float = 0.5,
        retry_cap: float = 10.0,
    ) -> None:
        self.client = client
        self._history = history
        self._on_chunk = on_chunk
        self._default_key = default_api_key
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self.last_ok: dict[str, float] = {}
        self.last_error: dict[str, str] = {}

    async def run_turn(self, req: TurnRequest, base_url: str, options: JsonObject) -> AgentOutcome:
        remaining = req.deadline - time.time()
        if remaining <= 0:
            raise AgentUnavailable("the turn's deadline had passed before the model was called")
        progress = _Progress()
        try:
            async with asyncio.timeout(remaining):
                return await self._run(req, base_url, options, progress)
        except TimeoutError:
            if not progress.sent:
                problem = progress.problem or "no connection"
                self.last_error[req.agent_id] = problem
                raise AgentUnavailable(
                    f"model not reached before the deadline ({problem})"
                ) from None
            self.last_error[req.agent_id] = "no answer before the deadline"
            raise AgentTimeout("the model did not answer before the deadline") from None

    async def _run(
        self, req: TurnRequest, base_url: str, options: JsonObject, progress: _Progress
    ) -> AgentOutcome:
        limit = int(options.get("max_history", 20))
        earlier = await self._history(req.conversation_id, limit + 10) if limit else []
        messages = chat_messages(req.frame, earlier, options.get("system_prompt"))
        if limit and len(messages) > limit + 1:
            head = messages[:1] if messages[0]["role"] == "system" else []
            messages = head + messages[len(head) :][-(limit + 1) :]
        body: JsonObject = {"model": options.get("model"), "messages": messages, "stream": True}
        for name in ("temperature", "max_tokens"):
            if options.get(name) is not None:
                body[name] = options[name]
        headers = {"Accept": "text/event-stream"}
        key: str | None = options.get("api_key") or self._default_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = base_url.rstrip("/") + "/chat/completions"
        attempt = 0
        while True:
            attempt += 1
            progress.sent = False
            try:
                outcome = await self._complete(req, url, body, headers, progress)
            except _Retry as retry:
                progress.sent, progress.problem = False, str(retry)
                self.last_error[req.agent_id] = str(retry)
                delay = retry_pause(
                    req,
                    attempt,
                    str(retry),
                    retry.retry_after,
                    base=self._retry_base,
                    cap=self._retry_cap,
                    what="model call failed",
                )
                if delay is None:
                    raise AgentUnavailable(
                        f"model not reached before the deadline ({retry})"
                    ) from None
                await asyncio.sleep(delay)
                continue
            except _Refused as refused:
                self.last_error[req.agent_id] = f"{refused.code}: {refused.details}"
                log_event(
                    logging.WARNING,
                    "model call refused",
                    req.agent_id,
                    req.turn_key,
                    code=refused.code,
                    # not **details: their "message" key is a LogRecord attribute (KeyError)
                    details=refused.details,
                )
                return AgentOutcome("error", error_code=refused.code, error_details=refused.details)
            self.last_ok[req.agent_id] = time.time()
            self.last_error.pop(req.agent_id, None)
            return outcome

    async def _complete(
        self,
        req: TurnRequest,
        url: str,
        body: JsonObject,
        headers: dict[str, str],
        progress: _Progress,
    ) -> AgentOutcome:
        chunks: list[str] = []
        meta: JsonObject = {"model": body["model"]}
        try:
            async with self.client.stream(
                "POST",
                url,
                json=body,
                headers=headers,
                timeout=httpx.Timeout(60.0, connect=10.0),
                extensions={"trace": progress.trace},
            ) as r:
                if not r.is_success:
                    await r.aread()
                    problem = f"HTTP {r.status_code}: {_server_message(r)}"
                    if r.status_code in RETRYABLE:
                        raise _Retry(problem, parse_retry_after(r.headers.get("retry-after")))
                    raise _Refused(
                        "model_refused", {"status": r.status_code, "message": _server_message(r)}
                    )
                if "text/event-stream" not in r.headers.get("content-type", ""):
                    await r.aread()
                    return self._whole(r, meta)
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    text = self._delta(data, meta)
                    if text:
                        if self._on_chunk is not None:
                            await self._on_chunk(
                                req.turn_key, req.conversation_id, len(chunks), text
                            )
                        chunks.append(text)
        except httpx.HTTPError as exc:
            problem = describe(exc)
            if not chunks:
                raise _Retry(problem) from exc
            raise _Refused(
                "model_stream_broken", {"message": problem, "chunks": len(chunks)}
            ) from exc
        text = "".join(chunks)
        if not text.strip():
            raise _Refused("empty_completion", {"finish_reason": meta.get("finish_reason")})
        return AgentOutcome("reply", text, metadata=meta, streamed_chunks=len(chunks))

    @staticmethod
    def _delta(data: str, meta: JsonObject) -> str:
        try:
            event = json.loads(data)
        except ValueError:
            return ""
        if not isinstance(event, dict):
            return ""
        if event.get("error"):
            err = event["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise _Refused("model_error", {"message": str(message)[:500]})
        choices = event.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return ""
        first = choices[0]
        if first.get("finish_reason"):
            meta["finish_reason"] = first["finish_reason"]
        delta = first.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""

    @staticmethod
    def _whole(r: httpx.Response, meta: JsonObject) -> AgentOutcome:
        try:
            data = r.json()
            first = data["choices"][0]
            text = first["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Refused(
                "invalid_completion", {"message": "the answer is not a chat completion"}
            ) from None
        if first.get("finish_reason"):
            meta["finish_reason"] = first["finish_reason"]
        if not isinstance(text, str) or not text.strip():
            raise _Refused("empty_completion", {"finish_reason": meta.get("finish_reason")})
        return AgentOutcome("reply", text, metadata=meta)


class OpenAITransport(LocalTurns):
    """The bridge as the agent, answering with a model at ``url`` (the API root); ``options``
    hold ``model``, ``api_key``, ``system_prompt``, ``temperature``, ``max_tokens`` and
    ``max_history``."""

    spec = spec("openai")
    capabilities = Capabilities(no_reply=False, handoff=False, events=False, live=False)

    def __init__(
        self,
        agent_id: str,
        url: str | None,
        options: JsonObject,
        context: TransportContext,
    ) -> None:
        super().__init__(agent_id, url, options)
        self.context = context
        self.caller = OpenAICaller(
            context.http,
            context.history,
            on_chunk=context.on_chunk,
            default_api_key=context.settings.openai_api_key,
            retry_base=context.settings.retry_base_seconds,
        )

    def start(self) -> None:
        self.caller.client = self.context.http  # a new client after a restart of the hub

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        async with self.running_turn(req.turn_key):
            started = time.monotonic()
            outcome = await self.caller.run_turn(req, self.url or "", self.options)
        elapsed = time.monotonic() - started
        self.stats.record(elapsed)
        self.context.metrics.turn_seconds.labels(self.agent_id).observe(elapsed)
        return outcome

    @property
    def connected(self) -> bool:
        """Nothing stays open: connected unless closed or the last call failed."""
        return not self.closed and self.agent_id not in self.caller.last_error

    def status(self) -> AgentStatus:
        self.stats.last_seen = self.caller.last_ok.get(self.agent_id)
        return super().status()
