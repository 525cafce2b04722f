"""Operator sessions for the console: a signed cookie, and a CSRF token for every change.

Logging in with the admin key (``POST /console/login``) sets ``chatbridge_console``, an
HttpOnly, SameSite=Strict cookie holding ``<expires>.<nonce>.<signature>`` (HMAC-SHA256 with a
key derived from ``CHATBRIDGE_ADMIN_KEY``, so changing the admin key logs everyone out). A
state-changing request with that cookie must also carry ``X-CSRF-Token``: the HMAC of the
nonce, which the console page receives at login and a page on another site cannot read.
``require_admin`` (management) and the comms API accept either the admin key or this session.

**Logout revokes.** The cookie stays stateless (no session table to write at every login),
and logging out puts its nonce on a *revocation list* until the cookie would have expired
anyway; a replayed copy of the old cookie is refused from then on. The list lives in the rate
limiter's storage: in memory for a single process, in Redis when ``CHATBRIDGE_REDIS_URL`` is
set — which running several replicas requires anyway — so a logout on one replica holds on
every replica. When that storage cannot be read, sessions are refused (fail closed); the
admin key still works as a bearer.

**No-key mode.** Without an admin key, only a client on this machine that talks to us
directly gets in (``direct_local``): a loopback peer address *and* no proxy header. A proxy on
the same host makes every request come from 127.0.0.1, so its forwarding headers are what
tells a visitor from the operator.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import time

from starlette.requests import HTTPConnection

from chatbridge.config import Settings
from chatbridge.ratelimit import RateLimiter

log = logging.getLogger("chatbridge.console")

COOKIE = "chatbridge_console"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Without an admin key (a laptop install, loopback only) sessions are signed with a key that
# lives as long as the process.
_PROCESS_KEY = os.urandom(32)
_REVOKED = "console_revoked"

# Headers a reverse proxy adds (any ``X-Forwarded-*`` counts too). Their presence means the
# peer address is the proxy's, not the client's.
PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "x-original-forwarded-for",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "via",
    }
)


def proxied(conn: HTTPConnection) -> bool:
    """Whether the request carries a header a reverse proxy adds."""
    return any(
        name in PROXY_HEADERS or name.startswith("x-forwarded-") for name in conn.headers.keys()
    )


def direct_local(conn: HTTPConnection) -> bool:
    """Whether the client is on this machine and reached us directly: a loopback peer
    address and no proxy header (see "No-key mode" above)."""
    host = conn.client.host if conn.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback and not proxied(conn)


def reached_over_https(conn: HTTPConnection) -> bool:
    """Whether the browser's request was https: our own scheme (a TLS server, or a proxy
    whose headers the server trusts), or a proxy saying so. Only used to add ``Secure`` to
    the cookie, which a false claim cannot turn into an attack."""
    if conn.url.scheme in ("https", "wss"):
        return True
    proto = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    forwarded = conn.headers.get("forwarded", "").split(",")[0].lower().replace(" ", "")
    return proto == "https" or "proto=https" in forwarded.split(";")


def _key(settings: Settings) -> bytes:
    if settings.admin_key:
        return hashlib.sha256(b"chatbridge-console:" + settings.admin_key.encode()).digest()
    return _PROCESS_KEY


def _sign(settings: Settings, text: str) -> str:
    return hmac.new(_key(settings), text.encode(), hashlib.sha256).hexdigest()


def issue_session(settings: Settings, now: float | None = None) -> tuple[str, str]:
    """A new session: (cookie value, CSRF token)."""
    expires = int((now or time.time()) + SESSION_SECONDS)
    nonce = os.urandom(16).hex()
    body = f"{expires}.{nonce}"
    return f"{body}.{_sign(settings, body)}", csrf_token(settings, nonce)


def csrf_token(settings: Settings, nonce: str) -> str:
    return _sign(settings, f"csrf:{nonce}")


def _signed(settings: Settings, cookie: str | None) -> tuple[int, str] | None:
    """(expires, nonce) of a cookie we signed that has not expired; None otherwise."""
    if not cookie or cookie.count(".") != 2:
        return None
    expires, nonce, signature = cookie.split(".")
    if not hmac.compare_digest(signature, _sign(settings, f"{expires}.{nonce}")):
        return None
    if not expires.isdigit() or int(expires) < time.time():
        return None
    return int(expires), nonce


async def _revoked(limiter: RateLimiter, nonce: str) -> bool:
    try:
        return bool(await limiter.storage.get(f"{_REVOKED}/{nonce}"))
    except Exception:
        log.warning("console: revocation list unreadable; refusing the session")
        return True


async def session_nonce(settings: Settings, limiter: RateLimiter, cookie: str | None) -> str | None:
    """The nonce of a valid, unexpired, not revoked session cookie; None otherwise."""
    signed = _signed(settings, cookie)
    if signed is None or await _revoked(limiter, signed[1]):
        return None
    return signed[1]


async def revoke_session(settings: Settings, limiter: RateLimiter, cookie: str | None) -> bool:
    """Put a valid session cookie on the revocation list until it expires.

    Returns:
        Whether there was a session to revoke.

    Raises:
        Exception: the storage's, when the revocation could not be written.
    """
    signed = _signed(settings, cookie)
    if signed is None:
        return False
    expires, nonce = signed
    ttl = max(1, math.ceil(expires - time.time()) + 1)
    await limiter.storage.incr(f"{_REVOKED}/{nonce}", ttl)
    return True


async def console_session_ok(
    conn: HTTPConnection, settings: Settings, limiter: RateLimiter
) -> bool:
    """Whether the request comes from a logged-in console (and, if it changes something,
    carries the session's CSRF token)."""
    nonce = await session_nonce(settings, limiter, conn.cookies.get(COOKIE))
    if nonce is None:
        return False
    method = conn.scope.get("method", "GET")
    if method in SAFE_METHODS:
        return True
    sent = conn.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(sent, csrf_token(settings, nonce))
