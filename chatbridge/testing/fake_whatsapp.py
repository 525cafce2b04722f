"""A local fake of the three WhatsApp gateways' HTTP APIs, and builders for their webhooks.

``create_fake_whatsapp()`` returns an ASGI app (serve it with ``serve_app``) that answers
like WAHA (``/api/…``, ``X-Api-Key``), Evolution API v2 (``/message/…``, ``/chat/…``,
``/instance/…``, ``apikey``) and the Meta Graph API (``/{version}/{phone number id}/…``,
``Authorization: Bearer``) at once, and records every request (method, path, headers, JSON
body) in ``app.state.fake.requests``. Credentials, session/instance state and failures
(``fail_next``) are set on the ``FakeWhatsApp`` object.

The webhook payload builders (``waha_message``, ``evolution_status``, ``meta_webhook``, …)
live in ``chatbridge.testing.whatsapp_payloads`` and are importable from here too.

WAHA runs one of three engines, and the fake plays the one in ``waha_engine``: WEBJS, NOWEB
or GOWS. They fill a message's fields differently (``waha_message(engine=…)``) and answer a
send differently (WEBJS: the whatsapp-web.js message with ``id._serialized``; NOWEB: the
Baileys message with ``key``; GOWS: ``{"id": "true_<chat>_<id>", "_data": …}``). Like real
WAHA on ``message.any``, the fake keeps what it sent so ``waha_echo()`` can build the webhook
that echoes it; likewise ``evolution_echo()`` (Evolution's ``send.message``) and
``meta_status_of()`` (Meta's ``statuses[]``, which name the recipient but not the text).
"""

from __future__ import annotations

import importlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from chatbridge.testing.whatsapp_payloads import (
    WAHA_ENGINES,
    WAHA_ME,
    WahaEngine,
    evolution_message,
    evolution_status,
    meta_status,
    meta_text,
    meta_webhook,
    s_whatsapp,
    waha_ack,
    waha_message,
)

__all__ = [  # the payload builders are re-exported: tests import them from here
    "WAHA_ENGINES",
    "WAHA_ME",
    "EvolutionSent",
    "FakeWhatsApp",
    "MetaSent",
    "RecordedRequest",
    "WahaEngine",
    "WahaSent",
    "create_fake_whatsapp",
    "evolution_message",
    "evolution_status",
    "meta_status",
    "meta_text",
    "meta_webhook",
    "waha_ack",
    "waha_message",
]


# Modules that answer more of the gateways' endpoints (media, templates, interactive messages,
# LID lookups). Each defines ``handle(fake, request, path, headers, body, raw)`` returning a
# ``Response``, or None when the endpoint is not its own; they are asked in this order before
# the text/typing endpoints below. A module that does not exist is skipped.
EXTENSIONS = (
    "chatbridge.testing.fake_wa_media",
    "chatbridge.testing.fake_wa_templates",
    "chatbridge.testing.fake_wa_interactive",
    "chatbridge.testing.fake_wa_lids",
)


def _extensions() -> list[Any]:
    found = []
    for name in EXTENSIONS:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any
    at: float = field(default_factory=time.monotonic)  # when it arrived (pacing tests)


@dataclass(frozen=True, slots=True)
class WahaSent:
    """A message the fake WAHA sent: enough to build the ``message.any`` echo of it."""

    session: str
    chat: str  # as the sender named it (``@c.us``)
    msg_id: str  # the engine's own id, without ``true_<chat>_``
    text: str
    at: float = field(default_factory=time.time)  # when it was sent (unix seconds)


@dataclass(frozen=True, slots=True)
class EvolutionSent:
    """A message the fake Evolution sent: enough to build its ``send.message`` webhook."""

    instance: str
    remote_jid: str  # ``<digits>@s.whatsapp.net`` (or the group / LID the number named)
    msg_id: str
    text: str
    at: float = field(default_factory=time.time)  # when it was sent (unix seconds)


@dataclass(frozen=True, slots=True)
class MetaSent:
    """A message the fake Graph API accepted: enough to build its ``statuses[]`` webhook."""

    phone_number_id: str
    recipient: str  # the digits Meta reports as ``recipient_id``
    wamid: str
    callback_data: str | None = None  # ``biz_opaque_callback_data``, echoed in statuses


@dataclass
class FakeWhatsApp:
    """State and recordings of the fake gateways."""

    waha_engine: WahaEngine = "NOWEB"
    waha_sent: list[WahaSent] = field(default_factory=list)
    waha_api_key: str | None = "waha-key"
    waha_sessions: dict[str, str] = field(default_factory=lambda: {"default": "WORKING"})
    evolution_api_key: str | None = "evo-key"
    evolution_instances: dict[str, str] = field(default_factory=lambda: {"shop": "open"})
    evolution_sent: list[EvolutionSent] = field(default_factory=list)
    meta_token: str | None = "meta-token"
    meta_phone_numbers: tuple[str, ...] = ("106540352242922",)
    meta_sent: list[MetaSent] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    # state of the fake's extension modules (``EXTENSIONS``), one key per module
    ext: dict[str, Any] = field(default_factory=dict)
    # (status, headers, JSON body) answered instead of the real thing, first in first out
    fail_next: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def calls(self, path_prefix: str = "") -> list[RecordedRequest]:
        """Recorded requests whose path starts with ``path_prefix``."""
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def next_id(self) -> int:
        return next(self._ids)

    def waha_echo(self, sent: WahaSent, *, event: str = "message.any") -> dict[str, Any]:
        """The webhook WAHA sends for a message it sent for us (``fromMe``, ``source`` "api"
        where the engine reports one), shaped by ``waha_engine``."""
        return waha_message(
            sent.text,
            msg_id=sent.msg_id,
            chat=sent.chat,
            from_me=True,
            source="api",
            event=event,
            session=sent.session,
            push_name="Shop",
            engine=self.waha_engine,
        )

    def evolution_echo(self, sent: EvolutionSent) -> dict[str, Any]:
        """The ``send.message`` webhook Evolution sends for a message sent through its API."""
        return evolution_message(
            sent.text,
            msg_id=sent.msg_id,
            remote_jid=sent.remote_jid,
            from_me=True,
            instance=sent.instance,
            push_name="",
            event="send.message",
        )

    def meta_status_of(self, sent: MetaSent, status: str = "sent") -> dict[str, Any]:
        """The ``statuses[]`` webhook Meta sends for a message it accepted (no text in it)."""
        return meta_webhook(
            statuses=[
                meta_status(
                    sent.wamid,
                    status,
                    recipient=sent.recipient,
                    callback_data=sent.callback_data,
                )
            ],
            phone_number_id=sent.phone_number_id,
        )


def _error(status: int, body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def create_fake_whatsapp(**options: Any) -> FastAPI:
    """The fake's ASGI app; ``app.state.fake`` is its ``FakeWhatsApp`` (``options`` set it)."""
    fake = FakeWhatsApp(**options)
    app = FastAPI(title="fake WhatsApp gateways")
    app.state.fake = fake
    extensions = _extensions()

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def handle(request: Request, path: str) -> Response:
        raw = await request.body()
        try:
            body = await request.json() if raw else None
        except ValueError:
            body = None
        path = "/" + path
        headers = {k.lower(): v for k, v in request.headers.items()}
        fake.requests.append(RecordedRequest(request.method, path, headers, body))
        if fake.fail_next:
            status, extra, payload = fake.fail_next.pop(0)
            return JSONResponse(payload, status_code=status, headers=extra)
        for module in extensions:
            answer: Response | None = await module.handle(fake, request, path, headers, body, raw)
            if answer is not None:
                return answer
        if path.startswith("/api/"):
            return _waha(fake, request.method, path, headers, body, dict(request.query_params))
        if path.startswith(("/message/", "/chat/", "/instance/")):
            return _evolution(fake, request.method, path, headers, body)
        if path.count("/") >= 2 and path.split("/")[1].startswith("v"):
            return _meta(fake, request.method, path, headers, body)
        return _error(404, {"message": f"no such endpoint {path}"})

    return app


# ------------------------------------------------------------------------------ WAHA


def _waha(
    fake: FakeWhatsApp,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    query: dict[str, str] | None = None,
) -> Response:
    if fake.waha_api_key and headers.get("x-api-key") != fake.waha_api_key:
        return _error(401, {"message": "Unauthorized", "statusCode": 401})
    parts = path.split("/")  # "", "api", session, "chats", chat, "messages"
    if method == "GET" and len(parts) == 6 and parts[3] == "chats" and parts[5] == "messages":
        return _waha_chat_messages(fake, parts[2], parts[4], query or {})
    if method == "GET" and path.startswith("/api/sessions/"):
        name = path.rsplit("/", 1)[1]
        if name not in fake.waha_sessions:
            return _error(404, {"message": "Session not found", "statusCode": 404})
        return JSONResponse({"name": name, "status": fake.waha_sessions[name]})
    endpoint = path.removeprefix("/api/")
    known = {
        "sendText",
        "sendImage",
        "sendFile",
        "sendVoice",
        "sendVideo",
        "sendSeen",
        "startTyping",
        "stopTyping",
    }
    if method != "POST" or endpoint not in known:
        return _error(404, {"message": f"Cannot {method} {path}", "statusCode": 404})
    if not isinstance(body, dict) or not body.get("session") or not body.get("chatId"):
        return _error(400, {"message": "session and chatId are required", "statusCode": 400})
    if body["session"] not in fake.waha_sessions:
        return _error(404, {"message": "Session not found", "statusCode": 404})
    if not endpoint.startswith("send") or endpoint == "sendSeen":
        return JSONResponse({}, status_code=201)
    chat = str(body["chatId"])
    if "@" not in chat:
        chat = f"{chat.lstrip('+')}@c.us"
    text = str(body.get("text") or body.get("caption") or "")
    sent = WahaSent(str(body["session"]), chat, f"3EB0FAKE{fake.next_id():08d}", text)
    fake.waha_sent.append(sent)
    return JSONResponse(_waha_send_result(fake.waha_engine, sent), status_code=201)


def _waha_chat_messages(
    fake: FakeWhatsApp, session: str, chat: str, query: dict[str, str]
) -> Response:
    """``GET /api/{session}/chats/{chatId}/messages?limit=…``: the chat's messages the fake
    sent, newest first, in WAHA's message shape (``id``, ``timestamp``, ``fromMe``, ``body``)."""
    if session not in fake.waha_sessions:
        return _error(404, {"message": "Session not found", "statusCode": 404})
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return _error(400, {"message": "limit must be a number", "statusCode": 400})
    if limit < 1:
        return _error(400, {"message": "limit must be positive", "statusCode": 400})
    mine = [m for m in fake.waha_sent if m.session == session and m.chat == chat]
    return JSONResponse(
        [
            {
                "id": f"true_{m.chat}_{m.msg_id}",
                "timestamp": int(m.at),
                "from": WAHA_ME,
                "fromMe": True,
                "body": m.text,
                "hasMedia": False,
                "ack": 1,
                "ackName": "SERVER",
                "replyTo": None,
            }
            for m in reversed(mine[-limit:])
        ]
    )


def _waha_send_result(engine: WahaEngine, sent: WahaSent) -> dict[str, Any]:
    """What ``POST /api/send*`` answers on each engine."""
    remote = s_whatsapp(sent.chat)
    serialized = f"true_{sent.chat}_{sent.msg_id}"
    message = {"conversation": sent.text}
    if engine == "WEBJS":  # the whatsapp-web.js Message
        return {
            "id": {
                "fromMe": True,
                "remote": sent.chat,
                "id": sent.msg_id,
                "_serialized": serialized,
            },
            "body": sent.text,
            "type": "chat",
            "timestamp": int(time.time()),
            "from": WAHA_ME,
            "to": sent.chat,
            "fromMe": True,
            "ack": 0,
            "hasMedia": False,
        }
    if engine == "GOWS":  # the serialized id and the raw message
        return {"id": serialized, "_data": message}
    return {  # NOWEB: the Baileys message it sent
        "key": {"remoteJid": remote, "fromMe": True, "id": sent.msg_id},
        "message": message,
        "messageTimestamp": int(time.time()),
        "status": "PENDING",
    }


# ------------------------------------------------------------------------------ Evolution


def _evolution_find_messages(fake: FakeWhatsApp, instance: str, body: dict[str, Any]) -> Response:
    """``POST /chat/findMessages/{instance}`` ``{where: {key: {remoteJid, fromMe}}, offset, page}``:
    the messages the fake sent (Evolution's database), newest first, ``offset`` a page."""
    where = body.get("where", {})
    key = where.get("key", {}) if isinstance(where, dict) else None
    offset, page = body.get("offset", 50), body.get("page", 1)
    if not isinstance(key, dict) or not all(isinstance(v, int) and v > 0 for v in (offset, page)):
        return _error(400, {"status": 400, "error": "Bad Request"})
    remote = key.get("remoteJid")
    found = [
        m
        for m in reversed(fake.evolution_sent)
        if m.instance == instance
        and (remote is None or m.remote_jid == remote)
        and key.get("fromMe") in (None, True)
    ]
    records = [
        {
            "id": f"db-{m.msg_id}",
            "key": {"id": m.msg_id, "fromMe": True, "remoteJid": m.remote_jid},
            "pushName": "",
            "messageType": "conversation",
            "message": {"conversation": m.text},
            "messageTimestamp": int(m.at),
            "instanceId": "9f3b030d-fake",
            "source": "unknown",
            "MessageUpdate": [],
        }
        for m in found[(page - 1) * offset : page * offset]
    ]
    pages = -(-len(found) // offset)
    return JSONResponse(
        {"messages": {"total": len(found), "pages": pages, "currentPage": page, "records": records}}
    )


def _evolution(
    fake: FakeWhatsApp, method: str, path: str, headers: dict[str, str], body: Any
) -> Response:
    if fake.evolution_api_key and headers.get("apikey") != fake.evolution_api_key:
        return _error(
            401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
        )
    parts = path.strip("/").split("/")
    if len(parts) != 3:
        return _error(404, {"status": 404, "error": "Not Found"})
    group, action, instance = parts
    if instance not in fake.evolution_instances:
        return _error(
            404,
            {
                "status": 404,
                "error": "Not Found",
                "response": {"message": [f'The "{instance}" instance does not exist']},
            },
        )
    if method == "GET" and (group, action) == ("instance", "connectionState"):
        return JSONResponse(
            {"instance": {"instanceName": instance, "state": fake.evolution_instances[instance]}}
        )
    if method != "POST" or not isinstance(body, dict):
        return _error(400, {"status": 400, "error": "Bad Request"})
    if (group, action) == ("chat", "markMessageAsRead"):
        if not isinstance(body.get("readMessages"), list):
            return _error(400, {"status": 400, "response": {"message": ["readMessages"]}})
        return JSONResponse({"message": "Read messages", "read": "success"}, status_code=201)
    if (group, action) == ("chat", "findMessages"):
        return _evolution_find_messages(fake, instance, body)
    if not body.get("number"):
        return _error(400, {"status": 400, "response": {"message": ["number is required"]}})
    if (group, action) == ("chat", "sendPresence"):
        return JSONResponse({"presence": body.get("presence")}, status_code=201)
    if group == "message" and action in ("sendText", "sendMedia", "sendWhatsAppAudio"):
        number = str(body["number"])
        remote = number if "@" in number else f"{number}@s.whatsapp.net"
        text = str(body.get("text") or body.get("caption") or "")
        sent = EvolutionSent(instance, remote, f"BAE5FAKE{fake.next_id():08d}", text)
        fake.evolution_sent.append(sent)
        return JSONResponse(
            {
                "key": {"remoteJid": remote, "fromMe": True, "id": sent.msg_id},
                "pushName": "",
                "status": "PENDING",
                "message": {"conversation": text},
                "messageType": "conversation" if action == "sendText" else "mediaMessage",
                "messageTimestamp": int(time.time()),
                "instanceId": "00000000-fake",
                "source": "unknown",
            },
            status_code=201,
        )
    return _error(404, {"status": 404, "error": "Not Found"})


# ------------------------------------------------------------------------------ Meta


def _meta(
    fake: FakeWhatsApp, method: str, path: str, headers: dict[str, str], body: Any
) -> Response:
    if fake.meta_token and headers.get("authorization") != f"Bearer {fake.meta_token}":
        return _error(
            401,
            {
                "error": {
                    "message": "Invalid OAuth access token - Cannot parse access token",
                    "type": "OAuthException",
                    "code": 190,
                }
            },
        )
    parts = path.strip("/").split("/")
    number = parts[1] if len(parts) > 1 else ""
    if number not in fake.meta_phone_numbers:
        return _error(
            400,
            {
                "error": {
                    "message": f"Unsupported {method.lower()} request. Object with ID "
                    f"'{number}' does not exist",
                    "type": "GraphMethodException",
                    "code": 100,
                }
            },
        )
    if method == "GET" and len(parts) == 2:
        return JSONResponse(
            {
                "verified_name": "Shop",
                "display_phone_number": "+1 555-078-3881",
                "id": number,
                "quality_rating": "GREEN",
            }
        )
    if method != "POST" or len(parts) != 3 or parts[2] != "messages":
        return _error(400, {"error": {"message": "Unsupported request", "code": 100}})
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return _error(400, {"error": {"message": "messaging_product is required", "code": 100}})
    if body.get("status") == "read":
        return JSONResponse({"success": True})
    to = str(body.get("to", ""))
    callback = body.get("biz_opaque_callback_data")
    if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
        return _error(
            400,
            {
                "error": {
                    "message": "(#100) Param biz_opaque_callback_data must be a string "
                    "of at most 512 characters",
                    "code": 100,
                }
            },
        )
    sent = MetaSent(number, to.lstrip("+"), f"wamid.FAKE{fake.next_id():08d}", callback)
    fake.meta_sent.append(sent)
    return JSONResponse(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": sent.recipient}],
            "messages": [{"id": sent.wamid}],
        }
    )
