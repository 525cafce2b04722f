"""A local fake of an OpenAI-compatible chat completions API, for tests of the openai transport.

``create_fake_openai()`` returns an ASGI app (serve it with
``chatbridge.testing.servers.serve_app``; the API root is ``{url}/v1``). It follows the public
shape of the OpenAI API:

- ``POST /v1/chat/completions``: with ``"stream": true`` an SSE answer
  (``text/event-stream``): a first ``chat.completion.chunk`` whose delta is
  ``{"role": "assistant", "content": ""}``, one chunk per piece of text
  (``{"content": "…"}``), a last chunk with an empty delta and ``finish_reason: "stop"``
  (then a usage chunk with ``choices: []`` when ``stream_options.include_usage`` asks for it),
  and ``data: [DONE]``. Without ``stream`` (or ``false``): one ``chat.completion`` JSON.
- ``GET /v1/models``: the known model(s).
- Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``; 400 for a
  request without ``model`` or ``messages``; 401 when ``api_key`` is set and the
  ``Authorization: Bearer`` header does not carry it; 404 for an unknown path, or a model not
  in ``models`` (when that is set).

By default the reply is ``"echo: <the last user message>"``, split into several chunks (one
per word). Tests script other answers with ``fake.plan(Answer…)``: each request (that passed
the checks above) takes the next planned answer, first in first out, e.g.
``Answer.rate_limited(1)``, ``Answer.error(401, …)``, ``Answer.server_error()``,
``Answer.broken(after=2)``, ``Answer.stalled(after=1)``, ``Answer.empty()``,
``Answer.plain_json()``, ``Answer.slow(30)``.

Every request (method, path, lower-case headers, JSON body) is recorded in
``app.state.fake.requests`` (``app.state.requests`` is the same list). A client that hangs up
while an answer waits or streams ends that answer at once (counted in ``fake.abandoned``), so
a slow answer never holds the server's shutdown. A cut stream (``Answer.broken``) ends the
response mid-body, so the client sees an incomplete chunked body; uvicorn logs "ASGI callable
returned without completing response" for it, which is expected.

Run it by hand with ``python -m chatbridge.testing.fake_openai --port 8089`` (then point an
openai agent's ``base_url`` at ``http://127.0.0.1:8089/v1``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of a chat completion request (``[]`` when there are none)."""
        body = self.json if isinstance(self.json, dict) else {}
        messages = body.get("messages")
        return messages if isinstance(messages, list) else []


@dataclass
class Answer:
    """One planned answer of the fake (see the constructors below for the usual ones).

    ``text`` is the reply (``None``: the default echo of the request); ``chunks`` gives the
    exact streamed pieces instead. A ``status`` other than 200 answers ``{"error": error_info}``.
    ``stream``: ``None`` answers as the request asks, ``False`` with one JSON completion even
    to a streaming request, ``True`` with SSE even to a non-streaming one.
    """

    text: str | None = None
    chunks: list[str] | None = None
    status: int = 200
    error_info: dict[str, Any] | None = None  # the ``error`` object of an error answer
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool | None = None
    delay: float = 0.0  # seconds before the status line (math.inf: until the client leaves)
    chunk_delay: float = 0.0  # seconds before each content chunk
    break_after: int | None = None  # cut the connection after this many content chunks
    stall_after: int | None = None  # after this many chunks, send nothing until the client leaves
    error_after: int | None = None  # after this many chunks, send an SSE error event and end
    finish_reason: str | None = "stop"
    done: bool = True  # end the stream with ``data: [DONE]``
    include_usage: bool | None = None  # None: as ``stream_options.include_usage`` asks

    @classmethod
    def reply(cls, text: str, **kw: Any) -> Answer:
        return cls(text=text, **kw)

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """An HTTP error with OpenAI's error body."""
        body = {"message": message, "type": type_, "param": param, "code": code}
        return cls(status=status, error_info=body, headers=dict(headers or {}))

    @classmethod
    def rate_limited(cls, retry_after: float | str = 1) -> Answer:
        """429 with ``Retry-After`` (seconds, or an HTTP date)."""
        value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        return cls.error(
            429,
            "Rate limit reached for requests. Please try again later.",
            "requests",
            "rate_limit_exceeded",
            headers={"retry-after": value},
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Answer:
        return cls.error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )

    @classmethod
    def unauthorized(cls, message: str = "Incorrect API key provided.") -> Answer:
        return cls.error(401, message, "invalid_request_error", "invalid_api_key")

    @classmethod
    def broken(cls, after: int = 2, text: str | None = None) -> Answer:
        """A stream whose connection is cut after ``after`` content chunks."""
        return cls(text=text, stream=True, break_after=after)

    @classmethod
    def stream_error(cls, message: str, after: int = 1, text: str | None = None) -> Answer:
        """A stream that sends ``after`` chunks, then ``data: {"error": …}`` and ends."""
        return cls(text=text, stream=True, error_after=after, error_info={"message": message})

    @classmethod
    def empty(cls, **kw: Any) -> Answer:
        """A completion without any text (only the role chunk and the finish chunk)."""
        return cls(text="", **kw)

    @classmethod
    def stalled(cls, after: int = 1, text: str | None = None) -> Answer:
        """A stream that sends ``after`` chunks, then nothing more until the client leaves."""
        return cls(text=text, stream=True, stall_after=after)

    @classmethod
    def plain_json(cls, text: str | None = None) -> Answer:
        """One ``chat.completion`` JSON, whatever the request's ``stream``."""
        return cls(text=text, stream=False)

    @classmethod
    def slow(cls, delay: float, text: str | None = None) -> Answer:
        """An answer that starts after ``delay`` seconds (``math.inf``: never)."""
        return cls(text=text, delay=delay)


@dataclass
class FakeOpenAI:
    """State, script and recordings of the fake."""

    api_key: str | None = None  # required as ``Authorization: Bearer <key>`` when set
    models: tuple[str, ...] = ()  # the only models known when set (else any model)
    reply_prefix: str = "echo: "
    requests: list[RecordedRequest] = field(default_factory=list)
    planned: deque[Answer] = field(default_factory=deque)
    abandoned: int = 0  # answers cut short because the client hung up
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def plan(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order (then the default echo again)."""
        self.planned.extend(answers)

    def completions(self) -> list[RecordedRequest]:
        """The recorded ``POST …/chat/completions`` requests."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def default_text(self, body: dict[str, Any]) -> str:
        users = [m for m in body.get("messages", []) if isinstance(m, dict)]
        users = [m for m in users if m.get("role") == "user"]
        last = users[-1].get("content") if users else ""
        if isinstance(last, list):  # content parts: keep the text ones
            last = " ".join(str(p.get("text", "")) for p in last if isinstance(p, dict))
        return f"{self.reply_prefix}{last}"

    def next_id(self) -> str:
        return f"chatcmpl-fake{next(self._ids):06d}"


def split_words(text: str) -> list[str]:
    """``text`` as stream pieces, one word (with its trailing space) each; they join to it."""
    return re.findall(r"\s+|\S+\s*", text) if text else []


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(
        len(str(m.get("content") or "").split())
        for m in body.get("messages", [])
        if isinstance(m, dict)
    )
    completion = len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _Scripted(Response):
    """Plays one ``Answer`` on the raw ASGI channel: delays, chunks, a cut connection."""

    def __init__(self, fake: FakeOpenAI, answer: Answer, body: dict[str, Any]) -> None:
        super().__init__(status_code=answer.status)
        self.fake = fake
        self.answer = answer
        self.request_body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            if not await self._play(send, gone):
                self.fake.abandoned += 1
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    @staticmethod
    async def _pause(gone: asyncio.Event, seconds: float) -> bool:
        """Wait ``seconds``; False if the client hung up first."""
        if seconds <= 0:
            return not gone.is_set()
        try:
            await asyncio.wait_for(gone.wait(), None if math.isinf(seconds) else seconds)
        except TimeoutError:
            return True
        return False

    async def _play(self, send: Send, gone: asyncio.Event) -> bool:
        a, body = self.answer, self.request_body
        if not await self._pause(gone, a.delay):
            return False
        if a.status != 200:
            await self._json(send, a.status, {"error": a.error_info or {}}, a.headers)
            return True
        text = a.text if a.text is not None else self.fake.default_text(body)
        stream = a.stream if a.stream is not None else body.get("stream") is True
        model = str(body.get("model") or "")
        if not stream:
            completion = {
                "id": self.fake.next_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": a.finish_reason,
                    }
                ],
                "usage": _usage(body, text),
                "system_fingerprint": "fp_fake",
            }
            await self._json(send, 200, completion, a.headers)
            return True
        return await self._stream(send, gone, text, model)

    async def _stream(self, send: Send, gone: asyncio.Event, text: str, model: str) -> bool:
        a, body = self.answer, self.request_body
        cid, created = self.fake.next_id(), int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        async def event(data: Any) -> None:
            raw = data if isinstance(data, str) else json.dumps(data)
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {raw}\n\n".encode(),
                    "more_body": True,
                }
            )

        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", cid.encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in a.headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await event(chunk({"role": "assistant", "content": "", "refusal": None}))
        pieces = a.chunks if a.chunks is not None else split_words(text)
        for n, piece in enumerate(pieces):
            if a.break_after is not None and n >= a.break_after:
                return True  # returning mid-body makes the server drop the connection
            if a.error_after is not None and n >= a.error_after:
                break
            if a.stall_after is not None and n >= a.stall_after:
                await self._pause(gone, math.inf)
                return False
            if not await self._pause(gone, a.chunk_delay):
                return False
            await event(chunk({"content": piece}))
        if a.break_after is not None:
            return True
        if a.error_after is not None:
            await event({"error": {"type": "server_error", "code": None, **(a.error_info or {})}})
        else:
            await event(chunk({}, a.finish_reason))
            options = body.get("stream_options")
            asked = isinstance(options, dict) and options.get("include_usage") is True
            if a.include_usage if a.include_usage is not None else asked:
                usage = {**chunk({}), "choices": [], "usage": _usage(body, text)}
                await event(usage)
        if a.done:
            await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True

    @staticmethod
    async def _json(send: Send, status: int, data: Any, extra: dict[str, str]) -> None:
        raw = json.dumps(data).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw, "more_body": False})


def create_fake_openai(**options: Any) -> FastAPI:
    """The fake's ASGI app; ``app.state.fake`` is its ``FakeOpenAI`` (``options`` set it)."""
    fake = FakeOpenAI(**options)
    app = FastAPI(title="fake OpenAI-compatible API", openapi_url=None, docs_url=None)
    app.state.fake = fake
    app.state.requests = fake.requests

    def refused(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, type_, code), status_code=status)

    def unauthorized(headers: dict[str, str]) -> JSONResponse | None:
        if fake.api_key is None:
            return None
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key.strip() == fake.api_key:
            return None
        if not key.strip():
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return refused(401, message, "invalid_request_error")
        shown = key.strip()[:3] + "*" * 4 + key.strip()[-4:]
        message = f"Incorrect API key provided: {shown}."
        return refused(401, message, "invalid_request_error", "invalid_api_key")

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def handle(request: Request, path: str) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        fake.requests.append(RecordedRequest(request.method, "/" + path, headers, body))
        denied = unauthorized(headers)
        if denied is not None:
            return denied
        if request.method == "GET" and path.rstrip("/") == "v1/models":
            names = fake.models or ("fake-model",)
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in names]
            return JSONResponse({"object": "list", "data": data})
        if request.method != "POST" or path.rstrip("/") != "v1/chat/completions":
            return refused(404, f"Invalid URL ({request.method} /{path})", "invalid_request_error")
        if not isinstance(body, dict):
            return refused(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            return refused(400, "you must provide a model parameter", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return refused(
                400,
                "'messages' must be a non-empty array of message objects",
                "invalid_request_error",
            )
        if fake.models and body["model"] not in fake.models:
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            return refused(404, message, "invalid_request_error", "model_not_found")
        answer = fake.planned.popleft() if fake.planned else Answer()
        return _Scripted(fake, answer, body)

    return app


async def run_fake_openai(
    host: str = "127.0.0.1", port: int = 8089, *, api_key: str | None = None
) -> None:
    """Serve the fake until interrupted (``python -m chatbridge.testing.fake_openai``)."""
    import uvicorn

    app = create_fake_openai(api_key=api_key)
    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).serve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible chat API (echo).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default=None, help="require this Bearer key")
    args = parser.parse_args(argv)
    asyncio.run(run_fake_openai(args.host, args.port, api_key=args.api_key))


if __name__ == "__main__":
    main()
