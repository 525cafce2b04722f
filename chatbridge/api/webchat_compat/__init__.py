"""The drop-in web chat *action API*: ``/api/v1/?action=…`` (docs/webchat.md).

An existing agent broker's ``web_chat`` plugin polls ``inbox`` and answers through ``outbox``;
a web page posts ``messages`` and polls ``responses``. Methods, auth, field names, id types,
the ``{"success": …}`` envelope, the error strings and the HTTP codes are the contract's, so
the unmodified plugin and widget work against the bridge. Behind it there is no second store:

- ``messages`` is a visitor message of the ``webchat`` channel (inbox
  ``webchat_compat_inbox_id``), stored as sent (never HTML-escaped) with its turn.
- ``inbox`` shows the turns offered to the http-pull agent ``webchat_compat_agent_id`` and
  *leases* what it returns; ``outbox`` settles the leased turns of the session's conversation
  with the reply (or, with none, sends a proactive message). A lease that runs out offers the
  message again, up to ``webchat_compat_max_offers`` times; then the turn fails to the route's
  fallback. ``webchat_mark_on_read`` offers each message once.
- ``responses`` is the agent side of the session's history.

Safe by default, unlike the PHP original:

- **Off unless both keys are set** (``WEB_CHAT_API_KEY`` and ``WEB_CHAT_ADMIN_KEY``, at least
  16 characters, different, never the PHP defaults ``YOUR_WEB_CHAT_API_KEY`` / ``free0ps``).
  Off, every action is refused with 404 in the API's envelope and nothing is read or written.
- **Its own inbox only.** The actions see the sessions of ``webchat_compat_inbox_id`` and
  nothing else: a native widget session of another inbox is unknown here.
- **No key material out.** ``config`` GET masks the keys; ``config`` POST refuses weak ones.
- **Nothing written by a stranger's GET.** ``responses`` of an unknown session is an empty
  list (the session is created by the first ``messages``); the route to the pull agent is
  created at start-up (``Bridge.ensure_webchat_compat_route``), never by a request.
- **Failed-key budget** per client address (``chatbridge.api.auth_limits``): over it, 429
  with ``Retry-After`` whatever the key.

Every answer, refusals included, is built here (``application/json; charset=utf-8`` plus the
contract's CORS headers): nothing reaches the app's own error envelope.

This module routes an action (method, rate limit, key, the replica holding the pull agent);
the actions live by whose they are: ``visitor.py`` (``messages``, ``responses``), ``agent.py``
(``inbox``, ``outbox``), ``admin.py`` (sessions, keys, clean-ups), on top of ``call.py`` (one
request) and ``envelope.py`` (the contract's JSON and its PHP-style input).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from chatbridge.api.auth_limits import auth_failures
from chatbridge.api.errors import BodyTooLarge
from chatbridge.api.forward import forwarded, to_holder
from chatbridge.api.webchat import _service
from chatbridge.api.webchat_compat import openapi
from chatbridge.api.webchat_compat.admin import (
    act_cleanup,
    act_cleanup_logs,
    act_clear_data,
    act_config,
    act_session_messages,
    act_sessions,
)
from chatbridge.api.webchat_compat.agent import act_inbox, act_outbox
from chatbridge.api.webchat_compat.call import Call, bearer_matches
from chatbridge.api.webchat_compat.envelope import Refusal, failure, json_response
from chatbridge.api.webchat_compat.visitor import act_messages, act_responses
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.ratelimit import RateLimited, client_ip

log = logging.getLogger("chatbridge.webchat_compat")
router = APIRouter(tags=["webchat-compat"])

# The plugin builds ``{api_url}/api/v1/``; an ``api_url`` with a trailing slash gives ``//``.
PATHS = ("/api/v1/", "/api/v1", "/api/v1/index.php", "//api/v1/", "//api/v1/index.php")
METHODS = ["GET", "POST", "OPTIONS", "HEAD", "PUT", "PATCH", "DELETE"]
DISABLED = (
    "Web chat action API is disabled: set WEB_CHAT_API_KEY and WEB_CHAT_ADMIN_KEY to enable it"
)


Auth = Literal["api", "admin"] | None


@dataclass(frozen=True, slots=True)
class Action:
    run: Callable[[Call], Awaitable[Response]]
    method: str | None  # None: the action checks the method itself, after auth (config)
    auth: Auth
    # per caller IP: (scope, the setting holding the limit); shared with the native API
    limit: tuple[str, str]


_VISITOR = ("webchat_message_ip", "rate_limit_messages_ip")
_POLL = ("webchat_history", "rate_limit_history")
_AGENT = ("webchat_compat_agent", "rate_limit_agent")
_ADMIN = ("webchat_compat_admin", "rate_limit_agent")

ACTIONS: dict[str, Action] = {
    "messages": Action(act_messages, "POST", None, _VISITOR),
    "inbox": Action(act_inbox, "GET", "api", _AGENT),
    "outbox": Action(act_outbox, "POST", "api", _AGENT),
    "responses": Action(act_responses, "GET", None, _POLL),
    "sessions": Action(act_sessions, "GET", "admin", _ADMIN),
    "session_messages": Action(act_session_messages, "GET", "admin", _ADMIN),
    "config": Action(act_config, None, "admin", _ADMIN),
    "cleanup": Action(act_cleanup, "POST", "admin", _ADMIN),
    "clear_data": Action(act_clear_data, "POST", "admin", _ADMIN),
    "cleanup_logs": Action(act_cleanup_logs, "POST", "admin", _ADMIN),
}

# The service's refusals, in the contract's words (by the action's kind of text).
_BAD_INPUT = {
    "invalid_session_id": "Invalid session ID",
    "unknown_session": "Invalid or expired session",
}


async def _authorize(call: Call, auth: Auth) -> None:
    """Check the action's key. A wrong one (a header was sent) spends the caller's budget;
    over it, 429 before the key is even compared."""
    if auth is None:
        return
    header = call.request.headers.get("authorization")
    s = call.settings
    failures = auth_failures(call.request)
    here = not forwarded(call.request)  # a forwarded call was checked where it arrived
    if here:
        wait = await failures.retry_after("action_api", call.ip)
        if wait is not None:
            raise Refusal(
                429, "Too many failed authentication attempts", {"Retry-After": str(wait)}
            )
    key = s.web_chat_api_key if auth == "api" else s.web_chat_admin_key
    if bearer_matches(header, key):
        return
    if header and here:
        await failures.failed("action_api", call.ip)
    raise Refusal(
        401, "Invalid or missing API key" if auth == "api" else "Invalid or missing admin key"
    )


async def action_api(request: Request) -> Response:
    """``/api/v1/?action=…``: route on ``action``, check method and key, run the action."""
    if request.method == "OPTIONS":
        return json_response(200, None)
    bridge: Bridge = request.app.state.bridge
    if not bridge.settings.webchat_compat_enabled:
        return failure(404, DISABLED)
    name = request.query_params.get("action") or ""
    action = ACTIONS.get(name)
    if action is None:
        return failure(400, "Invalid action")
    call = Call(request, bridge, _service(bridge), client_ip(request))
    try:
        if action.method is not None and request.method != action.method:
            raise Refusal(405, "Method not allowed")
        scope, setting = action.limit
        if not forwarded(request):  # a forwarded call was limited where it arrived
            await call.limit(scope, getattr(call.settings, setting), call.ip)
        await _authorize(call, action.auth)
        if name in ("inbox", "outbox"):
            # They act on the pull agent's offers, which live on the replica holding it.
            elsewhere = await to_holder(request, bridge, call.agent_id)
            if elsewhere is not None:
                return elsewhere
        return await action.run(call)
    except Refusal as exc:
        return failure(exc.status, exc.error, exc.headers)
    except RateLimited as exc:
        return failure(429, "Rate limit exceeded", {"Retry-After": str(exc.retry_after)})
    except BadInput as exc:
        if exc.code in _BAD_INPUT:
            return failure(400, _BAD_INPUT[exc.code])
        if exc.status_code < 500 and exc.code != "unknown_inbox":
            return failure(400, "Invalid response" if name == "outbox" else "Invalid message")
        log.error("action API %s: %s (%s)", name, exc.message, exc.code)
        return failure(500, "Internal server error")
    except (BodyTooLarge, ClientDisconnect):
        raise  # answered by BodySizeLimit / nobody is listening
    except Exception:
        log.exception("action API %s: unexpected error", name)
        bridge.metrics.errors.labels("unhandled").inc()
        return failure(500, "Internal server error")


for _path in PATHS:
    if _path == "/api/v1/":  # the documented one (the others answer the same)
        for _method in ("GET", "POST"):
            router.add_api_route(_path, action_api, methods=[_method], **openapi.operation(_method))
        router.add_api_route(
            _path, action_api, methods=[m for m in METHODS if m not in ("GET", "POST")],
            include_in_schema=False,
        )  # fmt: skip
        continue
    router.add_api_route(_path, action_api, methods=METHODS, include_in_schema=False)
