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
from collections.abc import Mapping
from typing import Any

import aiohttp

from chatbridge.errors import PermanentDelivery, RetryableDelivery
from chatbridge.models import OutboundAction, SendResult
from chatbridge.pipeline.backoff import parse_retry_after

__all__ = ["CHANNEL", "ChatwootAdapter", "conversation_path"]

# ``CHANNEL`` and ``_is_int`` serve ``parse_webhook`` too. They live here because
# ``chatbridge.channels.chatwoot`` imports this module to re-export the adapter.

CHANNEL = "chatwoot"
"""The adapter's ``name``, and ``channel`` in every model ``parse_webhook`` builds."""


def _is_int(value: object) -> bool:
    # JSON true/false arrive as bool, a subclass of int: never an id.
    return isinstance(value, int) and not isinstance(value, bool)


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

    Typing uses ``toggle_typing_status``; handoff opens the conversation with
    ``toggle_status`` (with a bot token on a pending conversation Chatwoot runs its
    ``bot_handoff!``).
    """

    name = CHANNEL

    def __init__(
        self,
        base_url: str,
        api_token: str | None,
        *,
        client: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> None:
        """
        Args:
            base_url: Chatwoot's root URL, e.g. ``https://chat.example.com``.
            api_token: the bot's or user's access token (``api_access_token`` header).
            client: a shared session; it is not closed by ``aclose``. One is created
                (and owned) on first use, inside the running event loop, when omitted.
            timeout: total per-request timeout in seconds for the session created here.
        """
        self.base_url = base_url.rstrip("/")
        self._token = api_token
        self._timeout = timeout
        self._owns_client = client is None
        self._client: aiohttp.ClientSession | None = client
        self._closed = False
        headers = {"Accept": "application/json"}
        if api_token:
            headers["api_access_token"] = api_token
        self._get_headers = headers
        self._post_headers = {**headers, "Content-Type": "application/json"}

    def _session(self) -> aiohttp.ClientSession:
        """The session, created on first use so that it binds to the running loop."""
        if self._closed:
            raise RuntimeError("ChatwootAdapter is closed")
        client = self._client
        if client is None:
            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=5.0)
            client = self._client = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        return client

    async def _post(
        self, path: str, body: dict[str, Any], what: str
    ) -> tuple[int, Mapping[str, str], bytes, str | None]:
        """POST ``body`` as JSON; return status, headers, the body read in full, and charset.

        The body is read inside the request context so the connection goes back to the pool.
        """
        url = f"{self.base_url}{path}"
        # Compact UTF-8 bytes, no NaN (not valid JSON); encoded here, not by the session.
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        session = self._session()
        try:
            async with session.post(
                url, data=data.encode(), headers=self._post_headers
            ) as response:
                content = await response.read()
                result = (response.status, response.headers, content, response.charset)
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError
            raise RetryableDelivery(f"chatwoot {what}: timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableDelivery(
                f"chatwoot {what}: cannot reach {self.base_url} ({type(exc).__name__})"
            ) from exc
        self._raise_for_status(result, what)
        return result

    def _excerpt(self, content: bytes, charset: str | None) -> str:
        try:
            text = content.decode(charset or "utf-8", errors="replace")
        except LookupError:
            text = "<undecodable body>"
        text = " ".join(text.split())[:200]
        if self._token:
            text = text.replace(self._token, "***")
        return text

    def _raise_for_status(
        self, result: tuple[int, Mapping[str, str], bytes, str | None], what: str
    ) -> None:
        status, headers, content, charset = result
        if 200 <= status < 300:
            return
        excerpt = self._excerpt(content, charset)
        message = f"chatwoot {what}: HTTP {status}: {excerpt}"
        if status == 429 or status >= 500:
            wait = parse_retry_after(headers.get("Retry-After"))
            raise RetryableDelivery(message, retry_after=wait)
        if status == 422 and "too many messages" in excerpt.lower():
            # More than CONVERSATION_MESSAGE_PER_MINUTE_LIMIT messages in one conversation.
            raise RetryableDelivery(message, retry_after=60.0)
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
                "Too many messages" (``retry_after=60``).
            PermanentDelivery: any other 4xx, or a malformed ``channel_key``.
        """
        path = conversation_path(action.conversation.channel_key)
        if action.kind == "message":
            body: dict[str, Any] = {
                "content": self._message_content(action),
                "message_type": "outgoing",
                "private": False,
                "echo_id": action.idempotency_key,
                # stored by Chatwoot and sent back in the message_created webhook of our own
                # reply: the delivery's receipt (echo_id is neither stored nor echoed)
                "source_id": action.idempotency_key,
            }
            for key in ("content_type", "content_attributes"):
                if action.metadata.get(key) is not None:
                    body[key] = action.metadata[key]
            _, _, content, _ = await self._post(f"{path}/messages", body, "send message")
            try:
                data = json.loads(content)
            except ValueError:
                return SendResult()
            message_id = data.get("id") if isinstance(data, dict) else None
            return SendResult(external_id=None if message_id is None else str(message_id))
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
        """
        if action.kind != "message":
            return None
        try:
            path = conversation_path(action.conversation.channel_key)
        except PermanentDelivery:
            return None
        key = action.idempotency_key
        session = self._session()
        try:
            async with session.get(f"{self.base_url}{path}", headers=self._get_headers) as resp:
                content = await resp.read()
                status = resp.status
            conversation = json.loads(content) if status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            conversation = None
        if isinstance(conversation, dict):
            latest = conversation.get("messages")
            candidates = list(latest) if isinstance(latest, list) else []
            candidates.append(conversation.get("last_non_activity_message"))
            for message in candidates:
                if isinstance(message, dict) and message.get("source_id") == key:
                    return True
        url = f"{self.base_url}{path}/messages"
        before: int | None = None
        for _ in range(max_pages):
            page_url = url if before is None else f"{url}?before={before}"
            try:
                async with session.get(page_url, headers=self._get_headers) as response:
                    content = await response.read()
                    if response.status != 200:
                        return None
                data = json.loads(content)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
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
        """Close the HTTP session if this adapter created it; later calls raise ``RuntimeError``.

        A session passed in belongs to the caller and stays open.
        """
        if not self._owns_client:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()
