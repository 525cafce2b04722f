"""The native web chat API the widget uses, its live WebSocket, and the widget's files.

See ``docs/webchat.md`` for the frames and bodies. Every refusal is a 4xx with the bridge's
JSON error envelope; public endpoints are rate limited per IP and per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field, field_validator, model_validator
from starlette.websockets import WebSocketDisconnect, WebSocketState

from chatbridge.api.bodies import file_upload_limit
from chatbridge.api.errors import error_responses
from chatbridge.api.origins import origin_allowed
from chatbridge.channels.webchat_live import Subscriber
from chatbridge.errors import BadInput
from chatbridge.pipeline.bridge import Bridge
from chatbridge.pipeline.webchat_sessions import CREATED, session_frame
from chatbridge.ratelimit import RateLimited, client_ip
from chatbridge.store.webchat import WebchatSession
from chatbridge.webchat.service import SESSION_ID, WebchatService, iso
from chatbridge.webchat.uploads import MAX_FILES, check_file_ids, store_upload, upload_view

log = logging.getLogger("chatbridge.webchat")
router = APIRouter(tags=["webchat"])

SessionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", max_length=64)]
STATIC = resources.files("chatbridge.webchat") / "static"
# A live socket re-reads this many seconds before its cursor and skips what it has shown:
# a reply stamped before a message the socket already showed but committed after it (another
# replica, a busy database) is still shown, once (``webchat_history(lookback=…)``).
LATE_COMMIT_WINDOW = 10.0
REMEMBERED = 500


def _bridge(request: Request) -> Bridge:
    bridge: Bridge = request.app.state.bridge
    return bridge


def _service(bridge: Bridge) -> WebchatService:
    svc: WebchatService | None = getattr(bridge, "_webchat_service", None)
    if svc is None:
        svc = WebchatService(bridge)
        bridge._webchat_service = svc  # type: ignore[attr-defined]
    return svc


def _text_ok(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains an unpaired surrogate") from None
    return value


class SessionIn(BaseModel):
    inbox_id: int = Field(ge=0, le=2**31 - 1)
    session_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(value, ensure_ascii=False)
        _text_ok(raw)
        if len(value) > 20 or len(raw) > 4000 or "\\u0000" in raw:
            raise ValueError("metadata: at most 20 keys and 4000 characters, no NUL")
        return value


class SessionOut(BaseModel):
    session_id: str
    uid: str
    inbox_id: int
    conversation_id: str | None
    created: bool
    idle_timeout: float
    # what the visitor may upload (POST /api/webchat/upload); off when no type is allowed
    uploads: dict[str, Any]


def addressing(agent: Any, role: Any) -> dict[str, str] | None:
    """The metadata of a visitor's message that addresses one of its route's agents
    (protocol 1.3, docs/multi-agent.md): ``agent`` (an agent id) and ``role``, as given.

    Raises:
        BadInput: ``invalid_message`` for anything but a string of 1 to 200 characters.
    """
    out: dict[str, str] = {}
    for key, value in (("agent", agent), ("role", role)):
        if value is None:
            continue
        if not isinstance(value, str) or not 0 < len(value) <= 200:
            raise BadInput("invalid_message", f"{key} must be a string of 1 to 200 characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput("invalid_message", f"{key} has an unpaired surrogate") from None
        out[key] = value
    return out or None


class MessageIn(BaseModel):
    # may be empty when the message carries files
    text: str = Field(default="", max_length=1_000_000)
    client_message_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    inbox_id: int | None = Field(default=None, ge=0, le=2**31 - 1)
    # the id of the option the visitor clicked among the bot's last choices (protocol 1.2)
    choice_id: str | None = Field(default=None, min_length=1, max_length=200)
    # address one of the route's agents (protocol 1.3 multi-agent routes): an id, or a role
    agent: str | None = Field(default=None, min_length=1, max_length=200)
    role: str | None = Field(default=None, min_length=1, max_length=200)
    # ids of this session's uploads (POST /api/webchat/upload), sent with the message
    files: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]] = Field(
        default_factory=list, max_length=MAX_FILES
    )

    _check = field_validator("text")(_text_ok)

    @model_validator(mode="after")
    def _text_or_files(self) -> MessageIn:
        if not self.text and not self.files:
            raise ValueError("a message needs text or files")
        return self


class MessageOut(BaseModel):
    status: str
    message_id: str | None
    client_message_id: str | None
    session_id: str
    uid: str
    conversation_id: str | None
    created_at: str | None


class UploadOut(BaseModel):
    file_id: str
    file_name: str
    mime: str | None
    size: int | None


class HistoryMessage(BaseModel):
    id: str
    role: str
    text: str
    created_at: str
    client_message_id: str | None = None
    turn_id: str | None = None
    attachments: list[dict[str, Any]] | None = None
    # a bot message's choices {kind, title?, button?, options}; a visitor's pick {id, title}
    interactive: dict[str, Any] | None = None
    # protocol 1.3: a notice's kind (system | warning), a reply's rich data
    notice: str | None = None
    data: dict[str, Any] | None = None
    # a human operator's display name (console operators): the widget shows it as the sender
    sender_name: str | None = None


class HistoryOut(BaseModel):
    messages: list[HistoryMessage]
    cursor: str | None
    typing: bool = False


async def _limit_message(bridge: Bridge, ip: str, session_id: str) -> None:
    """A visitor message counts per IP and per session (HTTP and the live socket alike)."""
    s = bridge.settings
    await bridge.rate_limiter.hit("webchat_message_ip", s.rate_limit_messages_ip, ip)
    await bridge.rate_limiter.hit(
        "webchat_message_session", s.rate_limit_messages_session, session_id
    )


async def _active_session(svc: WebchatService, session_id: str) -> WebchatSession:
    session = await svc.store.get_session(session_id, timeout=svc.timeout)
    if session is None:
        raise BadInput(
            "unknown_session",
            f"no active session {session_id}; create one with POST /api/webchat/sessions",
            status_code=404,
        )
    return session


@router.post(
    "/api/webchat/sessions",
    response_model=SessionOut,
    summary="Create or resume a web chat session",
    responses=error_responses(
        {404: "no route for this web chat inbox", 422: "invalid body", 429: "rate limited"}
    ),
)
async def open_session(body: SessionIn, request: Request) -> SessionOut:
    bridge = _bridge(request)
    s = bridge.settings
    ip = client_ip(request)
    await bridge.rate_limiter.hit("webchat_session", s.rate_limit_session_create, ip)
    svc = _service(bridge)
    session, created = await svc.open(
        body.session_id, inbox_id=body.inbox_id, ip=ip, meta=dict(body.metadata)
    )
    return SessionOut(
        session_id=session.id,
        uid=session.uid,
        inbox_id=session.inbox_id,
        conversation_id=None if created else await svc.conversation_id(session),
        created=created,
        idle_timeout=svc.timeout,
        uploads={
            "enabled": bool(s.webchat_upload_types),
            "max_bytes": s.webchat_upload_max_bytes,
            "types": s.webchat_upload_types,
        },
    )


@router.post(
    "/api/webchat/sessions/{session_id}/messages",
    response_model=MessageOut,
    status_code=202,
    summary="Post a visitor message (deduplicated by client_message_id)",
    responses=error_responses(
        {
            400: "empty message or invalid ids",
            404: "unknown session (and no inbox_id given)",
            413: "message too long",
            422: "invalid body",
            429: "rate limited",
        }
    ),
)
async def post_message(session_id: SessionId, body: MessageIn, request: Request) -> MessageOut:
    bridge = _bridge(request)
    ip = client_ip(request)
    await _limit_message(bridge, ip, session_id)
    svc = _service(bridge)
    posted = await svc.post(
        session_id,
        body.text,
        client_message_id=body.client_message_id,
        inbox_id=body.inbox_id,
        ip=ip,
        choice_id=body.choice_id,
        extra=addressing(body.agent, body.role),
        files=body.files,
    )
    m = posted.message
    return MessageOut(
        status=posted.status,
        message_id=m.id if m else None,
        client_message_id=body.client_message_id,
        session_id=posted.session.id,
        uid=posted.session.uid,
        conversation_id=posted.conversation_id,
        created_at=iso(m.created_at) if m else None,
    )


@router.get(
    "/api/webchat/sessions/{session_id}/messages",
    response_model=HistoryOut,
    response_model_exclude_none=True,
    summary="A session's history after a cursor (long-poll with wait)",
    responses=error_responses(
        {404: "unknown or expired session", 422: "invalid query", 429: "rate limited"}
    ),
)
async def history(
    session_id: SessionId,
    request: Request,
    after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    wait: Annotated[float, Query(ge=0, le=30)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> HistoryOut:
    bridge = _bridge(request)
    await bridge.rate_limiter.hit(
        "webchat_history", bridge.settings.rate_limit_history, client_ip(request)
    )
    svc = _service(bridge)
    session = await _active_session(svc, session_id)
    rows = await svc.history(
        session, after=after, wait=wait, limit=limit, gone=request.is_disconnected
    )
    return HistoryOut(
        messages=[HistoryMessage(**view) for view in svc.views(rows)],
        cursor=rows[-1].id if rows else after,
        typing=svc.live.typing(session.uid),
    )


UPLOAD_PATH = "/api/webchat/upload"


def upload_body_limit(max_body_bytes: int, upload_max_bytes: int) -> dict[str, int]:
    """``BodySizeLimit``'s limit for the upload path: a whole file up to the web chat's cap,
    with room for the multipart framing."""
    return file_upload_limit(UPLOAD_PATH, max_body_bytes, upload_max_bytes)


@router.post(
    UPLOAD_PATH,
    status_code=201,
    response_model=UploadOut,
    summary="A visitor uploads a file to send with their next message",
    responses=error_responses(
        {
            403: "uploads are off (CHATBRIDGE_WEBCHAT_UPLOAD_TYPES is empty)",
            404: "unknown or expired session",
            413: "over the web chat's size cap",
            415: "a type visitors may not send",
            422: "empty file, bytes that are not the declared type, or invalid fields",
            429: "rate limited",
        }
    ),
)
async def upload(
    request: Request,
    session_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9_-]{1,64}$", max_length=64)],
    file: Annotated[
        UploadFile, File(description="the file; its name and type as the browser gives them")
    ],
) -> UploadOut:
    bridge = _bridge(request)
    if not bridge.settings.webchat_upload_types:
        raise BadInput("uploads_disabled", "this web chat takes no files", status_code=403)
    await _limit_message(bridge, client_ip(request), session_id)
    svc = _service(bridge)
    session = await _active_session(svc, session_id)
    data = await file.read()
    row = await store_upload(
        bridge.store, bridge.settings, session.id, data, file.content_type, file.filename
    )
    return UploadOut(**upload_view(row))


# ---------------------------------------------------------------------------------- live


class _LiveSocket:
    """One widget connection. Its ASGI task reads the visitor's frames (``run``); one writer
    task sends what the hub publishes, and pings when it has had nothing to send for a
    heartbeat interval.

    A socket may stay open for hours, and every object it holds is one more for each full
    collection to walk (see ``chatbridge.gc_policy``), so it holds few: no reader task of its
    own, timeouts with ``asyncio.timeout`` (``wait_for`` wraps every wait in a task), a
    ``Subscriber`` instead of an ``asyncio.Queue``.

    "News" (the history grew) needs the store; it is read by a short-lived task so that the
    frames that need nothing (streamed chunks, typing) never wait behind a history query,
    whose turn on the store may come after a queue of other transactions. So a first chunk
    may reach a socket before the visitor's own message comes back from the history (the
    widget shows its own messages at once; another tab of the session shows the stream first).
    Other frames keep their place after the messages announced before them.
    """

    def __init__(self, ws: WebSocket, bridge: Bridge, session: WebchatSession) -> None:
        self.ws = ws
        self.bridge = bridge
        self.svc = _service(bridge)
        self.session = session
        self.cursor: str | None = None
        self.sent: OrderedDict[str, None] = OrderedDict()  # ids shown (late commits, above)
        self.finished: OrderedDict[str, None] = OrderedDict()  # turns whose reply was shown
        self.sub: Subscriber | None = None
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._news_wanted = False
        self._news_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self.ip = ws.client.host if ws.client else "unknown"

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._send_now(frame)

    async def _send_now(self, frame: dict[str, Any]) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.ws.send_text(json.dumps(frame, ensure_ascii=False))

    async def close(self, code: int, reason: str) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    async def _subscribe(self) -> None:
        old = self.sub
        self.sub = self.svc.live.subscribe(self.session.uid, close=self.close)
        if old is not None:
            self.svc.live.unsubscribe(old)  # the writer moves on to the new one
        self.cursor = await self.svc.store.webchat_last_id(self.session.uid)
        await self.send(
            {
                "type": "session",
                "session_id": self.session.id,
                "uid": self.session.uid,
                "conversation_id": await self.svc.conversation_id(self.session),
            }
        )

    async def run(self) -> None:
        await self._subscribe()
        writer = asyncio.create_task(self._write())
        writer.add_done_callback(self._failed)
        try:
            await self._read()
        finally:
            tasks = [t for t in (writer, self._news_task) if t is not None]
            for task in tasks:
                task.remove_done_callback(self._failed)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.sub is not None:
                self.svc.live.unsubscribe(self.sub)

    def _failed(self, task: asyncio.Task[None]) -> None:
        """The writer or a history read failed (the store away, say): end the connection, as
        the reader would on a hang-up; the widget reconnects and resumes from its cursor."""
        if task.cancelled() or task.exception() is None:
            return
        log.warning("web chat socket failed (uid %s): %r", self.session.uid, task.exception())
        if not self._closed:
            self._closing = asyncio.ensure_future(self.close(1011, "server error"))

    async def _write(self) -> None:
        interval = self.bridge.settings.heartbeat_interval
        while self.sub is not None:
            sub = self.sub
            try:
                async with asyncio.timeout(interval):
                    frame = await sub.get()
            except TimeoutError:
                await self.send({"type": "ping"})
                continue
            if frame is None:
                continue  # resubscribed: the next round reads the new subscriber
            kind = frame.get("type")
            if kind == "_news":
                self._want_news()
            elif kind == "agent_streaming":
                await self._send_chunk(frame)
            elif kind == "typing":
                await self.send(frame)
            else:
                # anything else (a handoff notice) after the messages announced before it
                if self._news_task is not None:
                    await asyncio.wait([self._news_task])
                await self.send(frame)

    async def _send_chunk(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            # Looked at under the lock: the final message may be on its way from the history
            # (a chunk relayed late by another replica, or one that lost the race to a history
            # read): the bubble is complete then, a late piece would only redraw part of it.
            if frame.get("turn_id") not in self.finished:
                await self._send_now(frame)

    def _want_news(self) -> None:
        """Read the history after the cursor, in the background: one read at a time, and news
        that comes during a read makes one more read after it."""
        self._news_wanted = True
        if self._news_task is None:
            self._news_task = asyncio.create_task(self._read_news())
            self._news_task.add_done_callback(self._failed)

    async def _read_news(self) -> None:
        try:
            while self._news_wanted:
                self._news_wanted = False
                await self._send_news()
        finally:
            self._news_task = None

    async def _send_news(self) -> None:
        uid = self.session.uid
        rows = await self.svc.store.webchat_history(
            uid, after=self.cursor, lookback=LATE_COMMIT_WINDOW
        )
        if uid != self.session.uid:
            self._news_wanted = True  # the session changed meanwhile: read the new one's
            return
        for m in rows:
            if m.id in self.sent:
                continue
            view = self.svc.view(m)
            async with self._send_lock:  # with its turn marked finished (``_send_chunk``)
                await self._send_now({"type": "message", "message": view})
                self.sent[m.id] = None
                if "turn_id" in view:
                    self.finished[view["turn_id"]] = None
        while len(self.sent) > REMEMBERED:
            self.sent.popitem(last=False)
        while len(self.finished) > REMEMBERED:
            self.finished.popitem(last=False)
        if rows:
            self.cursor = rows[-1].id

    async def _read(self) -> None:
        interval = self.bridge.settings.heartbeat_interval
        while True:
            try:
                async with asyncio.timeout(interval * 3):
                    message = await self.ws.receive()
            except TimeoutError:
                await self.close(1001, "no heartbeat")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            try:
                frame = read_frame(message.get("text"))
            except BadInput as exc:
                # a bad frame is answered, never a reason to drop the visitor's connection
                await self.send({"type": "error", "code": exc.code, "message": exc.message})
                continue
            cmid = frame.get("client_message_id")
            echo = {"client_message_id": cmid if isinstance(cmid, str) else None}
            try:
                await self._on_frame(frame)
            except RateLimited as exc:
                await self.send(
                    {
                        "type": "error",
                        "code": "rate_limited",
                        "message": str(exc),
                        "retry_after": exc.retry_after,
                        **echo,
                    }
                )
            except BadInput as exc:
                await self.send({"type": "error", "code": exc.code, "message": exc.message, **echo})

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            return
        elif kind == "resume":
            after = frame.get("after")
            if after is not None and not isinstance(after, str):
                raise BadInput("invalid_cursor", "after must be a message id or null")
            rows = await self.svc.store.webchat_history(self.session.uid, after=after or None)
            await self.send(
                {
                    "type": "history",
                    "messages": self.svc.views(rows),
                    "cursor": rows[-1].id if rows else after,
                }
            )
        elif kind == "user_message":
            await self._user_message(frame)
        else:
            raise BadInput("unknown_type", f"unknown frame type {kind!r}")

    async def _user_message(self, frame: dict[str, Any]) -> None:
        content = frame.get("content", "")
        cmid = frame.get("client_message_id")
        choice_id = frame.get("choice_id")
        files = check_file_ids(frame.get("files"))
        if not isinstance(content, str) or (cmid is not None and not isinstance(cmid, str)):
            raise BadInput("invalid_message", "content must be a string")
        if choice_id is not None and (not isinstance(choice_id, str) or not choice_id):
            raise BadInput("invalid_message", "choice_id must be a non-empty string")
        extra = addressing(frame.get("agent"), frame.get("role"))
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput("invalid_message", "content has an unpaired surrogate") from None
        await _limit_message(self.bridge, self.ip, self.session.id)
        posted = await self.svc.post(
            self.session.id,
            content,
            client_message_id=cmid,
            ip=self.ip,
            choice_id=choice_id,
            files=files,
            extra=extra,
        )
        if posted.session.uid != self.session.uid:
            # The session had expired: the message started a new conversation; follow it.
            self.session = posted.session
            await self._subscribe()
            if posted.new_session:
                # announced to the new uid before this socket listened to it: tell it here
                # (a second copy, if the announcement came after all, is harmless)
                frame = session_frame(CREATED, posted.session)
                await self.send({**frame, "uid": posted.session.uid})
            self.svc.live.news(self.session.uid)
        await self.send(
            {
                "type": "ack",
                "client_message_id": cmid,
                "message_id": posted.message.id if posted.message else None,
                "status": posted.status,
            }
        )


def read_frame(text: str | None) -> dict[str, Any]:
    """The widget frame in ``text`` as a JSON object.

    Raises:
        BadInput: ``invalid_frame`` for a binary frame or a JSON value that is not an object,
            ``invalid_json`` for text that is not JSON or is nested too deeply to decode.
    """
    if text is None:
        raise BadInput("invalid_frame", "frames must be JSON text, not binary")
    try:
        frame = json.loads(text)
    except ValueError:
        raise BadInput("invalid_json", "the frame is not valid JSON") from None
    except RecursionError:
        raise BadInput("invalid_json", "the frame is nested too deeply") from None
    if not isinstance(frame, dict):
        raise BadInput("invalid_frame", "a frame must be a JSON object with a type")
    return frame


class PendingSockets:
    """How many widget sockets are open but not yet established (their session not yet
    checked). Anyone may open one, so their number is capped: over ``limit`` a new socket is
    closed at once with 1013 ("try again later"), and established visitors are not affected.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> bool:
        """Count one more pending socket; False (and nothing counted) when at the limit."""
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


async def webchat_socket(websocket: WebSocket, session_id: str) -> None:
    """``WS /api/ws/chat/{session_id}``: the widget's live connection."""
    bridge: Bridge = websocket.app.state.bridge
    svc = _service(bridge)
    origin = websocket.headers.get("origin")
    if not origin_allowed(
        origin, websocket.headers.get("host"), bridge.settings.webchat_cors_origins
    ):
        await websocket.close(4403, "origin not allowed")
        return
    pending: PendingSockets = websocket.app.state.webchat_pending
    await websocket.accept()
    if not pending.enter():
        await websocket.close(1013, "too many connections being set up; try again")
        return
    try:
        active = await _established(svc, websocket, session_id)
    finally:
        pending.leave()
    if active is None:
        return
    live = _LiveSocket(websocket, bridge, active)
    await live.run()
    with contextlib.suppress(Exception):
        if websocket.application_state == WebSocketState.CONNECTED:
            await websocket.close(1000)


async def _established(
    svc: WebchatService, websocket: WebSocket, session_id: str
) -> WebchatSession | None:
    """The socket's active session, or None after closing it with the reason (4404 unknown,
    4410 expired)."""
    session = None
    if SESSION_ID.match(session_id):
        session = await svc.store.get_session(session_id)
    if session is None:
        await websocket.close(4404, "unknown session")
        return None
    active = await svc.store.get_session(session_id, timeout=svc.timeout, touch=True)
    if active is None:
        await websocket.close(4410, "session expired")
        return None
    return active


# ---------------------------------------------------------------------------------- files


@router.get("/widget.js", include_in_schema=False)
async def widget_js() -> Response:
    path = STATIC / "widget.js"
    if not path.is_file():
        raise BadInput("not_found", "widget.js is not built into this install", status_code=404)
    return FileResponse(
        str(path),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


@router.get("/chat", include_in_schema=False)
async def chat_page() -> Response:
    path = STATIC / "chat.html"
    if not path.is_file():
        return HTMLResponse("<!doctype html><p>The demo page is not installed.</p>", 404)
    return FileResponse(str(path), media_type="text/html; charset=utf-8")
