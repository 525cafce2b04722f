"""The operator console: ``/console`` (a vanilla-JS single-page app), its login and logout.

``GET /console`` without a valid session cookie redirects to ``/console/login``. Logging in
compares the key with ``CHATBRIDGE_ADMIN_KEY`` in constant time and sets the session cookie of
:mod:`chatbridge.api.console_auth`; with no admin key set, an empty key is accepted from a
loopback client only. The page receives its CSRF token in a ``<meta>`` tag of the HTML served
to the logged-in browser, which another origin cannot read (no CORS here, and the cookie is
SameSite=Strict, so a cross-site request does not even carry it). Every console response
forbids framing and sets a strict Content-Security-Policy: scripts and styles come from
``/console/static/`` only.
"""

from __future__ import annotations

import hmac
import html
import json
from importlib import resources
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from chatbridge.api.console_auth import (
    COOKIE,
    SESSION_SECONDS,
    csrf_token,
    issue_session,
    session_nonce,
)
from chatbridge.config import Settings
from chatbridge.errors import BadInput

router = APIRouter(prefix="/console", include_in_schema=False)

STATIC = resources.files("chatbridge.console") / "static"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
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


def _key_ok(request: Request, sent: str) -> bool:
    key = _settings(request).admin_key
    if key is None:
        host = request.client.host if request.client else ""
        return host in _LOOPBACK
    return hmac.compare_digest(sent.encode(), key.encode())


async def _sent_key(request: Request) -> tuple[str, bool]:
    """The key of a login request and whether it came as JSON (else as a form)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise BadInput("invalid_json", "the body must be JSON") from None
        key = body.get("key", "") if isinstance(body, dict) else None
        if not isinstance(key, str):
            raise BadInput("invalid_request", 'send {"key": "<admin key>"}', status_code=422)
        return key, True
    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return (form.get("key") or [""])[0], False


@router.get("")
async def console(request: Request) -> Response:
    """The app for a logged-in operator; otherwise the login page."""
    settings = _settings(request)
    nonce = session_nonce(settings, request.cookies.get(COOKIE))
    if nonce is None:
        return RedirectResponse("/console/login", status_code=303, headers=PAGE_HEADERS)
    return _page("index.html", csrf=csrf_token(settings, nonce))


@router.get("/login")
async def login_page(request: Request) -> Response:
    settings = _settings(request)
    if session_nonce(settings, request.cookies.get(COOKIE)) is not None:
        return RedirectResponse("/console", status_code=303, headers=PAGE_HEADERS)
    hint = "" if settings.admin_key else "No admin key is set: leave it empty (this computer only)."
    return _page("login.html", hint=hint, error="")


@router.post("/login")
async def login(request: Request) -> Response:
    """Log in with the admin key: JSON ``{"key"}`` → ``{"csrf_token"}``, or a form → the app.

    Sets the session cookie (HttpOnly, SameSite=Strict, Secure over https).
    """
    if not _same_origin(request):
        raise BadInput("forbidden", "log in from the console's own page", status_code=403)
    key, as_json = await _sent_key(request)
    settings = _settings(request)
    if not _key_ok(request, key):
        if as_json:
            raise BadInput("unauthorized", "wrong admin key", status_code=401)
        page = _page("login.html", hint="", error="Wrong admin key.")
        page.status_code = 401
        return page
    cookie, csrf = issue_session(settings)
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
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the session cookie (harmless to call without one)."""
    response: Response
    if request.headers.get("content-type", "").startswith("application/json"):
        response = JSONResponse({"logged_out": True}, headers=PAGE_HEADERS)
    else:
        response = RedirectResponse("/console/login", status_code=303, headers=PAGE_HEADERS)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
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
