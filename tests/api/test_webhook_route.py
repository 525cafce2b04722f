"""``POST /webhook/chatwoot`` answers a delivery the same whichever way it is served.

A POST with no query, ``mode=sync`` or ``mode=async`` is served by ``ChatwootRoute`` itself;
any other query goes through FastAPI's parameter handling. A query parameter the endpoint does
not know (``via=fastapi``) changes nothing else, so every delivery below is sent both ways
and must get the same status, headers and JSON body, and count the same in the metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from chatbridge.channels.signatures import sign_chatwoot
from tests.api.live import Live

FASTAPI_WAY = {"via": "fastapi"}


def signed(live: Live, body: bytes, **extra: str) -> list[tuple[str, str]]:
    assert live.secret is not None
    headers = {
        "Content-Type": "application/json",
        **sign_chatwoot(live.secret, body, int(time.time())),
    }
    return [*headers.items(), *extra.items()]


def post(
    client: httpx.Client, body: bytes, headers: list[tuple[str, str]], params: dict[str, str]
) -> httpx.Response:
    return client.post("/webhook/chatwoot", content=body, headers=headers, params=params)


def counted(live: Live, result: str) -> float:
    registry = live.stack.bridge.metrics.registry
    labels = {"channel": "chatwoot", "result": result}
    return registry.get_sample_value("chatbridge_webhooks_total", labels) or 0.0


def answered(live: Live) -> float:
    """Chatwoot deliveries answered with any status (the echoes of the stack's own replies
    among them: they may arrive at any moment)."""
    registry = live.stack.bridge.metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "chatbridge_webhooks"
        for sample in metric.samples
        if sample.name == "chatbridge_webhooks_total" and sample.labels["channel"] == "chatwoot"
    )


def settled(live: Live) -> tuple[float, float]:
    """``(timed, answered)`` at a moment when no delivery is between being counted and being
    timed (the stack serves in another thread; the two happen one statement apart)."""
    deadline = time.monotonic() + 10
    while True:
        first = timed(live), answered(live)
        if first == (timed(live), answered(live)) or time.monotonic() > deadline:
            return first


def timed(live: Live) -> float:
    registry = live.stack.bridge.metrics.registry
    labels = {"channel": "chatwoot"}
    return registry.get_sample_value("chatbridge_webhook_seconds_count", labels) or 0.0


def as_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


# Each case: (body, headers) from the live stack and a valid message_created.
Case = Callable[[Live, dict[str, Any]], tuple[bytes, list[tuple[str, str]]]]

REFUSALS: dict[str, tuple[Case, int, str]] = {
    "bad signature": (
        lambda live, valid: (as_json(valid), signed(live, b"{}")),
        401,
        "BadSignature",
    ),
    "no signature": (
        lambda live, valid: (as_json(valid), [("Content-Type", "application/json")]),
        401,
        "BadSignature",
    ),
    "declared as text": (
        lambda live, valid: (
            as_json(valid),
            [("Content-Type", "text/plain"), *signed(live, as_json(valid))[1:]],
        ),
        415,
        "BadInput",
    ),
    "the first of two Content-Types counts": (
        lambda live, valid: (
            as_json(valid),
            [("Content-Type", "text/plain"), *signed(live, as_json(valid))],
        ),
        415,
        "BadInput",
    ),
    "malformed JSON": (
        lambda live, valid: (b'{"event": ', signed(live, b'{"event": ')),
        400,
        "BadInput",
    ),
    "NaN": (
        lambda live, valid: (
            as_json(valid).replace(b'"private": false', b'"private": false, "x": NaN'),
            signed(
                live,
                as_json(valid).replace(b'"private": false', b'"private": false, "x": NaN'),
            ),
        ),
        400,
        "BadInput",
    ),
    "unknown inbox": (
        lambda live, valid: (
            as_json({**valid, "inbox": {"id": 4242}}),
            signed(live, as_json({**valid, "inbox": {"id": 4242}})),
        ),
        404,
        "UnknownInbox",
    ),
    "delivery id too long": (
        lambda live, valid: (
            as_json(valid),
            signed(live, as_json(valid), **{"X-Chatwoot-Delivery": "d" * 201}),
        ),
        400,
        "BadInput",
    ),
}


@pytest.mark.parametrize("case, status, result", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refusal_is_the_same_both_ways(
    live: Live, client: httpx.Client, case: Case, status: int, result: str
) -> None:
    valid = live.message_created(conversation_id=1, content="same both ways")
    body, headers = case(live, valid)
    assert b'"private": false' in as_json(valid)  # what the NaN case edits
    answers = []
    for params in ({}, FASTAPI_WAY):
        before = counted(live, result)
        r = post(client, body, headers, params)
        assert r.status_code == status, r.text
        assert counted(live, result) == before + 1
        answers.append((r.status_code, r.headers["content-type"], r.json()))
    assert answers[0] == answers[1]


def test_a_stored_delivery_is_answered_and_counted_the_same_both_ways(
    live: Live, client: httpx.Client
) -> None:
    answers = []
    for number, params in enumerate(({}, {"mode": "async"}, FASTAPI_WAY)):
        valid = live.message_created(conversation_id=1, content=f"hello {number}")
        body = as_json({**valid, "id": 770_000 + number})
        before, (seconds, total) = counted(live, "accepted"), settled(live)
        r = post(client, body, signed(live, body, **{"X-Chatwoot-Delivery": f"d-{number}"}), params)
        assert r.status_code == 200, r.text
        assert counted(live, "accepted") == before + 1
        # every delivery answered is timed once: this one, and any echo that came meanwhile
        now_timed, now_answered = settled(live)
        assert now_timed - seconds == now_answered - total >= 1
        answer = r.json()
        assert answer["message_id"] and answer["turn_id"]
        answers.append((answer["status"], answer["conversation_id"], r.headers["content-type"]))
    assert answers[0] == answers[1] == answers[2]

    # The same delivery again is a duplicate, both ways.
    for params in ({}, FASTAPI_WAY):
        r = post(client, body, signed(live, body, **{"X-Chatwoot-Delivery": "d-2"}), params)
        assert r.status_code == 200 and r.json()["status"] == "duplicate", r.text


def test_an_ignored_event_is_the_same_both_ways(live: Live, client: httpx.Client) -> None:
    body = as_json({"event": "contact_updated", "id": 5})
    answers = [post(client, body, signed(live, body), params) for params in ({}, FASTAPI_WAY)]
    assert [r.status_code for r in answers] == [200, 200]
    assert (
        answers[0].json()
        == answers[1].json()
        == {
            "status": "ignored",
            "reason": "event_not_handled:contact_updated",
        }
    )


def test_only_fastapi_validates_the_other_queries(live: Live, client: httpx.Client) -> None:
    """The queries served directly are exactly the valid ones; the rest stay FastAPI's 422."""
    body = as_json({"event": "contact_updated"})
    for query in ("mode=SYNC", "mode=", "mode=sync&mode=bogus"):
        r = client.post(f"/webhook/chatwoot?{query}", content=body, headers=signed(live, body))
        assert r.status_code == 422, (query, r.text)
        assert r.json()["error"]["details"][0]["loc"] == ["query", "mode"]
    for query in ("mode=bogus&mode=async", "mode=sync"):
        r = client.post(f"/webhook/chatwoot?{query}", content=body, headers=signed(live, body))
        assert r.status_code == 200, (query, r.text)
