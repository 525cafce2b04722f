"""Webhook authenticity for the WhatsApp gateways, checked on the raw bytes in constant time.

* WAHA: ``X-Webhook-Hmac`` = hex HMAC-SHA512(key, raw body) (``X-Webhook-Hmac-Algorithm:
  sha512``), when a key is configured on the webhook.
* Meta Cloud API: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``.
* Evolution API: no body signature. Either a static header configured on the instance's
  webhook (``headers``), or, when those headers hold ``jwt_key``, ``Authorization: Bearer
  <JWT>`` signed HS256 with that key, payload ``{iat, exp: iat+600, app, action}``.

The signing functions exist so that the local fakes sign with the same code the bridge
verifies with. HS256 is a few lines of ``hmac``; no JWT library is needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from chatbridge.channels.signatures import find_header, sha256_signature
from chatbridge.errors import BadSignature

WAHA_HMAC_HEADER = "X-Webhook-Hmac"
WAHA_ALGORITHM_HEADER = "X-Webhook-Hmac-Algorithm"
META_SIGNATURE_HEADER = "X-Hub-Signature-256"


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("ascii"))


# ------------------------------------------------------------------------------ WAHA


def sign_waha(key: str, body: bytes) -> dict[str, str]:
    """The headers WAHA sends with ``body`` when its webhook has ``hmac.key`` = ``key``."""
    digest = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return {WAHA_HMAC_HEADER: digest, WAHA_ALGORITHM_HEADER: "sha512"}


def verify_waha(key: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raises ``BadSignature`` unless ``X-Webhook-Hmac`` is the SHA-512 HMAC of ``body``."""
    given = find_header(headers, WAHA_HMAC_HEADER)
    if not given:
        raise BadSignature(f"missing {WAHA_HMAC_HEADER} header (a WAHA HMAC key is configured)")
    algorithm = (find_header(headers, WAHA_ALGORITHM_HEADER) or "sha512").strip().lower()
    if algorithm != "sha512":
        raise BadSignature(f"unsupported {WAHA_ALGORITHM_HEADER} {algorithm[:20]!r}")
    expected = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    if not given.isascii() or not _same(expected, given):
        raise BadSignature("WAHA webhook HMAC does not match")


# ------------------------------------------------------------------------------ Meta


def sign_meta(app_secret: str, body: bytes) -> dict[str, str]:
    """The ``X-Hub-Signature-256`` header Meta sends with ``body``."""
    return {META_SIGNATURE_HEADER: sha256_signature(app_secret, body)}


def verify_meta(app_secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raises ``BadSignature`` unless ``X-Hub-Signature-256`` signs ``body`` with the secret."""
    given = find_header(headers, META_SIGNATURE_HEADER)
    if not given:
        raise BadSignature(f"missing {META_SIGNATURE_HEADER} header (a Meta app secret is set)")
    scheme, sep, digest = given.strip().partition("=")
    if scheme.lower() != "sha256" or not sep or not digest.isascii():
        raise BadSignature(f"malformed {META_SIGNATURE_HEADER} header (expected sha256=<hex>)")
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not _same(expected, digest):
        raise BadSignature("Meta webhook signature does not match")


# ------------------------------------------------------------------------------ Evolution


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt_hs256(key: str, claims: Mapping[str, Any]) -> str:
    """A compact HS256 JWT of ``claims`` (what Evolution sends as the webhook bearer)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def evolution_jwt(key: str, *, now: float | None = None) -> str:
    """The bearer token Evolution sends for a webhook with ``headers.jwt_key`` = ``key``."""
    iat = int(time.time() if now is None else now)
    return encode_jwt_hs256(
        key, {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}
    )


MAX_JWT_LIFETIME = 3600.0
"""The longest ``exp - iat`` a webhook bearer JWT may have. Evolution issues ten minutes;
a token valid for longer would be a standing credential, replayable long after a leak."""


def verify_jwt_hs256(
    key: str,
    token: str,
    *,
    now: float | None = None,
    leeway: float = 30.0,
    max_lifetime: float = MAX_JWT_LIFETIME,
) -> dict[str, Any]:
    """Check an HS256 JWT's signature and its time claims; return its claims.

    The token must carry numeric ``iat`` and ``exp``: ``iat`` not later than ``now`` plus
    ``leeway`` (clock skew), ``exp`` not passed (minus ``leeway``), and a lifetime
    ``exp - iat`` of at most ``max_lifetime`` seconds, so a token minted to last for years is
    refused even when signed with the right key.

    Raises:
        BadSignature: malformed token, another algorithm, wrong signature, missing ``iat`` or
            ``exp``, issued in the future, expired, or living longer than ``max_lifetime``.
    """
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(p.isascii() for p in parts):
        raise BadSignature("malformed bearer JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        given = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadSignature("malformed bearer JWT") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise BadSignature("bearer JWT must be signed with HS256")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    expected = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise BadSignature("bearer JWT signature does not match")
    try:
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadSignature("malformed bearer JWT payload") from exc
    if not isinstance(claims, dict):
        raise BadSignature("malformed bearer JWT payload")
    iat, exp = _numeric_claim(claims, "iat"), _numeric_claim(claims, "exp")
    current = time.time() if now is None else now
    if iat > current + leeway:
        raise BadSignature("bearer JWT is issued in the future (iat)")
    if current > exp + leeway:
        raise BadSignature("bearer JWT has expired")
    if exp - iat > max_lifetime:
        raise BadSignature(
            f"bearer JWT lives longer than {int(max_lifetime)} s (exp - iat); refused"
        )
    return claims


def _numeric_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise BadSignature(f"bearer JWT has no numeric {name}")
    return float(value)


def verify_evolution(
    headers: Mapping[str, str],
    *,
    header_name: str,
    header_value: str | None,
    jwt_key: str | None,
    now: float | None = None,
) -> None:
    """Check an Evolution webhook: the JWT bearer when ``jwt_key`` is set, else the static
    header when ``header_value`` is set; with neither configured every call passes.

    Raises:
        BadSignature: the configured check failed.
    """
    if jwt_key:
        auth = find_header(headers, "Authorization") or ""
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise BadSignature("missing Authorization: Bearer <JWT> (an Evolution jwt_key is set)")
        verify_jwt_hs256(jwt_key, token, now=now)
        return
    if header_value:
        given = find_header(headers, header_name)
        if given is None:
            raise BadSignature(f"missing {header_name} header (an Evolution webhook secret is set)")
        if not hmac.compare_digest(given.encode(), header_value.encode()):
            raise BadSignature(f"{header_name} header does not match")
