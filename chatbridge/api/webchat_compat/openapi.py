"""The action API in the OpenAPI document: one ``GET`` and one ``POST`` operation on
``/api/v1/``, the action named by ``?action=``, with its parameters, bodies and the
``{"success": …}`` envelope.

OpenAPI has one operation per path and method, and every action shares one path, so the
actions are an enum of the ``action`` parameter and their inputs and ``data`` are listed in
the operations' descriptions (and in docs/webchat.md). The routing is ``__init__.py``'s; this
module only describes it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chatbridge.api.webchat_compat.envelope import MAX_TEXT_BYTES

GET_ACTIONS = ("inbox", "responses", "sessions", "session_messages", "config")
POST_ACTIONS = ("messages", "outbox", "config", "cleanup", "clear_data", "cleanup_logs")

_SESSION_ID = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}


class ActionSuccess(BaseModel):
    """Every successful answer."""

    success: bool = Field(description="true")
    message: str = Field(description='"Success" or what was done')
    timestamp: str = Field(description="when, ISO 8601 with offset (PHP's date('c'))")
    data: Any = Field(description="the action's result (see the operation's description)")


class ActionFailure(BaseModel):
    """Every refusal, in the PHP bridge's words."""

    success: bool = Field(description="false")
    error: str = Field(description='e.g. "Invalid or missing API key", "Invalid session ID"')
    code: int = Field(description="the HTTP status, repeated")
    timestamp: str


class VisitorMessage(BaseModel):
    """``messages``: a visitor's message (the first one creates the session)."""

    model_config = ConfigDict(extra="allow")

    session_id: str = Field(pattern=_SESSION_ID["pattern"])
    message: str = Field(description=f"1 to {MAX_TEXT_BYTES} characters, stored as sent")
    timestamp: str | int | None = None


class AgentResponse(BaseModel):
    """``outbox``: the agent's answer to a session (to its leased messages, if any)."""

    model_config = ConfigDict(extra="allow")

    session_id: str = Field(pattern=_SESSION_ID["pattern"])
    response: str = Field(description=f"1 to {MAX_TEXT_BYTES} characters")
    message_id: str | int | None = Field(default=None, description="the message answered")
    timestamp: str | int | None = None


class KeysChange(BaseModel):
    """``config`` (POST): new keys, in memory only; weak keys are refused."""

    api_key: str | None = None
    admin_key: str | None = None


BODIES = (VisitorMessage, AgentResponse, KeysChange)

_ACTIONS_TABLE = """\
| action | method | key | input | `data` |
|---|---|---|---|---|
| `messages` | POST | none | `{session_id, message, timestamp?}` (creates the session) | \
`{message_id, session_id, timestamp, uid, is_new_user}` |
| `inbox` | GET | API | `limit` (≤ 100, default 50), `offset`, `since` | \
`{messages: [{id, session_id, message, timestamp, uid}], pagination}`, oldest first; leased |
| `outbox` | POST | API | `{session_id, response, message_id?, timestamp?}` | \
`{response_id, session_id, timestamp}` |
| `responses` | GET | none | `session_id`, `since?` | \
`{session_id, responses: [{id, response, timestamp, message_id}]}` |
| `sessions` | GET | admin | `limit`, `offset`, `active` (default true) | \
`{sessions: [...], pagination}` |
| `session_messages` | GET | admin | `session_id` | `{session, messages, responses}` |
| `config` | GET / POST | admin | POST `{api_key, admin_key}` | \
`{session_timeout, api_key, admin_key}` (keys masked) |
| `cleanup` / `clear_data` / `cleanup_logs` | POST | admin | none | counts |
"""

DESCRIPTION = (
    "The drop-in web chat action API (the PHP web chat bridge's, so its pull plugin and chat "
    "page work unchanged). Off (every action 404) until both WEB_CHAT_API_KEY and "
    "WEB_CHAT_ADMIN_KEY are set. Keys go in `Authorization: Bearer <key>`. Also served at "
    "`/api/v1`, `/api/v1/index.php` and `//api/v1/`; `OPTIONS` answers 200 with open CORS "
    'headers. Details: docs/webchat.md, "Drop-in action API".\n\n' + _ACTIONS_TABLE
)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _answers() -> dict[int | str, dict[str, Any]]:
    failures = {
        400: "Invalid action, Invalid JSON, Missing required fields, Invalid session ID, "
        "Invalid message / response, Invalid or expired session",
        401: "Invalid or missing API key / admin key",
        404: "the action API is disabled (its keys are not set)",
        405: "Method not allowed (the action takes the other method)",
        413: "body too large",
        422: "config POST: a weak or published key",
        429: "Rate limit exceeded, or too many failed authentication attempts (Retry-After)",
    }
    return {
        200: {"model": ActionSuccess, "description": "done: the action's data"},
        **{code: {"model": ActionFailure, "description": text} for code, text in failures.items()},
    }


def operation(method: str) -> dict[str, Any]:
    """``add_api_route`` keywords describing ``method`` (GET or POST) on ``/api/v1/``."""
    actions = GET_ACTIONS if method == "GET" else POST_ACTIONS
    parameters = [
        {"name": "action", "in": "query", "required": True,
         "schema": {"type": "string", "enum": list(actions)}, "description": "what to do"},
    ]  # fmt: skip
    if method == "GET":
        parameters += [
            _query("session_id", _SESSION_ID, "responses, session_messages: the session"),
            _query("since", {"type": "string"}, "inbox, responses: only what came after"),
            _query("limit", {"type": "integer"}, "inbox, sessions: at most this many"),
            _query("offset", {"type": "integer"}, "inbox, sessions: skip this many"),
            _query("active", {"type": "boolean"}, "sessions: only active ones"),
        ]
    extra: dict[str, Any] = {"parameters": parameters}
    if method == "POST":
        extra["requestBody"] = {
            "required": False,
            "description": "messages: a VisitorMessage; outbox: an AgentResponse; config: a "
            "KeysChange; the clean-ups take none",
            "content": {
                "application/json": {
                    "schema": {"anyOf": [model.model_json_schema() for model in BODIES]}
                }
            },
        }
    return {
        "summary": f"Web chat action API ({', '.join(actions)})",
        "description": DESCRIPTION,
        "openapi_extra": extra,
        "responses": _answers(),
        "operation_id": f"webchat_action_api_{method.lower()}",
    }
