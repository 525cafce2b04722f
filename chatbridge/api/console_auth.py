"""Operator sessions for the console: a signed cookie, and a CSRF token for every change.

Logging in with the admin key (``POST /console/login``) sets ``chatbridge_console``, an
HttpOnly, SameSite=Strict cookie holding ``<expires>.<nonce>.<signature>`` (HMAC-SHA256 with a
key derived from ``CHATBRIDGE_ADMIN_KEY``, so changing the admin key logs everyone out). A
state-changing request with that cookie must also carry ``X-CSRF-Token``: the HMAC of the
nonce, which the console page receives at login and a page on another site cannot read.
``require_admin`` (management) and the comms API accept either the admin key or this session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from starlette.requests import HTTPConnection

from chatbridge.config import Settings

COOKIE = "chatbridge_console"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Without an admin key (a laptop install, loopback only) sessions are signed with a key that
# lives as long as the process.
_PROCESS_KEY = os.urandom(32)


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


def session_nonce(settings: Settings, cookie: str | None) -> str | None:
    """The nonce of a valid, unexpired session cookie; None otherwise."""
    if not cookie or cookie.count(".") != 2:
        return None
    expires, nonce, signature = cookie.split(".")
    if not hmac.compare_digest(signature, _sign(settings, f"{expires}.{nonce}")):
        return None
    if not expires.isdigit() or int(expires) < time.time():
        return None
    return nonce


def console_session_ok(conn: HTTPConnection, settings: Settings) -> bool:
    """Whether the request comes from a logged-in console (and, if it changes something,
    carries the session's CSRF token)."""
    nonce = session_nonce(settings, conn.cookies.get(COOKIE))
    if nonce is None:
        return False
    method = conn.scope.get("method", "GET")
    if method in SAFE_METHODS:
        return True
    sent = conn.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(sent, csrf_token(settings, nonce))
