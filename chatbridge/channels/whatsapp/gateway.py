"""One HTTP client for the WhatsApp gateways, and how their failures map onto delivery errors.

Connect errors, timeouts, 408, 429 and 5xx are ``RetryableDelivery`` (with ``Retry-After``
when the gateway sent one); any other non-2xx is ``PermanentDelivery`` with the gateway's
own words (secrets masked). A timeout or a lost connection once the request may have been
written is ``outcome_unknown``: the gateway may have sent the message all the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from chatbridge.backoff import parse_retry_after
from chatbridge.errors import PermanentDelivery, RetryableDelivery


class GatewayError(Exception):
    """A gateway call that did not succeed, before it is mapped to a delivery error.

    ``status`` is the HTTP status, or ``None`` when the gateway could not be reached;
    ``outcome_unknown`` when no answer came but the request may have reached it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in (408, 429) or self.status >= 500

    def to_delivery(self) -> RetryableDelivery | PermanentDelivery:
        if self.retryable:
            return RetryableDelivery(
                str(self), retry_after=self.retry_after, outcome_unknown=self.outcome_unknown
            )
        return PermanentDelivery(str(self))


# aiohttp's failures before the request is written: connecting (refused, name lookup, TLS,
# the connect timeout, the wait for a pooled connection) and a URL it cannot use.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.InvalidURL,
    aiohttp.NonHttpUrlClientError,
)


def _may_have_landed(exc: BaseException) -> bool:
    """Whether a call that failed with ``exc`` may have reached the gateway: any failure but
    the ones before the request was written (a read timeout, the server disconnecting)."""
    return not isinstance(exc, _NOT_SENT)


class GatewayHttp:
    """A lazily created ``aiohttp`` session shared by every provider of one channel."""

    def __init__(self, *, timeout: float = 15.0) -> None:
        self._timeout = timeout
        self._client: aiohttp.ClientSession | None = None
        self._closed = False

    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the WhatsApp channel is closed")
        if self._client is None:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=5.0),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._client

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        body: Any = None,
        secrets: tuple[str | None, ...] = (),
        form: aiohttp.FormData | None = None,
    ) -> Any:
        """Call the gateway; return its JSON answer (``None`` for an empty or non-JSON body).
        ``form`` sends a multipart body instead of JSON (Meta's media upload).

        Raises:
            GatewayError: unreachable, timed out, or a non-2xx answer.
        """
        data: bytes | aiohttp.FormData | None = form
        all_headers = {"Accept": "application/json", **headers}
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            async with self._session().request(
                method, url, data=data, headers=all_headers
            ) as response:
                content = await response.read()
                status = response.status
                wait = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError as exc:
            raise GatewayError(
                f"{what}: timed out", status=None, outcome_unknown=_may_have_landed(exc)
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            host = url.split("/")[2] if url.count("/") >= 2 else url
            raise GatewayError(
                f"{what}: cannot reach {host} ({type(exc).__name__})",
                status=None,
                outcome_unknown=_may_have_landed(exc),
            ) from exc
        if not 200 <= status < 300:
            text = " ".join(content.decode("utf-8", "replace").split())[:300]
            for secret in secrets:
                if secret:
                    text = text.replace(secret, "***")
            raise GatewayError(f"{what}: HTTP {status}: {text}", status=status, retry_after=wait)
        if not content:
            return None
        try:
            return json.loads(content)
        except ValueError:
            return None

    async def send(self, method: str, url: str, **kwargs: Any) -> Any:
        """``request`` with failures as ``RetryableDelivery`` / ``PermanentDelivery``."""
        try:
            return await self.request(method, url, **kwargs)
        except GatewayError as exc:
            raise exc.to_delivery() from exc

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()
