"""The pieces the webhook endpoint calls on header values it has already looked up:
``check_chatwoot_signature`` and ``parse_delivery`` decide exactly as ``verify_chatwoot``
and ``parse_webhook`` do on the whole headers."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbridge.channels.chatwoot import parse_delivery, parse_webhook
from chatbridge.channels.signatures import (
    check_chatwoot_signature,
    sign_chatwoot,
    verify_chatwoot,
)
from chatbridge.errors import BadInput

SECRETS = ["first-secret-0123456", "second-secret-654321", "ünïcode-secret-ßßßß"]


def outcome(check: object, *args: object, **kwargs: object) -> str:
    try:
        check(*args, **kwargs)  # type: ignore[operator]
    except BadInput as exc:
        return f"{type(exc).__name__}: {exc.message}"
    return "ok"


@given(
    signer=st.sampled_from(SECRETS),
    checker=st.sampled_from(SECRETS),
    body=st.binary(max_size=200),
    stamp=st.integers(min_value=0, max_value=2**40),
    now=st.integers(min_value=0, max_value=2**40),
)
def test_the_keyed_signature_check_matches_the_contract_formula(
    signer: str, checker: str, body: bytes, stamp: int, now: int
) -> None:
    """Secrets used in turn (each HMAC key is derived once and copied): a signature made
    with one secret is accepted by it alone, as the formula itself says."""
    headers = sign_chatwoot(signer, body, stamp)
    expected = hmac.new(checker.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert (headers["X-Chatwoot-Signature"] == f"sha256={expected.hexdigest()}") == (
        signer == checker
    )
    result = outcome(
        check_chatwoot_signature,
        checker,
        body,
        headers["X-Chatwoot-Timestamp"],
        headers["X-Chatwoot-Signature"],
        max_age=300,
        now=now,
    )
    assert result == outcome(verify_chatwoot, checker, body, headers, max_age=300, now=now)
    if signer != checker:
        assert result == "BadSignature: webhook signature does not match"
    elif abs(now - stamp) > 300:
        assert "more than 300 s" in result
    else:
        assert result == "ok"


@pytest.mark.parametrize(
    "timestamp, signature",
    [(None, "sha256=" + "0" * 64), ("1700000000", None), (" 17x ", "sha256=00"), ("1", "md5=1")],
)
def test_missing_and_malformed_headers_are_refused_alike(
    timestamp: str | None, signature: str | None
) -> None:
    headers = {
        name: value
        for name, value in (
            ("X-Chatwoot-Timestamp", timestamp),
            ("X-Chatwoot-Signature", signature),
        )
        if value is not None
    }
    result = outcome(check_chatwoot_signature, SECRETS[0], b"{}", timestamp, signature)
    assert result.startswith("BadSignature")
    assert result == outcome(verify_chatwoot, SECRETS[0], b"{}", headers)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"event": "message_updated"}).encode(),
        json.dumps({"event": "conversation_opened", "id": 3, "inbox_id": 1}).encode(),
        json.dumps({"event": 5}).encode(),
        b"[]",
        b"{",
    ],
)
@pytest.mark.parametrize("delivery", [None, "d-1", "d" * 201])
def test_parse_delivery_is_parse_webhook_without_the_headers(
    body: bytes, delivery: str | None
) -> None:
    headers = {} if delivery is None else {"x-chatwoot-delivery": delivery}

    def parse(fn: object, *args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)  # type: ignore[operator]
        except BadInput as exc:
            return (type(exc), exc.code, exc.message)

    direct = parse(parse_delivery, body, delivery_id=delivery, default_account_id=7)
    assert direct == parse(parse_webhook, headers, body, secret=None, default_account_id=7)
