"""The Chatwoot REST API side of the channel: ``ChatwootAdapter`` and its error mapping.

``ChatwootAdapter`` turns an ``OutboundAction`` into a call to
``/api/v1/accounts/{account}/conversations/{display_id}/…`` (``conversation_path``) and maps
HTTP failures onto ``RetryableDelivery`` / ``PermanentDelivery``. The webhook side is
``parse_webhook`` in ``chatbridge.channels.chatwoot``, which re-exports the public names here.

A conversation's ``channel_key`` is ``"<account id>:<display id>"``; the display id is what
Chatwoot calls ``conversation.id`` in webhooks and what its API paths use.
"""

from __future__ import annotations

import json
from typing import Any

from chatbridge import __version__
from chatbridge.backoff import parse_retry_after
from chatbridge.channels.http1 import ConnectTimeout, Http1Pool, Response
from chatbridge.errors import PermanentDelivery, RetryableDelivery
from chatbridge.models import OutboundAction, SendResult

__all__ = ["CHANNEL", "ChatwootAdapter", "conversation_path"]

# ``CHANNEL`` and ``_is_int`` serve ``parse_webhook`` too. They live here because
# ``chatbridge.channels.chatwoot`` imports this module to re-export the adapter.

CHANNEL = "chatwoot"
"""The adapter's ``name``, and ``channel`` in every model ``parse_webhook`` builds."""

USER_AGENT = f"chatbridge/{__version__}"

# Compact, UTF-8 kept as is, NaN refused (not valid JSON). Built once: ``json.dumps`` with
# options builds a new encoder on every call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _is_int(value: object) -> bool:
    # JSON true/false arrive as bool, a subclass of int: never an id.
    return isinstance(value, int) and not isinstance(value, bool)


def _message_id(body: bytes) -> str | None:
    """The ``id`` of the message object Chatwoot answers a create with, as text; None if
    the body is not a JSON object or has no ``id``.

    The answer is a whole message (~0.5 kB); when it starts with its ``id``, as Chatwoot's
    does, the id is read off the front instead of decoding all of it (5 µs less per reply).
    For any JSON answer (without a repeated ``id`` key) both give the same.
    """
    if body.startswith(b'{"id":'):
        end = body.find(b",", 6)
        digits = body[6:end]
        if end > 6 and digits.isdigit() and (digits == b"0" or not digits.startswith(b"0")):
            return digits.decode()
    try:
        data = json.loads(body)
    except ValueError:
        return None
    message_id = data.get("id") if isinstance(data, dict) else None
    return None if message_id is None else str(message_id)


def _may_have_landed(exc: BaseException) -> bool:
    """Whether a ``Http1Pool`` request that failed with ``exc`` may have reached Chatwoot.

    The pool says ``ConnectTimeout`` when the time ran out before the request was written
    (waiting for a free connection, connecting); a plain ``TimeoutError`` came while waiting
    for the response: Chatwoot may have the request (and create the message after we gave
    up). A connection lost before the full
    response (``ConnectionError``, ``BadResponse``) may have carried the request too; a
    refused connection, a failed name lookup or TLS handshake (other ``OSError``) did not.
    """
    if isinstance(exc, TimeoutError):
        return not isinstance(exc, ConnectTimeout)
    return isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionRefusedError)


def conversation_path(channel_key: str) -> str:
    """``"3:42"`` → ``"/api/v1/accounts/3/conversations/42"``.

    Raises:
        PermanentDelivery: the key is not ``"<account id>:<display id>"``.
    """
    account, sep, display = channel_key.partition(":")
    if not sep or not account.isdecimal() or not display.isdecimal():
        raise PermanentDelivery(
            f"chatwoot channel_key must be '<account id>:<display id>', got {channel_key!r}"
        )
    return f"/api/v1/accounts/{int(account)}/conversations/{int(display)}"


class ChatwootAdapter:
    """Sends neutral ``OutboundAction`` values through Chatwoot's REST API.

    Messages go to ``POST …/conversations/{display_id}/messages`` as outgoing, public
    messages with ``echo_id`` set to the action's idempotency key. Attachments are sent as
    links appended to the text: Chatwoot only accepts files as a multipart upload, which is
    not supported here. ``metadata["content_type"]`` and ``metadata["content_attributes"]``
    of a message action are passed through (e.g. ``input_select`` options).

    A ``note`` action is the same call with ``private: true``: a private note the team sees
    in the conversation and the customer never does (allowed to a bot token: it is a message
    ``create``). It carries ``source_id`` too, so its echo is its receipt.

    Typing uses ``toggle_typing_status``; handoff opens the conversation with
    ``toggle_status`` (with a bot token on a pending conversation Chatwoot runs its
    ``bot_handoff!``).

    The calls go through ``Http1Pool`` (``chatbridge.channels.http1``): keep-alive
    connections, at most 100, idle ones dropped after 5 s, one total timeout per call.
    """

    name = CHANNEL

    def __init__(self, base_url: str, api_token: str | None, *, timeout: float = 10.0) -> None:
        """
        Args:
            base_url: Chatwoot's root URL, e.g. ``https://chat.example.com``.
            api_token: the bot's or user's access token (``api_access_token`` header).
            timeout: total seconds per API call: waiting for a connection, connecting,
                sending and reading the response.
        """
        self.base_url = base_url.rstrip("/")
        self._token = api_token
        self._timeout = timeout
        self._pool: Http1Pool | None = None
        self._closed = False
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if api_token:
            headers["api_access_token"] = api_token
        self._headers = headers

    def _http(self) -> Http1Pool:
        """The connection pool, created on first use so that it binds to the running loop.

        Raises:
            RuntimeError: the adapter is closed.
            ValueError: ``base_url`` is not an http(s) URL, or the token is not a valid
                header value.
        """
        if self._closed:
            raise RuntimeError("ChatwootAdapter is closed")
        pool = self._pool
        if pool is None:
            pool = self._pool = Http1Pool(
                self.base_url, headers=self._headers, timeout=self._timeout
            )
        return pool

    async def _post(self, path: str, body: dict[str, Any], what: str) -> Response:
        """POST ``body`` as JSON; the response, read in full.

        Raises:
            RetryableDelivery: Chatwoot could not be reached, or answered 429, 5xx or 422
                "Too many messages"; ``outcome_unknown`` when the request was written and
                no answer came (``_may_have_landed``).
            PermanentDelivery: any other non-2xx.
        """
        try:
            response = await self._http().request("POST", path, _encode(body).encode())
        except TimeoutError as exc:
            raise RetryableDelivery(
                f"chatwoot {what}: timed out", outcome_unknown=_may_have_landed(exc)
            ) from exc
        except (OSError, ValueError) as exc:  # BadResponse is an OSError
            raise RetryableDelivery(
                f"chatwoot {what}: cannot reach {self.base_url} ({type(exc).__name__})",
                outcome_unknown=_may_have_landed(exc),
            ) from exc
        if not 200 <= response.status < 300:
            self._raise_for_status(response, what)
        return response

    async def probe(self, account_id: int) -> int | None:
        """The HTTP status of a cheap authenticated call (``chatbridge check``): ``GET`` of
        conversation 0 of ``account_id``, allowed to bot tokens. 404 means the token was
        accepted (there is no such conversation), 401 that it was refused; None when
        Chatwoot cannot be reached."""
        response = await self._get(f"/api/v1/accounts/{account_id}/conversations/0")
        return None if response is None else response.status

    async def _get(self, path: str) -> Response | None:
        """GET ``path``; None when Chatwoot cannot be reached (the callers only ask)."""
        try:
            return await self._http().request("GET", path)
        except (TimeoutError, OSError, ValueError):
            return None

    def _excerpt(self, content: bytes, charset: str | None) -> str:
        try:
            text = content.decode(charset or "utf-8", errors="replace")
        except LookupError:
            text = "<undecodable body>"
        text = " ".join(text.split())[:200]
        if self._token:
            text = text.replace(self._token, "***")
        return text

    def _raise_for_status(self, response: Response, what: str) -> None:
        status = response.status
        excerpt = self._excerpt(response.body, response.charset)
        message = f"chatwoot {what}: HTTP {status}: {excerpt}"
        if status == 429 or status >= 500:
            wait = parse_retry_after(response.header("Retry-After"))
            raise RetryableDelivery(message, retry_after=wait)
        if status == 422 and "too many messages" in excerpt.lower():
            # More than CONVERSATION_MESSAGE_PER_MINUTE_LIMIT messages in one conversation.
            raise RetryableDelivery(message, retry_after=60.0)
        if 300 <= status < 400:
            # Redirects are not followed: a POST turned into a GET would only be refused.
            message += f" (redirected to {response.header('Location')}: fix CHATWOOT_BASE_URL)"
        raise PermanentDelivery(message)

    @staticmethod
    def _message_content(action: OutboundAction) -> str:
        content = action.text or ""
        links = [a.url for a in action.attachments if a.url]
        if links:
            content = "\n\n".join(part for part in (content, "\n".join(links)) if part)
        return content

    async def send(self, action: OutboundAction) -> SendResult:
        """Perform ``action`` at Chatwoot.

        Raises:
            RetryableDelivery: connect error, timeout, 429 (``retry_after`` from
                ``Retry-After`` when present; Chatwoot sends none), 5xx, or 422
                "Too many messages" (``retry_after=60``). A timeout or a lost connection
                after the request was written is ``outcome_unknown``: the message may be
                there, and the next attempt looks for its receipt first.
            PermanentDelivery: any other 4xx, or a malformed ``channel_key``.
        """
        path = conversation_path(action.conversation.channel_key)
        if action.kind == "message" or action.kind == "note":
            note = action.kind == "note"
            body: dict[str, Any] = {
                "content": self._message_content(action),
                "message_type": "outgoing",
                # a private note: the team sees it in the conversation, the customer never
                "private": note,
                "echo_id": action.idempotency_key,
                # stored by Chatwoot and sent back in the message_created webhook of our own
                # reply (or note): the delivery's receipt (echo_id is neither stored nor echoed)
                "source_id": action.idempotency_key,
            }
            if not note:
                for key in ("content_type", "content_attributes"):
                    if action.metadata.get(key) is not None:
                        body[key] = action.metadata[key]
            what = "send private note" if note else "send message"
            response = await self._post(f"{path}/messages", body, what)
            return SendResult(external_id=_message_id(response.body))
        if action.kind in ("typing_on", "typing_off"):
            state = "on" if action.kind == "typing_on" else "off"
            await self._post(
                f"{path}/toggle_typing_status", {"typing_status": state}, f"typing {state}"
            )
            return SendResult()
        if action.kind == "handoff":
            await self._post(f"{path}/toggle_status", {"status": "open"}, "handoff")
            return SendResult()
        raise PermanentDelivery(f"chatwoot cannot perform action kind {action.kind!r}")

    async def already_sent(self, action: OutboundAction, *, max_pages: int = 3) -> bool | None:
        """Whether Chatwoot already has the message whose ``source_id`` is the action's key.

        Used only after a send was cut off and no echo came. First the conversation itself
        (``GET …/conversations/{id}``, allowed to bot tokens): it carries the conversation's
        latest message (``messages``) and latest non-activity message, so our message is
        found if nothing was written after it. Then the message list (up to ``max_pages``
        pages of 20, newest first), which only a user token may read. Returns ``None`` for
        non-message actions and whenever Chatwoot cannot tell (a bot token's 401 on the list,
        the conversation gone, the call failed, every page searched full without a match) —
        and when the message is not listed: the cut-off request may still land. Never False.
        A private note (``note``) is looked for the same way: it carries the key too.
        """
        if action.kind != "message" and action.kind != "note":
            return None
        try:
            path = conversation_path(action.conversation.channel_key)
        except PermanentDelivery:
            return None
        key = action.idempotency_key
        response = await self._get(path)
        try:
            conversation = (
                json.loads(response.body)
                if response is not None and response.status == 200
                else None
            )
        except ValueError:
            conversation = None
        if isinstance(conversation, dict):
            latest = conversation.get("messages")
            candidates = list(latest) if isinstance(latest, list) else []
            candidates.append(conversation.get("last_non_activity_message"))
            for message in candidates:
                if isinstance(message, dict) and message.get("source_id") == key:
                    return True
        url = f"{path}/messages"
        before: int | None = None
        for _ in range(max_pages):
            response = await self._get(url if before is None else f"{url}?before={before}")
            if response is None or response.status != 200:
                return None
            try:
                data = json.loads(response.body)
            except ValueError:
                return None
            messages = data.get("payload") if isinstance(data, dict) else None
            if not isinstance(messages, list):
                return None
            ids: list[int] = []
            for message in messages:
                if not isinstance(message, dict):
                    continue
                if message.get("source_id") == key:
                    return True
                if _is_int(message.get("id")):
                    ids.append(message["id"])
            if len(messages) < 20 or not ids:
                # Not listed — but the cut-off request may still be in Chatwoot's hands and
                # land a moment later: not a sure "no". The echo will tell.
                return None
            before = min(ids)
        # Every page was full and none matched: the message may be older still.
        return None

    async def aclose(self) -> None:
        """Close the connections; later calls raise ``RuntimeError``. Idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()
