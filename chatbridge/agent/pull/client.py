"""``PullClient``: polls a bridge, runs the handler, posts the answers (see the package doc)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from chatbridge.agent.app import Agent
from chatbridge.agent.frames import (
    call_handler,
    chunk_frame,
    complete_frame,
    metadata,
    reply_frame,
)
from chatbridge.agent.identity import turn_key
from chatbridge.agent.pull.config import PullConfig
from chatbridge.agent.pull.decisions import (
    MessageKey,
    SeenMessages,
    TurnEntry,
    TurnLedger,
    action_message_key,
    backoff_delay,
    describe,
    error_code,
)
from chatbridge.agent.turn import (
    Answer,
    Handoff,
    HandTo,
    MessageHandler,
    NoReply,
    Turn,
    TurnError,
)
from chatbridge.backoff import parse_retry_after
from chatbridge.errors import ChatbridgeError, ConfigError
from chatbridge.models import JsonObject
from chatbridge.protocol import ProtocolError, UserMessage, error_frame, parse_bridge_frame
from chatbridge.richdata import text_fallback

log = logging.getLogger("chatbridge.agent.pull")

ACTION_PAGE = 50  # what the plugin asks for; the action API caps a page at 100
USER_AGENT = "chatbridge-pull-agent/1"


class PullError(ChatbridgeError):
    """Talking to the bridge failed."""


class PullRejected(PullError):
    """The bridge refused this client (token, key, agent or URL); retrying will not help."""


class BridgeUnreachable(PullError):
    """A request failed ``max_retries`` times in a row (connection, timeout, 429 or 5xx)."""


class PullClient:
    """Polls one bridge and answers with ``agent``'s handler (see the module docstring).

    Args:
        config: where and how to poll.
        agent: an ``Agent`` with an ``on_message`` handler, or the handler itself.
        transport: an ``httpx`` transport instead of the network (tests).

    Raises:
        ConfigError: the agent has no handler.
    """

    def __init__(
        self,
        config: PullConfig,
        agent: Agent | MessageHandler,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(agent, Agent):
            handler, agent = agent, Agent(config.agent_id or "pull-agent")
            agent.on_message(handler)
        if agent.handlers.message is None:
            raise ConfigError("the agent has no on_message handler")
        self.config = config
        self.agent = agent
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._ledger = TurnLedger()
        self._seen = SeenMessages()
        self._unsent: dict[MessageKey, str] = {}  # action answers the bridge never took
        self._sessions: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._busy = 0
        self._slot_free = asyncio.Event()
        self.answered = 0
        """Answers the bridge accepted (tests and logs)."""

    # -- running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll and answer until ``stop`` is set; then let running turns finish for
        ``drain_seconds`` and cancel the rest. Cancelling ``run`` cancels running turns at once
        (their leases run out and the bridge offers them again).

        Raises:
            PullRejected: the bridge refused this client.
        """
        stop = stop or asyncio.Event()
        native = self.config.api == "native"
        async with self._client():
            log.info(
                "pulling from %s (%s API%s), %d turn(s) at once",
                self.config.url,
                self.config.api,
                f" as {self.config.agent_id}" if native else "",
                self.config.concurrency,
            )
            poller = asyncio.create_task(self._poll_native() if native else self._poll_action())
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({poller, stopper}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await self._shutdown(poller, stopper, drain=0.0)
                raise
            await self._shutdown(poller, stopper, drain=self.config.drain_seconds)
            failure = None if poller.cancelled() else poller.exception()
            if failure is not None:
                raise failure

    def abort(self) -> None:
        """Cancel every running turn now (a second Ctrl-C)."""
        for task in list(self._tasks):
            task.cancel()

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        cfg = self.config
        headers = {"User-Agent": USER_AGENT}
        if cfg.api == "native":
            headers |= {"Authorization": f"Bearer {cfg.token}", "X-Agent-Id": cfg.agent_id or ""}
        else:
            headers |= {"Authorization": f"Bearer {cfg.api_key}"}
        async with httpx.AsyncClient(
            base_url=cfg.url,
            headers=headers,
            timeout=httpx.Timeout(cfg.timeout),
            transport=self._transport,
        ) as http:
            self._http = http
            try:
                yield http
            finally:
                self._http = None

    async def _shutdown(
        self, poller: asyncio.Task[None], stopper: asyncio.Task[object], *, drain: float
    ) -> None:
        for task in (poller, stopper):
            task.cancel()
        await asyncio.gather(poller, stopper, return_exceptions=True)
        tasks = set(self._tasks)
        if tasks and drain > 0:
            log.info("stopping: waiting up to %gs for %d running turn(s)", drain, len(tasks))
            _, tasks = await asyncio.wait(tasks, timeout=drain)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[object], *, slot: bool = False) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        self._busy += slot

        def done(t: asyncio.Task[object]) -> None:
            self._tasks.discard(t)
            self._busy -= slot
            self._slot_free.set()
            if not t.cancelled() and t.exception() is not None:
                log.error("pull task failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def _free_slot(self) -> None:
        while self._busy >= self.config.concurrency:
            self._slot_free.clear()
            await self._slot_free.wait()

    async def _request(self, method: str, path: str, *, what: str, **kw: Any) -> httpx.Response:
        """One request, tried up to ``max_retries`` times on connection errors, 429 and 5xx.

        Raises:
            BridgeUnreachable: every attempt failed.
        """
        assert self._http is not None
        attempts = self.config.max_retries
        for attempt in range(attempts):
            retry_after = None
            try:
                response = await self._http.request(method, path, **kw)
            except httpx.RequestError as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                reason = describe(response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt + 1 >= attempts:
                raise BridgeUnreachable(f"{what} failed {attempts} time(s) in a row: {reason}")
            delay = backoff_delay(attempt, self.config.retry_delay, retry_after)
            log.warning("%s failed (%s); attempt %d in %.2fs", what, reason, attempt + 2, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, turn: Turn) -> Any:
        handler = self.agent.handlers.message
        assert handler is not None
        return await call_handler(handler, turn)

    async def _pause(self, started: float) -> None:
        """Sleep what is left of the poll interval since ``started``."""
        await asyncio.sleep(max(0.0, self.config.poll_interval - (time.monotonic() - started)))

    # -- native API -----------------------------------------------------------------------------

    async def _poll_native(self) -> None:
        cfg = self.config
        while True:
            await self._free_slot()
            started = time.monotonic()
            params = {"wait": cfg.wait, "limit": min(100, cfg.concurrency - self._busy)}
            try:
                r = await self._request(
                    "GET",
                    "/api/agent/turns",
                    what="poll",
                    params=params,
                    timeout=httpx.Timeout(cfg.timeout + cfg.wait),
                )
            except BridgeUnreachable as exc:
                log.error("%s; polling again in %gs", exc, cfg.poll_interval)
                await asyncio.sleep(cfg.poll_interval)
                continue
            if r.status_code != 200:
                raise PullRejected(f"the bridge refused to hand out turns: {describe(r)}")
            try:
                items = r.json()["turns"]
                assert isinstance(items, list)
            except (ValueError, KeyError, TypeError, AssertionError):
                log.error("poll answer is not {'turns': [...]}: %s", r.text[:200])
                items = []
            for item in items:
                self._take_native(item)
            if not items:
                await self._pause(started)  # long-polls that return at once must not spin

    def _take_native(self, item: Any) -> None:
        try:
            lease, frame = item["lease_id"], item["turn"]
            message = parse_bridge_frame(frame)
            if not isinstance(message, UserMessage) or not isinstance(lease, str):
                raise ProtocolError("invalid_message", "not a leased user_message")
        except (ProtocolError, KeyError, TypeError) as exc:
            log.error("skipping a malformed turn from the bridge: %s", exc)
            return
        conversation_id, turn_id, fingerprint = turn_key(message)
        decision, entry = self._ledger.offer(turn_id, conversation_id, lease, fingerprint)
        ids = (message.message_id, message.conversation_id)
        if decision == "run":
            log.debug("turn %s (conversation %s) taken", *ids)
            turn = Turn.from_message(message, frame, live=partial(self._post_live, entry))
            self._spawn(self._run_native(turn, entry), slot=True)
        elif decision == "repost":
            log.info("turn %s (conversation %s) offered again: sending the kept answer", *ids)
            self._spawn(self._post_native(entry))
        else:
            log.info("turn %s (conversation %s) offered again while in hand: new lease", *ids)

    async def _run_native(self, turn: Turn, entry: TurnEntry) -> None:
        started = time.monotonic()
        try:
            result = await self._call(turn)
            if isinstance(result, AsyncIterator):
                frames = [await self._stream_native(turn, entry, result, started)]
            else:
                frames = [reply_frame(turn, result, metadata(self.agent.agent_id, started))]
        except asyncio.CancelledError:
            self._ledger.forget(entry)
            raise
        except TurnError as exc:
            details = exc.details if exc.details is not None else {"message": str(exc)}
            frames = [error_frame(exc.code, message_id=turn.id, details=details)]
        except Exception as exc:
            log.exception(
                "handler failed on turn %s (conversation %s)", turn.id, entry.conversation_id
            )
            details = {"type": type(exc).__name__, "message": str(exc)[:500]}
            frames = [error_frame("handler_error", message_id=turn.id, details=details)]
        self._ledger.answered(entry, frames)
        await self._post_native(entry)

    async def _stream_native(
        self, turn: Turn, entry: TurnEntry, chunks: AsyncIterator[Any], started: float
    ) -> JsonObject:
        """Post chunks as they come (until one is refused); return the closing frame, which
        carries the whole text so that it stands alone if chunks were lost."""
        parts: list[str] = []
        live = True
        async for chunk in chunks:
            text = chunk if isinstance(chunk, str) else str(chunk)
            if live:
                live = await self._reply(entry, chunk_frame(turn, len(parts), text)) == "chunk"
            parts.append(text)
        meta = metadata(self.agent.agent_id, started)
        return complete_frame(turn, meta, "".join(parts))

    async def _post_native(self, entry: TurnEntry) -> None:
        try:
            for frame in entry.frames or []:
                if await self._reply(entry, frame) not in ("answered", "chunk", "typing"):
                    return
        finally:
            entry.posting = False

    async def _post_live(self, entry: TurnEntry, frame: JsonObject) -> bool:
        """Post a live frame or notice (protocol 1.3) for a turn whose handler runs."""
        return await self._reply(entry, frame) in ("live", "notice")

    async def _reply(self, entry: TurnEntry, frame: JsonObject) -> str:
        """Post one frame for ``entry`` under its newest lease; returns the bridge's status or
        the error code."""
        ids = (entry.turn_id, entry.conversation_id)
        path = f"/api/agent/turns/{quote(entry.turn_id, safe='')}/reply"
        for _ in range(2):
            lease = entry.lease
            try:
                r = await self._request(
                    "POST", path, what=f"reply to {ids[0]}", params={"lease": lease}, json=frame
                )
            except BridgeUnreachable as exc:
                log.error("%s (conversation %s); kept for a new offer", exc, ids[1])
                return "unreachable"
            if r.status_code == 200:
                status = str(r.json().get("status", ""))
                self.answered += status == "answered"
                return status
            code = error_code(r) or str(r.status_code)
            if code == "lease_expired" and entry.lease != lease:
                continue  # offered to us again meanwhile: the newer lease is ours
            if code == "lease_expired":
                log.warning("lease on turn %s (conversation %s) ran out; answer kept", *ids)
            elif r.status_code == 404:
                log.info("turn %s (conversation %s) is closed; answer dropped", *ids)
            else:
                log.error(
                    "bridge refused the answer to %s (conversation %s): %s", *ids, describe(r)
                )
            return code
        return "lease_expired"

    # -- action API -----------------------------------------------------------------------------

    async def _poll_action(self) -> None:
        params = {"action": "inbox", "limit": ACTION_PAGE, "offset": 0}
        while True:
            started = time.monotonic()
            messages: list[Any] = []
            try:
                r = await self._request("GET", "/api/v1/", what="inbox poll", params=params)
            except BridgeUnreachable as exc:
                log.error("%s; polling again in %gs", exc, self.config.poll_interval)
            else:
                if r.status_code in (401, 403, 404, 405):
                    raise PullRejected(f"the bridge refused the inbox poll: {describe(r)}")
                messages = _inbox_messages(r)
                for message in messages:
                    self._take_action(message)
            if len(messages) < ACTION_PAGE:
                await self._pause(started)

    def _take_action(self, message: Any) -> None:
        key = action_message_key(message)
        if key is None:
            log.warning("dropping an inbox message without session_id/message or timestamp")
            return
        if self._seen.add(key):
            self._spawn(self._run_action(key, message))
        elif key in self._unsent:
            log.info(
                "message %s of session %s offered again: sending the kept answer", key[1], key[0]
            )
            self._spawn(self._post_outbox(key, self._unsent.pop(key)))

    async def _run_action(self, key: MessageKey, message: JsonObject) -> None:
        session_id = key[0]
        async with self._session(session_id):
            await self._free_slot()
            self._busy += 1
            try:
                text = await self._answer_text(_action_turn(message), key)
            finally:
                self._busy -= 1
                self._slot_free.set()
            if text:
                await self._post_outbox(key, text)

    async def _answer_text(self, turn: Turn, key: MessageKey) -> str | None:
        try:
            result = await self._call(turn)
            if isinstance(result, AsyncIterator):
                result = "".join([c if isinstance(c, str) else str(c) async for c in result])
        except TurnError as exc:
            log.warning("handler failed on message %s of session %s: %s", key[1], key[0], exc.code)
            return None
        except Exception:
            log.exception("handler failed on message %s of session %s", key[1], key[0])
            return None
        match result:
            case str():
                return result
            case Handoff(content=content) | HandTo(content=content):
                log.warning(
                    "the action API cannot hand off (session %s); sent: its content", key[0]
                )
                return content
            case Answer(content=content, data=data):
                # text only here: rich data as the text every plain channel gets
                if isinstance(data, BaseModel):
                    data = data.model_dump(mode="json", exclude_none=True)
                return text_fallback(data if isinstance(data, dict) else None, content) or None
            case None | NoReply():
                return None
        log.error(
            "handler returned %s; expected str, Answer, Handoff, HandTo, NoReply or None",
            type(result).__name__,
        )
        return None

    async def _post_outbox(self, key: MessageKey, text: str) -> None:
        body = {"session_id": key[0], "response": text}
        try:
            r = await self._request(
                "POST", "/api/v1/", what="outbox", params={"action": "outbox"}, json=body
            )
        except BridgeUnreachable as exc:
            log.error("%s (session %s); kept for a new offer", exc, key[0])
            self._unsent[key] = text
            return
        if r.status_code == 200 and _success(r):
            self.answered += 1
        else:
            log.error("bridge refused the answer for session %s: %s", key[0], describe(r))

    @asynccontextmanager
    async def _session(self, session_id: str) -> AsyncIterator[None]:
        """One session's messages are answered in order (asyncio locks are FIFO)."""
        lock, users = self._sessions.get(session_id) or (asyncio.Lock(), 0)
        self._sessions[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._sessions[session_id]
            if users <= 1:
                del self._sessions[session_id]
            else:
                self._sessions[session_id] = (lock, users - 1)


def _success(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("success"))


def _inbox_messages(response: httpx.Response) -> list[Any]:
    """``data.messages`` of a successful inbox answer; [] (logged) otherwise, as the plugin."""
    if response.status_code == 200 and _success(response):
        data = response.json().get("data")
        messages = data.get("messages") if isinstance(data, dict) else None
        if isinstance(messages, list):
            return messages
    log.warning("inbox poll gave no messages: %s", describe(response))
    return []


def _action_turn(message: JsonObject) -> Turn:
    """An action API message as a ``Turn`` (its session is the conversation)."""
    session_id, text = message["session_id"], message["message"]
    uid = message.get("uid") or session_id
    return Turn(
        id=str(message.get("id")),
        seq=None,
        conversation_id=session_id,
        content=text,
        messages=[
            {
                "id": str(message.get("id")),
                "content": text,
                "created_at": message.get("timestamp"),
                "attachments": [],
            }
        ],
        sender={"id": str(uid), "name": None, "email": None, "phone": None},
        context={"channel": "webchat", "session_id": session_id},
        channel="webchat",
        raw=message,
    )


async def run_pull_agent(config: PullConfig, agent: Agent | MessageHandler) -> None:
    """Run a ``PullClient`` until SIGINT/SIGTERM: the first signal stops polling and lets
    running turns finish (``drain_seconds``); a second one cancels them. Used by
    ``chatbridge pull-agent``.

    Raises:
        PullRejected: the bridge refused this client.
    """
    client = PullClient(config, agent)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.info("stopping now: cancelling running turns")
            client.abort()
            return
        log.info("stopping (signal again to cancel running turns)")
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - Windows
            pass
    try:
        await client.run(stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
