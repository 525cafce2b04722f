"""The API's reference pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served from the
package: no CDN, no web font, so they work on a machine without internet access.

FastAPI's own pages load their scripts from a CDN; ``create_app`` turns those off
(``docs_url=None, redoc_url=None``) and ``add_routes`` serves the same pages with the assets
vendored under ``chatbridge/api/static/`` (swagger-ui-dist, Apache-2.0; redoc, MIT; their
licence files beside them).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated, Literal

from fastapi import FastAPI, Path
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, Response

STATIC = resources.files("chatbridge.api") / "static"
ASSETS = "/api-docs/static"

_FILES = {
    "swagger-ui/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui/swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui/favicon-32x32.png": "image/png",
    "redoc/redoc.standalone.js": "text/javascript; charset=utf-8",
}
AssetName = Literal[
    "swagger-ui/swagger-ui-bundle.js",
    "swagger-ui/swagger-ui.css",
    "swagger-ui/favicon-32x32.png",
    "redoc/redoc.standalone.js",
]
_FAVICON = f"{ASSETS}/swagger-ui/favicon-32x32.png"
_HEADERS = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
# ReDoc's bundle shows Redocly's logo under its menu, loaded from Redocly's CDN. Served with an
# empty image instead (the bundle hides an image that fails to load), so the page asks nothing
# of another site. The vendored file itself stays as published.
_REDOC = "redoc/redoc.standalone.js"
_REDOC_LOGO = (b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'src:"data:,"')


@cache
def redoc_script() -> bytes:
    """The ReDoc bundle as served: the published file without its one CDN request."""
    return (STATIC / _REDOC).read_bytes().replace(*_REDOC_LOGO)


_OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def add_routes(app: FastAPI) -> None:
    """``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their assets, on ``app``
    (built with ``docs_url=None, redoc_url=None``), outside the OpenAPI document."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=_FAVICON,
            oauth2_redirect_url=_OAUTH2_REDIRECT,
            # no badge from the public validator service
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(_OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=_FAVICON,
            with_google_fonts=False,
        )

    @app.get(ASSETS + "/{name:path}", include_in_schema=False)
    async def asset(name: Annotated[AssetName, Path()]) -> Response:
        if name == _REDOC:
            return Response(redoc_script(), media_type=_FILES[name], headers=_HEADERS)
        return FileResponse(str(STATIC / name), media_type=_FILES[name], headers=_HEADERS)
