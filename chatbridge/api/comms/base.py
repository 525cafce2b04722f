"""What every part of the comms API shares: path and query parameter types, request bodies'
base, the documented errors, and the refusals (404, a value the database cannot store).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from chatbridge.api.errors import error_responses, unstorable_reason
from chatbridge.crm.phones import normalize
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge

Id = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
OptionalId = Annotated[str | None, Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Time = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=10**9)]

ERRORS = error_responses(
    {
        400: "a value cannot be stored",
        401: "missing or wrong admin key",
        403: "not allowed",
        404: "not found",
        429: "too many wrong admin keys from this address",
    }
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


@contextlib.asynccontextmanager
async def storing() -> AsyncIterator[None]:
    """A value the database refuses (NUL in text, …) is the request's fault: 400."""
    try:
        yield
    except BadInput:
        raise
    except Exception as exc:
        reason = unstorable_reason(exc)
        if reason is None:
            raise
        raise BadInput("invalid_request", reason) from exc


def not_found(what: str, ident: str) -> BadInput:
    return BadInput("not_found", f"no {what} {ident}", status_code=404)


def e164(bridge: Bridge, raw: str | None) -> str | None:
    """``raw`` in E.164, read in the configured default country (None stays None)."""
    return normalize(raw, bridge.comms_settings().default_country) if raw else None
