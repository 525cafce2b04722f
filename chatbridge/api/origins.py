"""Which web pages may use the web chat API: CORS for its paths, an Origin check for its
WebSocket. One allowlist (``CHATBRIDGE_WEBCHAT_CORS_ORIGINS``): empty means only the
bridge's own pages (``/chat``), ``["*"]`` means any site (what the demo uses)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """Whether a browser page at ``origin`` may talk to us (``host``: our Host header)."""
    if origin is None or "*" in allowed:
        return True  # not a browser, or anyone may
    if origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    own = origin.split("://", 1)[-1]
    return host is not None and own == host


class ScopedCORS:
    """``CORSMiddleware`` for the given path prefixes only (the rest of the API is not meant
    to be called from other sites' pages)."""

    def __init__(self, app: ASGIApp, *, prefixes: Sequence[str], origins: Sequence[str]) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization"],
            max_age=86400,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
