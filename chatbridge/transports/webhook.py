"""The http-webhook transport: the bridge POSTs each turn to the agent's URL.

The body is the ``user_message`` frame (protocol v1) plus two fields for answering later:
``lease_id`` and ``reply_url`` (``POST /api/agent/turns/{id}/reply?lease=…``, authenticated
with the agent's token, exactly as an http-pull agent replies). The request is signed:
``X-Chatbridge-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the agent's
secret>``; ``X-Chatbridge-Timestamp`` and ``X-Chatbridge-Turn`` come along unsigned.

How the agent may answer:

- **in the response**: a 2xx whose JSON body is one agent → bridge frame, or a list of them
  (e.g. ``agent_streaming`` chunks then ``agent_complete``). The first turn-ending frame ends
  the turn.
- **later**: a 2xx with an empty body (or ``{}``, or only non-ending frames such as
  ``typing``) means "accepted"; the turn then waits for frames posted to ``reply_url`` until
  its deadline.

A connection failure, a timeout, 408, 429 or a 5xx is retried with full-jitter backoff
(honouring ``Retry-After``) until the turn's deadline, with the same ``message_id``: the agent
must treat a repeat as the same turn. Any other 4xx, or a 2xx body that is not a valid frame,
ends the turn as an error (the route's fallback or handoff applies).

``cancel_turn`` withdraws the turn (``PullBroker.withdraw``): the waiting ``run_turn`` raises
``TurnCancelled`` at once, a POST still in flight is cancelled, a reply that comes later to
``reply_url`` is refused (404 ``unknown_turn``), and the agent's URL gets a ``cancel`` frame
(protocol 1.1, signed like a turn; one try, in the background) so an agent that accepted the
turn to answer later can stop.

The turn itself is an offer in the ``PullBroker`` leased to this transport from the start, so
late replies, streamed chunks, typing and lease checks share the http-pull code path, and the
database lease stays the durable layer underneath.

``WebhookTransport`` is the agent's ``AgentTransport``; ``WebhookCaller`` does the calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from chatbridge import tracing
from chatbridge.backoff import parse_retry_after
from chatbridge.errors import AgentUnavailable
from chatbridge.protocol import ProtocolError, utc_now_iso
from chatbridge.signing import SIGNATURE_HEADER, sign
from chatbridge.transports.base import (
    AgentOutcome,
    AgentStatus,
    AgentTransport,
    Capabilities,
    TurnRequest,
)
from chatbridge.transports.http import RETRYABLE, describe, retry_pause
from chatbridge.transports.log import log_event
from chatbridge.transports.pull import LeaseExpired, PullBroker, UnknownTurn
from chatbridge.transports.registry import spec

if TYPE_CHECKING:
    from chatbridge.transports.context import TransportContext

MAX_REPLY_BYTES = 1024 * 1024


class WebhookCaller:
    """Runs turns of http-webhook agents (see the module docstring)."""

    def __init__(
        self,
        broker: PullBroker,
        client: httpx.AsyncClient,
        *,
        public_url: str,
        retry_base: float = 0.5,
        retry_cap: float = 10.0,
    ) -> None:
        self._broker = broker
        self.client = client
        self._public_url = public_url.rstrip("/")
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self.last_ok: dict[str, float] = {}
        self.last_error: dict[str, str] = {}

    async def run_turn(self, req: TurnRequest, url: str, secret: str | None) -> AgentOutcome:
        """POST the turn (retrying) and return how the agent ended it."""
        waiting = asyncio.ensure_future(self._broker.run_turn(req))
        await asyncio.sleep(0)  # the offer now exists (or ``waiting`` already failed)
        offer = self._broker.find(req.agent_id, req.turn_key)
        if offer is None or offer.result.done():
            return await waiting
        if offer.lease_id is None:  # the first run of this turn here; a repeat joins it
            self._broker.lease(offer, time.time(), max(1.0, req.deadline - time.time()))
        lease_id = offer.lease_id or ""
        poster = asyncio.ensure_future(self._post(req, url, secret, lease_id))
        try:
            return await waiting
        finally:
            poster.cancel()
            await asyncio.gather(poster, return_exceptions=True)

    async def send_event(self, url: str, secret: str | None, frame: dict[str, Any]) -> bool:
        """POST a frame that expects no answer (``conversation_event``); one try."""
        try:
            r = await self._request(url, secret, frame, timeout=10.0)
        except httpx.HTTPError:
            return False
        return r.is_success

    # -- internals -----------------------------------------------------------------------------

    def _body(self, req: TurnRequest, lease_id: str) -> dict[str, Any]:
        reply = f"{self._public_url}/api/agent/turns/{req.turn_key}/reply?lease={lease_id}"
        return {**req.frame, "lease_id": lease_id, "reply_url": reply}

    async def _request(
        self, url: str, secret: str | None, frame: dict[str, Any], *, timeout: float
    ) -> httpx.Response:
        body = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Chatbridge-Timestamp": utc_now_iso(),
            "X-Chatbridge-Turn": str(frame.get("message_id") or ""),
        }
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        if tracing.ON and (traceparent := frame.get(tracing.KEY)):
            headers[tracing.KEY] = traceparent  # W3C: the agent's spans join the turn's trace
        return await self.client.post(url, content=body, headers=headers, timeout=timeout)

    async def _post(self, req: TurnRequest, url: str, secret: str | None, lease_id: str) -> None:
        """Deliver the turn once; settle the offer from the answer or with the failure."""
        frame = self._body(req, lease_id)
        attempt = 0
        problem = "not sent"
        while True:
            attempt += 1
            remaining = req.deadline - time.time()
            if remaining <= 0:
                break
            retry_after: float | None = None
            try:
                r = await self._request(url, secret, frame, timeout=min(remaining, 60.0))
            except httpx.HTTPError as exc:
                problem = describe(exc)
            else:
                if r.is_success:
                    self.last_ok[req.agent_id] = time.time()
                    self.last_error.pop(req.agent_id, None)
                    await self._apply_body(req, lease_id, r)
                    return
                problem = f"HTTP {r.status_code}"
                if r.status_code not in RETRYABLE:
                    self._fail_turn(req, problem, r)
                    return
                retry_after = parse_retry_after(r.headers.get("retry-after"))
            self.last_error[req.agent_id] = problem
            delay = retry_pause(
                req,
                attempt,
                problem,
                retry_after,
                base=self._retry_base,
                cap=self._retry_cap,
                what="webhook agent did not take the turn",
            )
            if delay is None:
                break
            await asyncio.sleep(delay)
        self.last_error[req.agent_id] = problem
        offer = self._broker.find(req.agent_id, req.turn_key)
        if offer is not None and not offer.result.done():
            offer.result.set_exception(
                AgentUnavailable(f"webhook agent not reached before the deadline ({problem})")
            )

    async def _apply_body(self, req: TurnRequest, lease_id: str, r: httpx.Response) -> None:
        raw = r.content
        if not raw.strip():
            return  # accepted: the answer comes later to reply_url
        if len(raw) > MAX_REPLY_BYTES:
            self._fail_turn(req, f"reply body over {MAX_REPLY_BYTES} bytes", r)
            return
        try:
            data = json.loads(raw)
        except ValueError:
            self._fail_turn(req, "reply body is not JSON", r)
            return
        frames = data if isinstance(data, list) else [data]
        for item in frames:
            if not isinstance(item, dict):
                self._fail_turn(req, "reply body is not an object or a list of objects", r)
                return
            if not item:
                continue  # {} = accepted
            try:
                await self._broker.reply(req.agent_id, req.turn_key, lease_id, item)
            except ProtocolError as exc:
                self._fail_turn(req, f"reply body is not an agent frame: {exc}", r)
                return
            except (UnknownTurn, LeaseExpired):
                return  # already ended (a late reply came first)

    def _fail_turn(self, req: TurnRequest, problem: str, r: httpx.Response) -> None:
        log_event(
            logging.WARNING,
            "webhook agent refused the turn",
            req.agent_id,
            req.turn_key,
            problem=problem,
        )
        self.last_error[req.agent_id] = problem
        offer = self._broker.find(req.agent_id, req.turn_key)
        if offer is None:
            return
        self._broker.settle(
            offer,
            AgentOutcome(
                "error",
                error_code="webhook_refused" if not r.is_success else "invalid_webhook_reply",
                error_details={"status": r.status_code, "problem": problem},
            ),
        )


class WebhookTransport(AgentTransport):
    """An agent the bridge POSTs each turn to (see the module docstring); ``options`` may
    hold its ``secret``."""

    spec = spec("http-webhook")
    capabilities = Capabilities()

    def __init__(
        self,
        agent_id: str,
        url: str | None,
        options: dict[str, Any],
        context: TransportContext,
    ) -> None:
        super().__init__(agent_id, url, options)
        self.context = context
        self.caller = WebhookCaller(
            context.pull,
            context.http,
            public_url=context.public_url,
            retry_base=context.settings.retry_base_seconds,
        )
        self._background: set[asyncio.Future[bool]] = set()  # ``cancel`` frames on their way

    def start(self) -> None:
        self.caller.client = self.context.http  # a new client after a restart of the hub

    async def run_turn(self, req: TurnRequest) -> AgentOutcome:
        if self.closed:
            raise AgentUnavailable(f"agent {self.agent_id!r} transport is closed")
        return await self.caller.run_turn(req, self.url or "", self.options.get("secret"))

    def cancel_turn(self, turn_key: str, conversation_id: str, reason: str = "superseded") -> bool:
        if not self.context.pull.withdraw(self.agent_id, turn_key, reason):
            return False
        frame = {
            "type": "cancel",
            "message_id": turn_key,
            "conversation_id": conversation_id,
            "reason": reason,
            "timestamp": utc_now_iso(),
        }
        task = asyncio.ensure_future(self.send_event(frame))
        self._background.add(task)
        task.add_done_callback(self._cancel_sent)
        return True

    def _cancel_sent(self, task: asyncio.Future[bool]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log_event(logging.INFO, "cancel frame not sent", self.agent_id, error=task.exception())

    async def send_event(self, frame: dict[str, Any]) -> bool:
        if self.closed:
            return False
        return await self.caller.send_event(self.url or "", self.options.get("secret"), frame)

    @property
    def connected(self) -> bool:
        """Nothing stays open: connected unless closed or the last call failed."""
        return not self.closed and self.agent_id not in self.caller.last_error

    def in_flight(self) -> int:
        return self.context.pull.in_flight(self.agent_id)

    def status(self) -> AgentStatus:
        self.stats.last_seen = self.caller.last_ok.get(self.agent_id)
        self.stats.answered = self.context.pull.answered(self.agent_id)
        return super().status()

    async def aclose(self, reason: str = "bridge shutting down") -> None:
        self.closed = True
        self.context.pull.fail(
            self.agent_id, AgentUnavailable(f"agent {self.agent_id!r}: {reason}")
        )
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=1.0)
