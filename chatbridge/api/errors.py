"""One JSON error shape for every refusal: ``{"error": {"code", "message", "details"?}}``.

Bad input never becomes a 500: validation errors are 422, our own ``BadInput`` carries its
status, a value the database refuses (``unstorable_reason``) is a 400, and an unexpected
exception is logged and answered with a JSON 500 that names no internals (it is a bug to fix,
and counted in ``chatbridge_errors_total``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from chatbridge.errors import BadInput
from chatbridge.ratelimit import RateLimited

log = logging.getLogger("chatbridge.api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class Error(BaseModel):
    """The body of every refusal."""

    error: ErrorDetail


def error_responses(codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for refusals: ``{status: description}`` → Error body."""
    return {status: {"description": text, "model": Error} for status, text in codes.items()}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document tell the truth about 422s: our ``Error`` body, not FastAPI's
    ``HTTPValidationError`` (which this app never sends)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Error" not in components:
        defs = Error.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(defs.pop("$defs", {}))
        components["Error"] = defs
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is not None:
                response["content"] = content
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


# PostgreSQL SQLSTATE class 22 ("data exception"): the value, not the database, is at fault.
_SQLSTATE_REASONS = {
    "22001": "a text value is longer than the store allows",
    "22003": "a number is out of the range the store allows",
    "22021": "text contains a character the store cannot hold (NUL)",
    "22P05": "text contains a character the store cannot hold (NUL)",
    "22P02": "a value has a format the store refuses (e.g. NaN or Infinity in JSON)",
}


def unstorable_reason(exc: BaseException) -> str | None:
    """Why the database refused a value of the request, or ``None`` for any other error.

    Walks the exception chain for PostgreSQL data exceptions (SQLSTATE ``22…``), asyncpg's
    client-side encoding errors, and the ``UnicodeEncodeError`` / ``OverflowError`` SQLite's
    driver raises, so that a request carrying such a value can be refused with a 400. The
    store writes each request in one transaction, so nothing of it was kept.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    generic = False
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        sqlstate = getattr(e, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith("22"):
            return _SQLSTATE_REASONS.get(sqlstate, "a value cannot be stored")
        if isinstance(e, UnicodeEncodeError):
            return "text contains a character the store cannot hold (an unpaired surrogate)"
        if isinstance(e, OverflowError):
            return "a number is out of the range the store allows"
        # asyncpg's client-side "invalid input for query argument $n" is a ValueError
        generic = generic or (
            isinstance(e, ValueError) and type(e).__module__.startswith("asyncpg")
        )
        todo.extend(
            x for x in (e.__cause__, getattr(e, "orig", None)) if isinstance(x, BaseException)
        )
    return "a value cannot be stored" if generic else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadInput)
    async def _bad_input(_request: Request, exc: BadInput) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RateLimited)
    async def _rate_limited(_request: Request, exc: RateLimited) -> JSONResponse:
        response = error_response(
            429, "rate_limited", str(exc), {"scope": exc.scope, "retry_after": exc.retry_after}
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return error_response(422, "invalid_request", f"{where}: {first['msg']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, _exc: RecursionError) -> JSONResponse:
        # JSON nested deeper than the parser's recursion limit (``[`` x 100,000): whichever
        # endpoint decoded it, the request is at fault, not the bridge.
        log.info("refused %s %s: input nested too deeply", request.method, request.url.path)
        return error_response(
            400, "invalid_json", "the request body is nested too deeply to be processed"
        )

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # The client hung up before its body arrived: nobody reads this answer, and it is
        # not our error (no traceback, not in chatbridge_errors_total).
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(400, "client_disconnected", "the client closed the connection")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        reason = unstorable_reason(exc)
        if reason is not None:
            # The database refused a value of this request (a NUL in text, …): the request's
            # fault, and its transaction kept nothing. The route should have said so itself.
            log.warning(
                "%s %s: refused a value the store cannot hold (%s)",
                request.method,
                request.url.path,
                reason,
            )
            return error_response(400, "invalid_request", reason)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.errors.labels("unhandled").inc()
        return error_response(500, "internal_error", "unexpected error; see the bridge log")


class BodyTooLarge(Exception):
    """Raised into the app by ``BodySizeLimit`` when a streamed body passes the limit."""
