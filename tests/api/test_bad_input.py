"""POST /webhook/chatwoot refuses bad input with a clear 4xx and writes nothing.

One live stack per backend (SQLite, PostgreSQL), a webhook secret set: every case checks the
status, the JSON error body (``error.code`` and a message naming the problem) and that no row
of any table changed. Two hypothesis tests then post arbitrary JSON, and arbitrary mutations
of a real ``message_created``, and require that none is answered with a 5xx.
"""

from __future__ import annotations

import copy
import itertools
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.live import Live

MAX_BODY = 1024 * 1024  # Settings.max_body_bytes default


def assert_refused(response: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    """``response`` is ``status`` with the JSON error envelope; its message has ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    for word in words:
        assert word in error["message"], error
    return error


def unhandled_errors(live: Live) -> float:
    """``chatbridge_errors_total{kind="unhandled"}``: the 500s the bridge logged as bugs."""
    registry = live.stack.bridge.metrics.registry
    return registry.get_sample_value("chatbridge_errors_total", {"kind": "unhandled"}) or 0.0


@pytest.fixture
def unchanged(live: Live) -> Iterator[None]:
    """The test must leave every table exactly as it found it, and log no unhandled error."""
    before = live.snapshot()
    yield
    assert live.snapshot() == before
    assert unhandled_errors(live) == 0


@pytest.fixture
def valid(live: Live) -> dict[str, Any]:
    """A realistic message_created for inbox 1 (the mock knows the conversation)."""
    return live.message_created(conversation_id=1, content="Where is my order?")


def mutate(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``payload`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    out = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return out


# --------------------------------------------------------------------------- positive control


def test_a_valid_signed_delivery_is_stored(
    live: Live, client: httpx.Client, valid: dict[str, Any]
) -> None:
    """The control: the same client and signature do get a message stored, so the refusals
    below are the endpoint's doing, and the row counts do see writes."""
    before = live.snapshot()
    r = live.webhook(client, mutate(valid, "id", 900_001))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    after = live.snapshot()
    assert after["rows"]["messages"] > before["rows"]["messages"]
    assert after["rows"]["turns"] == before["rows"]["turns"] + 1


# --------------------------------------------------------------------------- not JSON objects

NOT_OBJECTS = {
    "malformed": (b'{"event": "message_created",', "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "array": (b"[1, 2, 3]", "JSON object"),
    "string": (b'"message_created"', "JSON object"),
    "number": (b"42", "JSON object"),
    "null": (b"null", "JSON object"),
    "invalid utf-8": (b'{"event": "\xff\xfe"}', "not valid JSON"),
    "too deep": (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    "huge number literal": (b'{"id": ' + b"9" * 5000 + b"}", "not valid JSON"),
}


@pytest.mark.parametrize("body, words", NOT_OBJECTS.values(), ids=NOT_OBJECTS.keys())
@pytest.mark.usefixtures("unchanged")
def test_a_body_that_is_not_a_json_object_is_400(
    live: Live, client: httpx.Client, body: bytes, words: str
) -> None:
    assert_refused(live.webhook(client, body), 400, "invalid_json", words)


# --------------------------------------------------------------------------- wrong shapes

WRONG_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "event not a string": (lambda p: mutate(p, "event", 5), "event"),
    "event missing": (lambda p: mutate(p, "event", ...), "event"),
    "conversation.id a string": (lambda p: mutate(p, "conversation.id", "1"), "conversation.id"),
    "conversation.id a float": (lambda p: mutate(p, "conversation.id", 1.5), "conversation.id"),
    "conversation.id a bool": (lambda p: mutate(p, "conversation.id", True), "conversation.id"),
    "conversation a list": (lambda p: mutate(p, "conversation", [1]), "conversation"),
    "conversation missing": (lambda p: mutate(p, "conversation", ...), "conversation"),
    "inbox.id a list": (lambda p: mutate(p, "inbox.id", [1]), "inbox.id"),
    "inbox a string": (lambda p: mutate(p, "inbox", "1"), "inbox"),
    "inbox missing": (
        lambda p: mutate(mutate(p, "inbox", ...), "conversation.inbox_id", ...),
        "inbox.id",
    ),
    "content an object": (lambda p: mutate(p, "content", {"text": "hi"}), "content"),
    "sender a string": (lambda p: mutate(p, "sender", "bob"), "sender"),
    "sender a list": (lambda p: mutate(p, "sender", [{"id": 1}]), "sender"),
    "sender.name a number": (lambda p: mutate(p, "sender.name", 7), "sender.name"),
    "message id missing": (lambda p: mutate(p, "id", ...), "id"),
    "message_type a number": (lambda p: mutate(p, "message_type", 0), "message_type"),
    "private a string": (lambda p: mutate(p, "private", "no"), "private"),
    "attachments an object": (lambda p: mutate(p, "attachments", {"a": 1}), "attachments"),
    "account.id a string": (lambda p: mutate(p, "account.id", "1"), "account.id"),
    "created_at a list": (lambda p: mutate(p, "created_at", [2024]), "created_at"),
    "NUL in content": (lambda p: mutate(p, "content", "a\x00b"), "content: text contains a NUL"),
    "unpaired surrogate in sender.name": (
        lambda p: mutate(p, "sender.name", "Ann \ud800"),
        "sender.name: text contains an unpaired surrogate",
    ),
    "NUL in a key": (
        lambda p: mutate(p, "conversation.additional_attributes", {"a\x00": 1}),
        "a key of conversation.additional_attributes",
    ),
}


@pytest.mark.parametrize("change, words", WRONG_FIELDS.values(), ids=WRONG_FIELDS.keys())
@pytest.mark.usefixtures("unchanged")
def test_a_field_of_the_wrong_type_is_400_naming_it(
    live: Live,
    client: httpx.Client,
    valid: dict[str, Any],
    change: Callable[[dict[str, Any]], dict[str, Any]],
    words: str,
) -> None:
    assert_refused(live.webhook(client, change(valid)), 400, "invalid_payload", words)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.usefixtures("unchanged")
def test_nan_or_infinity_is_not_json(
    live: Live, client: httpx.Client, valid: dict[str, Any], number: float
) -> None:
    """Python reads them, PostgreSQL's JSON does not: refused the same on every store."""
    payload = mutate(valid, "conversation.additional_attributes", {"score": number})
    body = json.dumps(payload, allow_nan=True).encode()
    assert_refused(live.webhook(client, body), 400, "invalid_json", "is not valid JSON")


@pytest.mark.usefixtures("unchanged")
def test_an_unknown_inbox_is_404_naming_it(
    live: Live, client: httpx.Client, valid: dict[str, Any]
) -> None:
    payload = mutate(mutate(valid, "inbox.id", 999), "conversation.inbox_id", 999)
    error = assert_refused(live.webhook(client, payload), 404, "unknown_inbox", "inbox 999")
    assert error["details"] == {"channel": "chatwoot", "inbox_id": 999}


TOO_BIG = {
    # Refused by the parser on both stores, naming the field, before anything is written.
    "conversation.status": ("s" * 40, "conversation.status is longer than 20"),
    "content_type": ("c" * 60, "content_type is longer than 40"),
    "id": (10**300, "id must be between 0 and"),
    "inbox.id": (2**31, "inbox.id must be between 0 and"),
}


@pytest.mark.parametrize("path, value_and_words", TOO_BIG.items(), ids=TOO_BIG.keys())
@pytest.mark.usefixtures("unchanged")
def test_a_value_the_store_cannot_hold_is_refused_naming_the_field(
    live: Live, client: httpx.Client, valid: dict[str, Any], path: str, value_and_words: Any
) -> None:
    value, words = value_and_words
    r = live.webhook(client, mutate(valid, path, value), headers={"X-Chatwoot-Delivery": "d-1"})
    assert_refused(r, 400, "invalid_payload", words)


@pytest.mark.usefixtures("unchanged")
def test_an_overlong_delivery_header_is_refused(
    live: Live, client: httpx.Client, valid: dict[str, Any]
) -> None:
    r = live.webhook(client, valid, headers={"X-Chatwoot-Delivery": "d" * 300})
    assert_refused(r, 400, "invalid_payload", "X-Chatwoot-Delivery")


def test_an_overlong_contact_name_is_cut_not_refused(
    live: Live, client: httpx.Client, valid: dict[str, Any]
) -> None:
    """A customer's message is never refused for a long display name: it is stored cut."""
    payload = mutate(mutate(valid, "id", 900_002), "sender.name", "n" * 400)
    before = live.snapshot()
    r = live.webhook(client, payload)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    after = live.snapshot()
    assert after["rows"]["turns"] == before["rows"]["turns"] + 1


# --------------------------------------------------------------------------- transport level


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_body_with_content_length_is_413(live: Live, client: httpx.Client) -> None:
    body = b'{"event": "' + b"x" * MAX_BODY + b'"}'
    assert_refused(live.webhook(client, body), 413, "payload_too_large", str(MAX_BODY))


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_chunked_body_is_413(live: Live, client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"event": "'
        for _ in range(20):
            yield b"x" * (64 * 1024)
        yield b'"}'

    r = client.post(
        "/webhook/chatwoot", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in r.request.headers
    assert_refused(r, 413, "payload_too_large", str(MAX_BODY))


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
@pytest.mark.usefixtures("unchanged")
def test_a_body_not_declared_as_json_is_415(
    live: Live, client: httpx.Client, valid: dict[str, Any], content_type: str
) -> None:
    r = live.webhook(client, valid, headers={"Content-Type": content_type})
    assert_refused(r, 415, "unsupported_media_type", "Content-Type", content_type)


def test_json_media_types_with_parameters_are_accepted(
    live: Live, client: httpx.Client, valid: dict[str, Any]
) -> None:
    for n, content_type in enumerate(("application/json; charset=utf-8", "application/vnd+json")):
        before = live.snapshot()
        r = live.webhook(
            client, mutate(valid, "id", 900_100 + n), headers={"Content-Type": content_type}
        )
        # parsed and stored, not merely answered 200 (an ignored payload is a 200 too)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted", r.text
        after = live.snapshot()  # also lets the turn finish before the next test looks
        assert after["rows"]["messages"] > before["rows"]["messages"]
        assert after["rows"]["turns"] == before["rows"]["turns"] + 1


@pytest.mark.usefixtures("unchanged")
def test_a_client_that_hangs_up_mid_body_is_not_an_error(live: Live) -> None:
    def disconnects() -> float:
        value = live.stack.bridge.metrics.registry.get_sample_value(
            "chatbridge_webhooks_total", {"channel": "chatwoot", "result": "ClientDisconnect"}
        )
        return value or 0.0

    before = disconnects()
    url = httpx.URL(live.url)
    assert url.host and url.port
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /webhook/chatwoot HTTP/1.1\r\nHost: bridge\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            b'{"event": "message_created", '
        )
    deadline = time.monotonic() + 10
    while disconnects() == before:  # the bridge has seen the hang-up
        assert time.monotonic() < deadline, "the bridge never noticed the disconnect"
        time.sleep(0.01)


SIGNATURES = {
    "unsigned": ({}, "missing"),
    "wrong signature": (
        {"X-Chatwoot-Timestamp": "1700000000", "X-Chatwoot-Signature": "sha256=" + "0" * 64},
        "does not match",
    ),
    "malformed signature": (
        {"X-Chatwoot-Timestamp": "1700000000", "X-Chatwoot-Signature": "md5=abc"},
        "malformed",
    ),
    "malformed timestamp": (
        {"X-Chatwoot-Timestamp": "yesterday", "X-Chatwoot-Signature": "sha256=" + "0" * 64},
        "malformed",
    ),
}


@pytest.mark.parametrize("headers, words", SIGNATURES.values(), ids=SIGNATURES.keys())
@pytest.mark.usefixtures("unchanged")
def test_a_bad_or_missing_signature_is_401(
    live: Live, client: httpx.Client, valid: dict[str, Any], headers: dict[str, str], words: str
) -> None:
    r = live.webhook(client, valid, headers=headers, sign=False)
    assert_refused(r, 401, "bad_signature", words)


@pytest.mark.usefixtures("unchanged")
def test_the_signature_is_checked_before_the_body_is_parsed(
    live: Live, client: httpx.Client
) -> None:
    assert_refused(live.webhook(client, b"{not json", sign=False), 401, "bad_signature")


@pytest.mark.usefixtures("unchanged")
def test_a_signature_of_another_body_is_401(
    live: Live, client: httpx.Client, valid: dict[str, Any]
) -> None:
    from chatbridge.channels.signatures import sign_chatwoot

    assert live.secret is not None
    headers = sign_chatwoot(live.secret, b"{}", 1_700_000_000)
    r = live.webhook(client, valid, headers=headers, sign=False)
    assert_refused(r, 401, "bad_signature", "does not match")


@pytest.mark.parametrize("mode", ["bogus", "SYNC", ""])
@pytest.mark.usefixtures("unchanged")
def test_an_unknown_mode_is_422(
    live: Live, client: httpx.Client, valid: dict[str, Any], mode: str
) -> None:
    r = live.webhook(client, valid, params={"mode": mode})
    error = assert_refused(r, 422, "invalid_request", "mode")
    assert error["details"][0]["loc"] == ["query", "mode"]


@pytest.mark.usefixtures("unchanged")
def test_other_methods_are_405_in_the_same_shape(live: Live, client: httpx.Client) -> None:
    for method in ("GET", "PUT", "DELETE"):
        assert_refused(client.request(method, "/webhook/chatwoot"), 405, "method_not_allowed")


# --------------------------------------------------------------------------- properties

EVENTS = [
    "message_created",
    "message_updated",
    "conversation_created",
    "conversation_status_changed",
    "conversation_updated",
    "conversation_opened",
    "conversation_resolved",
    "webwidget_triggered",
]
_odd_text = st.lists(
    st.text(max_size=8) | st.sampled_from(["\x00", "\ud800", "\udfff", "é", "💬", "n" * 300]),
    max_size=4,
).map("".join)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([-1, 2**31, 2**63, 10**30, 10**300])
    | st.floats()
    | _odd_text
    | st.sampled_from([*EVENTS, "incoming", "outgoing", "template", "open", "pending"])
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_odd_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(
    st.sampled_from(["event", "id", "conversation", "inbox", "content", "sender", "account"])
    | _odd_text,
    json_values,
    max_size=6,
)


def encode(value: Any) -> bytes:
    """JSON as a lenient client would write it: NaN allowed, surrogates as ``\\u`` escapes."""
    return json.dumps(value, allow_nan=True).encode()


def assert_not_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["code"]
        assert response.json()["error"]["message"]


PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_arbitrary_json_is_never_a_server_error(live: Live, client: httpx.Client) -> None:
    @PROPERTY_SETTINGS
    @given(body=json_values | json_objects)
    def post(body: Any) -> None:
        assert_not_5xx(live.webhook(client, encode(body)))

    post()
    assert unhandled_errors(live) == 0


_big_ints = st.sampled_from([-1, 0, 2**31, 2**63, 10**30, 10**300]) | st.integers()
_objects = st.dictionaries(_odd_text, json_values, max_size=3)
# Fields the bridge reads and stores, with values of the right type but extreme content
# (NUL, surrogates, long text, huge numbers): those get past the parser to the database.
TYPED_FIELDS = {
    **dict.fromkeys(
        "content content_type source_id created_at sender.name sender.email "
        "sender.phone_number sender.identifier conversation.status conversation.channel".split(),
        _odd_text,
    ),
    **dict.fromkeys("id sender.id account.id conversation.id".split(), _big_ints),
    **dict.fromkeys(
        "conversation.additional_attributes sender.custom_attributes".split(), _objects
    ),
    "attachments": st.lists(
        st.fixed_dictionaries(
            {"data_url": _odd_text, "file_type": _odd_text, "file_size": _big_ints}
        ),
        max_size=2,
    ),
}
typed_mutation = st.sampled_from(sorted(TYPED_FIELDS)).flatmap(
    lambda path: st.tuples(st.just(tuple(path.split("."))), TYPED_FIELDS[path])
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, dict) and isinstance(key, str):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def apply_mutation(payload: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set (or with ``...`` delete) ``path`` in ``payload``, if an earlier mutation left it."""
    node = payload
    for key in path[:-1]:
        node = _child(node, key)
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str):
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if value is ...:
            del node[last]
        else:
            node[last] = value


def test_mutated_message_created_is_never_a_server_error(
    live: Live, client: httpx.Client, valid: dict[str, Any]
) -> None:
    paths = sorted(_paths(valid), key=repr)
    anywhere = st.tuples(st.sampled_from(paths), st.just(...) | json_values)
    fresh_ids = itertools.count(10**7)

    @PROPERTY_SETTINGS
    @given(
        mutations=st.lists(typed_mutation | anywhere, min_size=1, max_size=3),
        delivery=st.sampled_from([None, "fresh"]) | st.text("0123456789abcdef", max_size=400),
    )
    def post(mutations: list[tuple[tuple[Any, ...], Any]], delivery: str | None) -> None:
        payload: Any = copy.deepcopy(valid)
        message_id = next(fresh_ids)
        payload["id"] = message_id  # a new message unless a mutation says otherwise
        for path, value in mutations:
            apply_mutation(payload, path, value)
        if delivery == "fresh":
            delivery = f"delivery-{message_id}"
        headers = {"X-Chatwoot-Delivery": delivery} if delivery else {}
        assert_not_5xx(live.webhook(client, encode(payload), headers=headers))

    post()
    live.snapshot()  # everything accepted has been answered before the module moves on
    assert unhandled_errors(live) == 0
