"""The documented shapes of answers that routes build by hand (a ``JSONResponse`` with its own
status, a file, a text page), so that every operation of the OpenAPI document says what its
success returns. ``tests/docs/test_openapi_document.py`` keeps it so.

Each helper returns a ``responses=`` entry for one status: ``{status: {"description": …,
"content": …}}``, merged into the route's other responses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WebhookResult(BaseModel):
    """What a webhook endpoint answers for one event of the delivery."""

    model_config = ConfigDict(extra="allow")

    status: Literal["accepted", "stored", "duplicate", "ignored", "forwarded", "replied"] = Field(
        description="stored: kept and queued for its agent (accepted by an older bridge); "
        "duplicate: seen before, nothing stored; ignored: not a customer message (reason "
        "says why); forwarded: handed to the replica that holds the conversation; replied: "
        "sync mode, the agent's reply is in reply"
    )
    conversation_id: str | None = Field(default=None, description="the bridge's conversation")
    message_id: str | None = Field(default=None, description="the stored message")
    turn_id: str | None = Field(default=None, description="the turn queued for the agent (t_<n>)")
    reason: str | None = Field(default=None, description="why an event was ignored")
    reply: dict[str, Any] | None = Field(
        default=None,
        description="sync mode: the turn's outcome and content (the agent's reply text)",
    )


class WebhookBatch(BaseModel):
    """A delivery that held several events (or none): one result each."""

    status: Literal["batch"]
    results: list[WebhookResult]


def webhook_answers(*, batch: bool = True, sync: bool = True) -> dict[int | str, dict[str, Any]]:
    """The 200 of a channel's webhook endpoint (one result, or with ``batch`` a batch), and with
    ``sync`` the 202 of a sync route whose reply did not come in time."""
    out: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "stored, duplicate or ignored"
            + (" (one result, or a batch)" if batch else "")
            + ("; a sync route's answer: replied, with the agent's reply" if sync else ""),
            "model": WebhookResult | WebhookBatch if batch else WebhookResult,
        }
    }
    if sync:
        out[202] = {
            "description": "sync mode: the reply did not come within the sync window; the "
            "message is stored and the reply goes to the channel when it comes",
            "model": WebhookResult,
        }
    return out


def envelope(status: int, key: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A JSON object whose ``key`` holds the created or changed record (``{"note": {…}}``)."""
    return {
        status: {
            "description": description,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": [key],
                        "properties": {key: {"type": "object", "additionalProperties": True}},
                        "additionalProperties": True,
                    }
                }
            },
        }
    }


def json_object(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """Any JSON object (the route's docstring says which fields)."""
    return {
        status: {
            "description": description,
            "content": {
                "application/json": {"schema": {"type": "object", "additionalProperties": True}}
            },
        }
    }


def text(status: int, description: str, media_type: str = "text/plain") -> dict[int | str, Any]:
    """A text body (``/metrics``)."""
    return {
        status: {
            "description": description,
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    }


def binary(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """Bytes of any type (a stored file)."""
    return {
        status: {
            "description": description,
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    }


class OperatorSent(BaseModel):
    """A message an operator sent into a thread: stored, and queued for the channel."""

    model_config = ConfigDict(extra="allow")

    message_id: str = Field(description="the stored message")
    owner: Literal["human"] = Field(description="the thread's owner now: a human")
    queued: bool = Field(description="whether a delivery to the channel was queued")
