"""The openai transport (``OpenAICaller``, ``chat_messages``) against the fake OpenAI-compatible
server on a real loopback port: the request it sends, streaming, retries and every failure."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from chatbridge.errors import AgentTimeout, AgentUnavailable
from chatbridge.store.records import MessageRecord
from chatbridge.testing.fake_openai import Answer, FakeOpenAI, create_fake_openai
from chatbridge.testing.servers import bind_socket, serve_app
from chatbridge.transports.base import AgentOutcome, TurnRequest
from chatbridge.transports.openai import OpenAICaller, chat_messages
from tests.e2e.drain import within
from tests.e2e.harness import wait_until

MODEL = "gpt-test"
CONV = "c_conv1"
THIS_TURN_MSG = "m_now"


# ---------------------------------------------------------------------------------- helpers


def msg(
    id: str, direction: str, author: str, text: str, at: float, *, conv: str = CONV
) -> MessageRecord:
    return MessageRecord(
        id=id,
        conversation_id=conv,
        direction=direction,
        author=author,
        text=text,
        content_type="text",
        attachments=[],
        external_id=None,
        created_at=at,
        meta={},
    )


def turn(
    text: str = "Where is my order?",
    *,
    key: str = "t_1",
    agent_id: str = "bot1",
    message_ids: tuple[str, ...] = (THIS_TURN_MSG,),
    timeout: float = 5.0,
) -> TurnRequest:
    frame = {
        "type": "user_message",
        "protocol": "chatbridge/1",
        "message_id": key,
        "seq": 1,
        "conversation_id": CONV,
        "content": text,
        "messages": [{"id": i, "content": text, "attachments": []} for i in message_ids],
    }
    return TurnRequest(
        turn_key=key,
        seq=1,
        agent_id=agent_id,
        conversation_id=CONV,
        frame=frame,
        deadline=time.time() + timeout,
    )


@dataclass
class History:
    """The store's ``recent_messages``: the last ``limit`` records, oldest first."""

    records: list[MessageRecord] = field(default_factory=list)
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, conversation_id: str, limit: int) -> list[MessageRecord]:
        self.calls.append((conversation_id, limit))
        mine = [r for r in self.records if r.conversation_id == conversation_id]
        return mine[-limit:] if limit else []


@dataclass
class Chunks:
    seen: list[tuple[str, str, int, str]] = field(default_factory=list)

    async def __call__(self, turn_key: str, conversation_id: str, index: int, text: str) -> None:
        self.seen.append((turn_key, conversation_id, index, text))


@dataclass
class Model:
    fake: FakeOpenAI
    base_url: str  # the API root: ``http://127.0.0.1:PORT/v1``

    def bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self.fake.completions()]


@pytest.fixture
async def model() -> AsyncIterator[Model]:
    app = create_fake_openai()
    async with serve_app(app) as url:
        yield Model(app.state.fake, f"{url}/v1")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False) as c:
        yield c


@pytest.fixture
def history() -> History:
    return History()


@pytest.fixture
def chunks() -> Chunks:
    return Chunks()


@pytest.fixture
def caller(client: httpx.AsyncClient, history: History, chunks: Chunks) -> OpenAICaller:
    # quick retries; a Retry-After is honoured up to 10 x retry_cap (5 s)
    return OpenAICaller(client, history, on_chunk=chunks, retry_base=0.02, retry_cap=0.5)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that refuses connections (bound, never listening) for the whole test."""
    sock = bind_socket()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


def options(**kw: Any) -> dict[str, Any]:
    """A route's openai options as the store keeps them (``AgentConfig.options()``)."""
    return {"model": MODEL, **kw}


def conversation_so_far() -> list[MessageRecord]:
    """A conversation with every kind of stored message, then this turn's own message."""
    return [
        msg("m1", "in", "contact", "Hi, I ordered a lamp", 1.0),
        msg("m2", "out", "agent", "Hello! What is the order number?", 2.0),
        msg("m3", "note", "human", "internal: VIP customer", 3.0),
        msg("m4", "in", "contact", "It is 4711", 4.0),
        msg("m5", "out", "human", "An operator here: it left today.", 5.0),
        msg("m6", "out", "system", "conversation reassigned", 6.0),
        msg("m7", "in", "contact", "", 7.0),  # an attachment without text
        msg(THIS_TURN_MSG, "in", "contact", "Where is my order?", 8.0),
    ]


# ---------------------------------------------------------------------------- chat_messages


def test_chat_messages_maps_roles_skips_notes_and_does_not_repeat_this_turn() -> None:
    messages = chat_messages(turn().frame, conversation_so_far(), "You are a shop assistant.")
    assert messages == [
        {"role": "system", "content": "You are a shop assistant."},
        {"role": "user", "content": "Hi, I ordered a lamp"},
        {"role": "assistant", "content": "Hello! What is the order number?"},
        {"role": "user", "content": "It is 4711"},
        {"role": "assistant", "content": "An operator here: it left today."},
        {"role": "user", "content": "Where is my order?"},
    ]


def test_chat_messages_without_system_prompt_or_history_is_the_turn_alone() -> None:
    for prompt in (None, ""):
        assert chat_messages(turn("hello").frame, [], prompt) == [
            {"role": "user", "content": "hello"}
        ]


def test_chat_messages_leaves_out_messages_stored_after_this_turn() -> None:
    """A customer who writes twice quickly has two turns; when the first one runs, the second
    message is already stored. It is not an *earlier* message of the first turn: sending it
    would show the model the second question before the first."""
    records = [
        msg("m1", "in", "contact", "first question", 1.0),
        msg("m2", "out", "agent", "first answer", 2.0),
        msg(THIS_TURN_MSG, "in", "contact", "second question", 3.0),
        msg("m_next", "in", "contact", "third question (next turn)", 4.0),
    ]
    assert chat_messages(turn("second question").frame, records, None) == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]


# ------------------------------------------------------------------------ the request itself


async def test_request_body_and_headers(
    model: Model, caller: OpenAICaller, history: History
) -> None:
    history.records = conversation_so_far()
    outcome = await caller.run_turn(
        turn(), model.base_url, options(system_prompt="You are a shop assistant.")
    )
    assert outcome.kind == "reply"
    [request] = model.fake.completions()
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.json == {
        "model": MODEL,
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are a shop assistant."},
            {"role": "user", "content": "Hi, I ordered a lamp"},
            {"role": "assistant", "content": "Hello! What is the order number?"},
            {"role": "user", "content": "It is 4711"},
            {"role": "assistant", "content": "An operator here: it left today."},
            {"role": "user", "content": "Where is my order?"},
        ],
    }  # no temperature / max_tokens when the route does not set them
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert history.calls == [(CONV, 30)]  # max_history 20 by default, plus room for this turn


async def test_temperature_and_max_tokens_are_sent_when_set(
    model: Model, caller: OpenAICaller
) -> None:
    await caller.run_turn(turn(), model.base_url, options(temperature=0.0, max_tokens=64))
    await caller.run_turn(turn(key="t_2"), model.base_url, options(temperature=1.3))
    first, second = model.bodies()
    assert (first["temperature"], first["max_tokens"]) == (0.0, 64)  # 0 is a value, not unset
    assert second["temperature"] == 1.3
    assert "max_tokens" not in second


def long_conversation(exchanges: int) -> list[MessageRecord]:
    records = []
    for n in range(exchanges):
        records.append(msg(f"q{n}", "in", "contact", f"question {n}", 10.0 * n))
        records.append(msg(f"a{n}", "out", "agent", f"answer {n}", 10.0 * n + 1))
    records.append(msg(THIS_TURN_MSG, "in", "contact", "Where is my order?", 1000.0))
    return records


@pytest.mark.parametrize("system_prompt", ["Be brief.", None])
async def test_max_history_keeps_the_latest_earlier_messages(
    model: Model, caller: OpenAICaller, history: History, system_prompt: str | None
) -> None:
    history.records = long_conversation(6)
    await caller.run_turn(
        turn(), model.base_url, options(max_history=3, system_prompt=system_prompt)
    )
    [body] = model.bodies()
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    assert body["messages"] == [
        *head,
        {"role": "assistant", "content": "answer 4"},
        {"role": "user", "content": "question 5"},
        {"role": "assistant", "content": "answer 5"},
        {"role": "user", "content": "Where is my order?"},
    ]
    assert history.calls == [(CONV, 13)]


async def test_max_history_zero_sends_no_history_and_reads_none(
    model: Model, caller: OpenAICaller, history: History
) -> None:
    history.records = long_conversation(3)
    await caller.run_turn(turn(), model.base_url, options(max_history=0, system_prompt="S"))
    [body] = model.bodies()
    assert body["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Where is my order?"},
    ]
    assert history.calls == []


@pytest.mark.parametrize(
    ("agent_key", "default_key", "expected"),
    [
        ("sk-agent", "sk-default", "Bearer sk-agent"),
        (None, "sk-default", "Bearer sk-default"),
        (None, None, None),
    ],
    ids=["agent-key", "default-key", "no-key"],
)
async def test_bearer_header_from_the_agent_key_else_the_default_else_none(
    model: Model,
    client: httpx.AsyncClient,
    history: History,
    agent_key: str | None,
    default_key: str | None,
    expected: str | None,
) -> None:
    caller = OpenAICaller(client, history, default_api_key=default_key)
    opts = options(api_key=agent_key) if agent_key else options()
    outcome = await caller.run_turn(turn(), model.base_url, opts)
    assert outcome.kind == "reply"
    [request] = model.fake.completions()
    assert request.headers.get("authorization") == expected


async def test_base_url_with_a_trailing_slash(model: Model, caller: OpenAICaller) -> None:
    outcome = await caller.run_turn(turn("hi"), model.base_url + "/", options())
    assert outcome.content == "echo: hi"
    assert [r.path for r in model.fake.requests] == ["/v1/chat/completions"]


# ----------------------------------------------------------------------------- the answer


async def test_streamed_chunks_reach_on_chunk_in_order_and_make_the_reply(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    outcome = await caller.run_turn(turn("where is it now"), model.base_url, options())
    assert chunks.seen == [
        ("t_1", CONV, 0, "echo: "),
        ("t_1", CONV, 1, "where "),
        ("t_1", CONV, 2, "is "),
        ("t_1", CONV, 3, "it "),
        ("t_1", CONV, 4, "now"),
    ]
    assert outcome == AgentOutcome(
        "reply",
        "echo: where is it now",
        metadata={"model": MODEL, "finish_reason": "stop"},
        streamed_chunks=5,
    )
    assert caller.last_ok["bot1"] == pytest.approx(time.time(), abs=5)
    assert "bot1" not in caller.last_error


async def test_a_usage_chunk_without_choices_is_ignored(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    model.fake.plan(Answer.reply("fine thanks", include_usage=True))
    outcome = await caller.run_turn(turn(), model.base_url, options())
    assert (outcome.kind, outcome.content) == ("reply", "fine thanks")
    assert [c[3] for c in chunks.seen] == ["fine ", "thanks"]


async def test_a_plain_json_completion_is_the_reply(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    model.fake.plan(Answer.plain_json("One whole answer."))
    outcome = await caller.run_turn(turn(), model.base_url, options())
    assert outcome == AgentOutcome(
        "reply", "One whole answer.", metadata={"model": MODEL, "finish_reason": "stop"}
    )
    assert chunks.seen == []
    assert model.bodies()[0]["stream"] is True  # asked for a stream; the server chose JSON


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_an_empty_completion_is_an_error(
    model: Model, caller: OpenAICaller, chunks: Chunks, stream: bool
) -> None:
    model.fake.plan(Answer.empty(stream=stream))
    outcome = await caller.run_turn(turn(), model.base_url, options())
    assert outcome.kind == "error"
    assert outcome.error_code == "empty_completion"
    assert outcome.error_details == {"finish_reason": "stop"}
    assert chunks.seen == []
    assert len(model.fake.completions()) == 1  # not retried
    assert "empty_completion" in caller.last_error["bot1"]


async def test_whitespace_only_completion_is_an_error(model: Model, caller: OpenAICaller) -> None:
    model.fake.plan(Answer(chunks=["  ", "\n"]))
    outcome = await caller.run_turn(turn(), model.base_url, options())
    assert (outcome.kind, outcome.error_code) == ("error", "empty_completion")


# ------------------------------------------------------------------------------ retries


async def test_429_with_retry_after_then_success_gives_one_reply(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    model.fake.plan(Answer.rate_limited(1))
    started = time.monotonic()
    outcome = await caller.run_turn(turn("hello"), model.base_url, options())
    elapsed = time.monotonic() - started
    assert (outcome.kind, outcome.content) == ("reply", "echo: hello")
    assert len(model.fake.completions()) == 2
    assert model.bodies()[0] == model.bodies()[1]  # the same request again
    assert elapsed >= 1.0  # Retry-After honoured (the first backoff alone is at most 0.02 s)
    assert [c[2] for c in chunks.seen] == [0, 1]  # one reply's chunks, from index 0
    assert "bot1" not in caller.last_error


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_server_errors_before_the_answer_are_retried(
    model: Model, caller: OpenAICaller, status: int
) -> None:
    model.fake.plan(Answer.server_error(status), Answer.server_error(status))
    outcome = await caller.run_turn(turn("again"), model.base_url, options())
    assert (outcome.kind, outcome.content) == ("reply", "echo: again")
    assert len(model.fake.completions()) == 3


async def test_a_stream_cut_before_its_first_chunk_is_retried(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    model.fake.plan(Answer.broken(after=0))
    outcome = await caller.run_turn(turn("once more"), model.base_url, options())
    assert (outcome.kind, outcome.content) == ("reply", "echo: once more")
    assert len(model.fake.completions()) == 2
    assert [c[3] for c in chunks.seen] == ["echo: ", "once ", "more"]


async def test_retries_then_gives_up_when_the_next_try_would_pass_the_deadline(
    model: Model, client: httpx.AsyncClient, history: History
) -> None:
    # a Retry-After is honoured up to 100 s, and the last one asks for more than the turn has
    caller = OpenAICaller(client, history, retry_base=0.02, retry_cap=10)
    model.fake.plan(
        Answer.server_error(503),
        Answer.rate_limited(1),
        Answer.error(503, "Service overloaded", "server_error", headers={"retry-after": "90"}),
        Answer.reply("too late"),
    )
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match=r"\(HTTP 503: Service overloaded\)"):
        # the turn has 60 s: ending within 30 s means it gave up at once, not at the deadline
        await within(30, caller.run_turn(turn(timeout=60.0), model.base_url, options()))
    assert time.monotonic() - started >= 1.0  # the 429's Retry-After was honoured
    assert len(model.fake.completions()) == 3
    assert caller.last_error["bot1"] == "HTTP 503: Service overloaded"


async def test_a_retry_after_beyond_the_deadline_gives_up_at_once(
    model: Model, client: httpx.AsyncClient, history: History
) -> None:
    caller = OpenAICaller(client, history, retry_base=0.02)  # the default cap: 10 s (x 10)
    model.fake.plan(Answer.rate_limited(90))
    with pytest.raises(AgentUnavailable, match="HTTP 429: Rate limit reached"):
        # the turn has 60 s: ending within 30 s means it gave up at once, not at the deadline
        await within(30, caller.run_turn(turn(timeout=60.0), model.base_url, options()))
    assert len(model.fake.completions()) == 1


async def test_connection_refused_until_the_deadline_is_unavailable(
    refused_url: str, client: httpx.AsyncClient, history: History
) -> None:
    caller = OpenAICaller(client, history, retry_base=0.01, retry_cap=0.05)  # many tries
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match="ConnectError"):
        await within(30, caller.run_turn(turn(timeout=0.8), refused_url, options()))
    assert time.monotonic() - started > 0.7  # kept trying until the deadline was near
    assert "ConnectError" in caller.last_error["bot1"]
    assert "bot1" not in caller.last_ok


async def test_a_deadline_already_passed_sends_nothing(model: Model, caller: OpenAICaller) -> None:
    with pytest.raises(AgentUnavailable):
        await caller.run_turn(turn(timeout=-1), model.base_url, options())
    assert model.fake.requests == []


# ------------------------------------------------------------------------------ refusals


async def test_401_is_an_error_with_the_servers_message_and_no_retry(
    client: httpx.AsyncClient, history: History
) -> None:
    app = create_fake_openai(api_key="sk-right")
    async with serve_app(app) as url:
        fake: FakeOpenAI = app.state.fake
        caller = OpenAICaller(client, history, default_api_key="sk-wrong-key", retry_base=0.02)
        outcome = await caller.run_turn(turn(), f"{url}/v1", options())
    assert outcome.kind == "error"
    assert outcome.error_code == "model_refused"
    assert outcome.error_details == {
        "status": 401,
        "message": "Incorrect API key provided: sk-****-key.",
    }
    assert len(fake.completions()) == 1
    assert fake.requests[0].headers["authorization"] == "Bearer sk-wrong-key"
    assert "model_refused" in caller.last_error["bot1"]


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (Answer.unauthorized("Your key was revoked."), 401, "Your key was revoked."),
        (
            Answer.error(404, "The model `gpt-test` does not exist.", code="model_not_found"),
            404,
            "The model `gpt-test` does not exist.",
        ),
        (Answer.error(400, "max_tokens is too large"), 400, "max_tokens is too large"),
        (Answer(status=403, error_info={}), 403, "HTTP 403"),
    ],
    ids=["401", "404", "400", "403-without-message"],
)
async def test_other_4xx_end_the_turn_as_an_error_at_once(
    model: Model, caller: OpenAICaller, answer: Answer, status: int, message: str
) -> None:
    model.fake.plan(answer)
    outcome = await caller.run_turn(turn(), model.base_url, options())
    assert (outcome.kind, outcome.error_code) == ("error", "model_refused")
    assert outcome.error_details == {"status": status, "message": message}
    assert len(model.fake.completions()) == 1


async def test_a_stream_broken_after_some_chunks_is_an_error(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    model.fake.plan(Answer.broken(after=2, text="one two three four"))
    outcome = await caller.run_turn(turn(), model.base_url, options())
    assert (outcome.kind, outcome.error_code) == ("error", "model_stream_broken")
    assert outcome.error_details["chunks"] == 2
    assert "RemoteProtocolError" in outcome.error_details["message"]
    assert [c[2:] for c in chunks.seen] == [(0, "one "), (1, "two ")]
    assert len(model.fake.completions()) == 1  # its chunks were shown: not sent again


async def test_an_error_event_in_the_stream_is_an_error(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    model.fake.plan(Answer.stream_error("The model is overloaded.", after=1, text="so far ok"))
    outcome = await caller.run_turn(turn(), model.base_url, options())
    assert (outcome.kind, outcome.error_code) == ("error", "model_error")
    assert outcome.error_details == {"message": "The model is overloaded."}
    assert [c[3] for c in chunks.seen] == ["so "]


# ------------------------------------------------------------------------------ deadline


async def test_no_answer_before_the_deadline_is_a_timeout(
    model: Model, caller: OpenAICaller
) -> None:
    model.fake.plan(Answer.slow(math.inf))
    started = time.monotonic()
    with pytest.raises(AgentTimeout):
        await within(30, caller.run_turn(turn(timeout=0.5), model.base_url, options()))
    assert time.monotonic() - started > 0.4  # waited for the answer until the deadline
    assert caller.last_error["bot1"] == "no answer before the deadline"
    await wait_until(lambda: model.fake.abandoned == 1, 5)  # the request was hung up on


async def test_a_stream_stalling_past_the_deadline_is_a_timeout(
    model: Model, caller: OpenAICaller, chunks: Chunks
) -> None:
    model.fake.plan(Answer.stalled(after=1, text="quick then stuck"))
    with pytest.raises(AgentTimeout):
        await caller.run_turn(turn(timeout=0.5), model.base_url, options())
    assert [c[2:] for c in chunks.seen] == [(0, "quick ")]
    assert caller.last_error["bot1"] == "no answer before the deadline"
    await wait_until(lambda: model.fake.abandoned == 1, 5)
