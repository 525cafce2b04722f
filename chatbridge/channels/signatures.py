"""Webhook signatures: sign and verify Chatwoot's ``X-Chatwoot-Signature``.

Chatwoot (4.12+ for account webhooks, 4.13+ for agent bots and API inboxes) signs every
delivery to a target that has a secret::

    X-Chatwoot-Timestamp: <unix seconds>
    X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

Verification works on the raw request bytes (never on re-serialised JSON) and compares in
constant time. Both functions are pure, so the mock Chatwoot signs with the same code the
bridge verifies with.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from chatbridge.errors import BadSignature
from chatbridge.signing import sha256_signature as sha256_signature  # WhatsApp's Meta scheme

TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
SIGNATURE_HEADER = "X-Chatwoot-Signature"
DELIVERY_HEADER = "X-Chatwoot-Delivery"

_SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,20}")


def find_header(headers: Mapping[str, str], name: str) -> str | None:
    """Return the value of header ``name``, looked up case-insensitively.

    Works for case-insensitive mappings (starlette ``Headers``, ``httpx.Headers``) and for
    plain dicts whose keys may be spelled in any case.
    """
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return candidate
    return None


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with ``secret`` and fed nothing: each delivery copies it instead
    of deriving the key pads again (a bridge has one secret, or a few)."""
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def _digest(secret: str, body: bytes, timestamp: str) -> str:
    mac = _keyed(secret).copy()
    mac.update(timestamp.encode("ascii"))
    mac.update(b".")
    mac.update(body)
    return mac.hexdigest()


def sign_chatwoot(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Return the signature headers Chatwoot would send for ``body`` at ``timestamp``.

    Args:
        secret: the webhook, agent-bot or API-inbox secret.
        body: the exact bytes that will be sent.
        timestamp: Unix seconds, sent as ``X-Chatwoot-Timestamp``.
    """
    stamp = str(int(timestamp))
    return {
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: f"sha256={_digest(secret, body, stamp)}",
    }


def verify_chatwoot(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    max_age: float | None = None,
    now: float | None = None,
) -> None:
    """Check that ``body`` was signed with ``secret``; return ``None`` if it was.

    Args:
        secret: the shared secret configured for the inbox or bot.
        body: the raw request body, exactly as received.
        headers: the request headers (looked up case-insensitively).
        max_age: when set, also refuse timestamps further than this many seconds from ``now``
            (the bridge passes ``chatwoot_signature_max_age_seconds``, 300 s by default: wide
            enough for Chatwoot's own retries and queue delays). Without a window a captured
            delivery stays valid forever and can be replayed under a new (unsigned)
            ``X-Chatwoot-Delivery`` id.
        now: the current Unix time (for tests); defaults to ``time.time()``.

    Raises:
        BadSignature: a header is missing or malformed, the timestamp is too old, or the
            signature does not match.
    """
    check_chatwoot_signature(
        secret,
        body,
        find_header(headers, TIMESTAMP_HEADER),
        find_header(headers, SIGNATURE_HEADER),
        max_age=max_age,
        now=now,
    )


def check_chatwoot_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    max_age: float | None = None,
    now: float | None = None,
) -> None:
    """``verify_chatwoot`` on header values already looked up (``None`` when absent): the
    webhook endpoint reads its few headers in one pass over the request's.

    Raises:
        BadSignature: as ``verify_chatwoot``.
    """
    if timestamp is None or signature is None:
        raise BadSignature(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    timestamp = timestamp.strip()
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise BadSignature(f"malformed {TIMESTAMP_HEADER} header")
    match = _SIGNATURE_RE.fullmatch(signature.strip())
    if match is None:
        raise BadSignature(f"malformed {SIGNATURE_HEADER} header (expected sha256=<64 hex>)")
    expected = _digest(secret, body, timestamp).encode("ascii")
    given = match.group(1).lower().encode("ascii")
    if not hmac.compare_digest(expected, given):
        raise BadSignature("webhook signature does not match")
    # After the signature: "outside the window" then only ever describes an authentic (old,
    # replayed or clock-skewed) delivery, which is what an operator needs to know.
    if max_age is not None:
        current = time.time() if now is None else now
        if abs(current - int(timestamp)) > max_age:
            raise BadSignature(
                f"{TIMESTAMP_HEADER} is more than {max_age:g} s from the bridge's clock "
                "(a replayed or delayed delivery, or a clock out of sync)"
            )
