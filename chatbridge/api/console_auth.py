"""Operator sessions for the console: a signed cookie, and a CSRF token for every change.

Logging in (``POST /console/login``) with an operator's email and password, or with the admin
key, sets ``chatbridge_console``, an HttpOnly, SameSite=Strict cookie holding
``<expires>.<nonce>.<subject>.<signature>`` (HMAC-SHA256 with a key derived from
``CHATBRIDGE_ADMIN_KEY``, so changing the admin key logs everyone out). The subject names who
logged in: ``key`` (the admin key, which acts as an admin) or ``<operator id>~<session
version>`` — the operator's account must still be active and at that version (a new password,
a new role or a disabled account moves it on, ending older sessions). A state-changing request
with that cookie must also carry ``X-CSRF-Token``: the HMAC of the nonce, which the console
page receives at login and a page on another site cannot read. ``require_admin``
(management) and the comms API accept either the admin key or this session, and ``admit``
refuses an ``agent``-role operator the admin screens (``chatbridge.operators.roles``).

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
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from chatbridge.config import Settings
from chatbridge.errors import BadInput
from chatbridge.operators.roles import KEY_ADMIN, Principal, Role, admin_only
from chatbridge.ratelimit import RateLimiter

if TYPE_CHECKING:
    from chatbridge.store import Store

log = logging.getLogger("chatbridge.console")

COOKIE = "chatbridge_console"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Without an admin key (a laptop install, loopback only) sessions are signed with a key that
# lives as long as the process.
_PROCESS_KEY = os.urandom(32)
_REVOKED = "console_revoked"
KEY_SUBJECT = "key"

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


def issue_session(
    settings: Settings, now: float | None = None, subject: str = KEY_SUBJECT
) -> tuple[str, str]:
    """A new session of ``subject`` (see the module docstring): (cookie value, CSRF token)."""
    expires = int((now or time.time()) + SESSION_SECONDS)
    nonce = os.urandom(16).hex()
    body = f"{expires}.{nonce}.{subject}"
    return f"{body}.{_sign(settings, body)}", csrf_token(settings, nonce)


def operator_subject(operator_id: str, session_version: int) -> str:
    """The cookie's subject for an operator's session."""
    return f"{operator_id}~{session_version}"


def csrf_token(settings: Settings, nonce: str) -> str:
    return _sign(settings, f"csrf:{nonce}")


def _signed(settings: Settings, cookie: str | None) -> tuple[int, str, str] | None:
    """(expires, nonce, subject) of a cookie we signed that has not expired; None otherwise."""
    if not cookie or cookie.count(".") != 3:
        return None
    expires, nonce, subject, signature = cookie.split(".")
    if not hmac.compare_digest(signature, _sign(settings, f"{expires}.{nonce}.{subject}")):
        return None
    if not expires.isdigit() or int(expires) < time.time():
        return None
    return int(expires), nonce, subject


async def _revoked(limiter: RateLimiter, nonce: str) -> bool:
    try:
        return bool(await limiter.storage.get(f"{_REVOKED}/{nonce}"))
    except Exception:
        log.warning("console: revocation list unreadable; refusing the session")
        return True


async def session_nonce(settings: Settings, limiter: RateLimiter, cookie: str | None) -> str | None:
    """The nonce of a valid, unexpired, not revoked session cookie; None otherwise."""
    found = await session_subject(settings, limiter, cookie)
    return None if found is None else found[0]


async def session_subject(
    settings: Settings, limiter: RateLimiter, cookie: str | None
) -> tuple[str, str] | None:
    """(nonce, subject) of a valid, unexpired, not revoked session cookie; None otherwise."""
    signed = _signed(settings, cookie)
    if signed is None or await _revoked(limiter, signed[1]):
        return None
    return signed[1], signed[2]


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
    expires, nonce, _ = signed
    ttl = max(1, math.ceil(expires - time.time()) + 1)
    await limiter.storage.incr(f"{_REVOKED}/{nonce}", ttl)
    return True


async def console_session_ok(
    conn: HTTPConnection, settings: Settings, limiter: RateLimiter
) -> bool:
    """Whether the request comes from a logged-in console (and, if it changes something,
    carries the session's CSRF token)."""
    return await console_session(conn, settings, limiter) is not None


async def console_session(
    conn: HTTPConnection, settings: Settings, limiter: RateLimiter
) -> str | None:
    """The subject of the request's console session, if it has one (and, if it changes
    something, carries the session's CSRF token); None otherwise."""
    found = await session_subject(settings, limiter, conn.cookies.get(COOKIE))
    if found is None:
        return None
    nonce, subject = found
    method = conn.scope.get("method", "GET")
    if method in SAFE_METHODS:
        return subject
    sent = conn.headers.get(CSRF_HEADER, "")
    return subject if hmac.compare_digest(sent, csrf_token(settings, nonce)) else None


async def principal_for(store: Store, subject: str) -> Principal | None:
    """Who a session's subject is now: the admin key, or an operator whose account is still
    active and at the session's version; None if the session no longer holds."""
    if subject == KEY_SUBJECT:
        return KEY_ADMIN
    operator_id, _, version = subject.partition("~")
    if not operator_id.startswith("op_") or not version.isdigit():
        return None
    op = await store.get_operator(operator_id)
    if op is None or not op.active or op.invited or op.session_version != int(version):
        return None
    role: Role = "admin" if op.role == "admin" else "agent"
    return Principal(role=role, via="session", operator_id=op.id, name=op.name, email=op.email)


async def session_principal(
    conn: HTTPConnection, settings: Settings, limiter: RateLimiter, store: Store
) -> Principal | None:
    """The operator (or admin-key session) behind the request's console session; None
    without a valid one."""
    subject = await console_session(conn, settings, limiter)
    return None if subject is None else await principal_for(store, subject)


def admit(conn: HTTPConnection, principal: Principal) -> Principal:
    """Let ``principal`` through: kept on the request's state (``principal``) for the
    handlers, the audit log and attribution.

    Raises:
        BadInput: 403 for an ``agent``-role operator on an admin screen or API.
    """
    conn.state.principal = principal
    method = conn.scope.get("method", "GET")
    if not principal.is_admin and admin_only(method, conn.url.path):
        raise BadInput(
            "forbidden",
            f"{method} {conn.url.path} is for admins; {principal.name} has the agent role",
            status_code=403,
        )
    return principal


def request_principal(conn: HTTPConnection) -> Principal:
    """The principal ``admit`` let through (after ``require_admin``)."""
    principal = getattr(conn.state, "principal", None)
    return principal if isinstance(principal, Principal) else KEY_ADMIN
