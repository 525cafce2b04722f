"""The operator console: ``/console`` (a vanilla-JS single-page app), its login and logout.

``GET /console`` without a valid session cookie redirects to ``/console/login``. An operator
logs in with their email and password (checked against the argon2id hash of
:mod:`chatbridge.operators.passwords`); the admin key still opens a session too (machines, and
the first set-up, before any operator exists): it is compared with ``CHATBRIDGE_ADMIN_KEY`` in
constant time; with no admin key set, an empty key is accepted from a client on this machine
talking to us directly (loopback, no proxy header). Either sets the session cookie of
:mod:`chatbridge.api.console_auth`, naming who logged in. Wrong keys and wrong passwords spend
the address's failed-authentication budgets (``chatbridge.api.auth_limits``); logging out
revokes the session on the server. The page receives its CSRF token in a ``<meta>`` tag of
the HTML served to the logged-in browser, which another origin cannot read (no CORS here, and
the cookie is SameSite=Strict, so a cross-site request does not even carry it). Every console
response forbids framing and sets a strict Content-Security-Policy: scripts and styles come
from ``/console/static/`` only.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
from importlib import resources
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.console_auth import (
    COOKIE,
    KEY_SUBJECT,
    SESSION_SECONDS,
    csrf_token,
    direct_local,
    issue_session,
    principal_for,
    reached_over_https,
    revoke_session,
    session_subject,
)
from chatbridge.api.operators import check_password
from chatbridge.config import Settings
from chatbridge.errors import BadInput
from chatbridge.ratelimit import RateLimited, RateLimiter, client_ip

log = logging.getLogger("chatbridge.console")

router = APIRouter(prefix="/console", include_in_schema=False)

STATIC = resources.files("chatbridge.console") / "static"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    # stored media (signed /media/… URLs): audio and video players in the conversation view
    "media-src 'self'; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
StaticName = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}\.(js|css)$")]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.bridge.settings
    return settings


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.bridge.rate_limiter
    return limiter


async def _nonce(request: Request) -> str | None:
    """The nonce of the request's session, while the operator it names may still log in."""
    found = await session_subject(
        _settings(request), _limiter(request), request.cookies.get(COOKIE)
    )
    if found is None or await principal_for(request.app.state.bridge.store, found[1]) is None:
        return None
    return found[0]


def _page(name: str, **values: str) -> HTMLResponse:
    """A console page, with ``{{name}}`` placeholders replaced by escaped ``values``."""
    text = (STATIC / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return HTMLResponse(text, headers=PAGE_HEADERS)


def _same_origin(request: Request) -> bool:
    """A browser's login POST must come from this origin (no logging in from another site)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _key_ok(request: Request, sent: str) -> bool:
    """Whether ``sent`` is the admin key (no key set: whether the client is ``direct_local``).

    Raises:
        RateLimited: the address has spent its budget of wrong admin keys.
    """
    key = _settings(request).admin_key
    if key is None:
        return direct_local(request)
    failures = auth_failures(request)
    await failures.guard("admin", client_ip(request))
    if hmac.compare_digest(sent.encode(), key.encode()):
        return True
    await failures.failed("admin", client_ip(request))
    return False


async def _sent_key(request: Request) -> tuple[dict[str, str], bool]:
    """The credentials of a login request (``key``, or ``email`` and ``password``) and
    whether it came as JSON (else as a form)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise BadInput("invalid_json", "the body must be JSON") from None
        sent = body if isinstance(body, dict) else None
        if sent is None or not all(
            isinstance(sent.get(k, ""), str) for k in ("key", "email", "password")
        ):
            raise BadInput(
                "invalid_request",
                'send {"email": "…", "password": "…"} or {"key": "<admin key>"}',
                status_code=422,
            )
        return {k: sent[k] for k in ("key", "email", "password") if k in sent}, True
    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in form.items() if k in ("key", "email", "password") and v}, False


@router.get("")
async def console(request: Request) -> Response:
    """The app for a logged-in operator; otherwise the login page."""
    settings = _settings(request)
    nonce = await _nonce(request)
    if nonce is None:
        return RedirectResponse("/console/login", status_code=303, headers=PAGE_HEADERS)
    return _page("index.html", csrf=csrf_token(settings, nonce))


@router.get("/login")
async def login_page(request: Request) -> Response:
    settings = _settings(request)
    if await _nonce(request) is not None:
        return RedirectResponse("/console", status_code=303, headers=PAGE_HEADERS)
    hint = "" if settings.admin_key else "No admin key is set: leave it empty (this computer only)."
    return _page("login.html", hint=hint, error="")


@router.post("/login")
async def login(request: Request) -> Response:
    """Log in with an operator's email and password, or with the admin key: JSON
    (``{"email", "password"}`` or ``{"key"}``) → ``{"csrf_token"}``, or a form → the app.

    Sets the session cookie (HttpOnly, SameSite=Strict, Secure over https). Over the
    address's budget of wrong keys: 429 with ``Retry-After``, whatever the key.
    """
    if not _same_origin(request):
        raise BadInput("forbidden", "log in from the console's own page", status_code=403)
    sent, as_json = await _sent_key(request)
    settings = _settings(request)
    by_password = bool(sent.get("email"))
    try:
        if by_password:
            subject = await check_password(request, sent["email"], sent.get("password", ""))
        else:
            subject = KEY_SUBJECT if await _key_ok(request, sent.get("key", "")) else None
    except RateLimited as exc:
        if as_json:
            raise
        what = "passwords" if by_password else "keys"
        error = f"Too many wrong {what} from your address; try again in {exc.retry_after} s."
        page = _page("login.html", hint="", error=error)
        page.status_code = 429
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    if subject is None:
        wrong = "wrong email or password" if by_password else "wrong admin key"
        if as_json:
            raise BadInput("unauthorized", wrong, status_code=401)
        page = _page("login.html", hint="", error=wrong.capitalize() + ".")
        page.status_code = 401
        return page
    cookie, csrf = issue_session(settings, subject=subject)
    response: Response = (
        JSONResponse({"csrf_token": csrf, "expires_in": SESSION_SECONDS}, headers=PAGE_HEADERS)
        if as_json
        else RedirectResponse("/console", status_code=303, headers=PAGE_HEADERS)
    )
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=reached_over_https(request),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session: its cookie is revoked on the server (a copy of it is refused from now
    on) and deleted in the browser. Harmless to call without one; 503 if the revocation
    could not be stored (the session would still be valid)."""
    try:
        await revoke_session(_settings(request), _limiter(request), request.cookies.get(COOKIE))
    except Exception:
        log.exception("console: logout could not revoke the session")
        raise BadInput(
            "revocation_unavailable",
            "the session could not be revoked (storage unavailable); try again",
            status_code=503,
        ) from None
    response: Response
    if request.headers.get("content-type", "").startswith("application/json"):
        response = JSONResponse({"logged_out": True}, headers=PAGE_HEADERS)
    else:
        response = RedirectResponse("/console/login", status_code=303, headers=PAGE_HEADERS)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=reached_over_https(request)
    )
    return response


@router.get("/static/{name}")
async def static_file(name: StaticName) -> Response:
    path = STATIC / name
    if not path.is_file():
        raise BadInput("not_found", f"no console file {name}", status_code=404)
    suffix = name[name.rindex(".") :]
    return FileResponse(
        str(path),
        media_type=_TYPES[suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
