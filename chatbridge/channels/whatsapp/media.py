"""Inbound WhatsApp media: what each provider needs to fetch a file, and the fetch itself,
with the provider's credentials (which never leave the bridge).

``mark_media`` runs on every parsed message: a message with attachments gets
``metadata["media"]`` (``store.media.MEDIA_KEY``): one download job per file, written with
the message (``store.media.queue_media_hot``). ``download`` is what the job runs
(``pipeline.media_jobs``):

- WAHA: ``GET media.url`` with ``X-Api-Key``. The key is only ever sent to the configured
  WAHA base URL: the URL's path and query are fetched from there, whatever host the payload
  named (WAHA names its own public host, which may differ from how the bridge reaches it).
- Evolution API v2: ``POST /chat/getBase64FromMediaMessage/{instance}`` with ``apikey`` and
  ``{"message": {"key": {"id": <message id>}}}`` → ``{mediaType, fileName, size, mimetype,
  base64}``. A ``mediaUrl`` (Evolution's S3 storage) is fetched as it is, without a key.
- Meta Cloud API: ``GET {graph}/{version}/{media-id}`` with ``Authorization: Bearer`` →
  ``{url, mime_type, sha256, file_size, id}``, then ``GET url`` with the same Bearer token;
  ``file_size`` is checked before, ``sha256`` after.
- mock: the URL as it is.

Failures are ``RetryableDownload`` (unreachable, timeout, 408/429/5xx) or
``PermanentDownload`` (other 4xx, a bad answer, a file over the cap, a checksum mismatch).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import ChatbridgeError
from chatbridge.media.limits import base_type, kind_for, too_large
from chatbridge.models import InboundMessage
from chatbridge.store.media import MEDIA_KEY


class DownloadError(ChatbridgeError):
    """Fetching a file from the provider failed."""


class RetryableDownload(DownloadError):
    """Worth another attempt later."""


class PermanentDownload(DownloadError):
    """Will fail the same way again."""


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A fetched file and what the provider said about it."""

    data: bytes
    mime: str | None
    name: str | None


def mark_media(parsed: Any, hold: float) -> Any:
    """``parsed`` with its download jobs listed in ``metadata["media"]`` if it is a
    customer's message with attachments (anything else is returned as it is)."""
    if not isinstance(parsed, InboundMessage) or not parsed.attachments:
        return parsed
    provider = str(parsed.metadata.get("provider") or "")
    instance = str(parsed.metadata.get("instance") or "")
    items = []
    for attachment in parsed.attachments:
        source: dict[str, Any] | None = None
        context = parsed.context
        if provider == "waha":
            source = {"url": attachment.url, "session": instance}
        elif provider == "evolution":
            if context.get("media_fetch") == "getBase64FromMediaMessage":
                source = {"instance": instance, "key_id": parsed.external_message_id}
            else:
                source = {"url": attachment.url}
        elif provider == "meta_cloud":
            media_id = context.get("media_id")
            source = {"media_id": media_id} if media_id else None
        elif provider == "mock":
            source = {"url": attachment.url}
        if source is None:
            continue
        items.append(
            {
                "kind": kind_for(attachment.mime),
                "mime": attachment.mime,
                "name": attachment.name,
                "provider": provider,
                "source": source,
            }
        )
    if items:
        parsed.metadata[MEDIA_KEY] = {"hold": hold, "items": items}
    return parsed


def _on_base(base_url: str, url: str) -> str:
    """``url``'s path and query on ``base_url`` (the only host a credential is sent to)."""
    parts = urlsplit(url)
    if not parts.path.startswith("/"):
        raise PermanentDownload("the provider's media URL has no path")
    return base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def _status_error(what: str, status: int, body: bytes) -> DownloadError:
    text = " ".join(body[:300].decode("utf-8", "replace").split())
    message = f"{what}: HTTP {status}: {text}" if text else f"{what}: HTTP {status}"
    if status in (408, 429) or status >= 500:
        return RetryableDownload(message)
    return PermanentDownload(message)


async def _get(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    what: str,
    headers: dict[str, str],
    max_bytes: int,
    body: Any = None,
) -> tuple[bytes, str | None]:
    """One call; its body (at most ``max_bytes``) and Content-Type."""
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers = {**headers, "Content-Type": "application/json"}
    try:
        async with http.request(method, url, data=data, headers=headers) as resp:
            if resp.status >= 300:
                raise _status_error(what, resp.status, await resp.content.read(300))
            length = resp.content_length
            if length is not None and length > max_bytes:
                raise too_large(length, max_bytes)
            out = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                out += chunk
                if len(out) > max_bytes:
                    raise too_large(None, max_bytes)
            return bytes(out), resp.headers.get("Content-Type")
    except (aiohttp.ClientError, TimeoutError) as exc:
        host = urlsplit(url).netloc
        raise RetryableDownload(f"{what}: cannot reach {host} ({type(exc).__name__})") from exc


async def download(
    settings: CommsSettings,
    http: aiohttp.ClientSession,
    provider: str,
    source: dict[str, Any],
    *,
    max_bytes: int,
) -> Downloaded:
    """Fetch one file with ``provider``'s credentials.

    Raises:
        RetryableDownload, PermanentDownload; MediaRefused (over ``max_bytes``).
    """
    if provider == "waha":
        url = _on_base(settings.waha_base_url, str(source.get("url") or ""))
        headers = {"X-Api-Key": settings.waha_api_key} if settings.waha_api_key else {}
        data, ctype = await _get(
            http, "GET", url, what="WAHA media", headers=headers, max_bytes=max_bytes
        )
        return Downloaded(data, ctype, None)
    if provider == "evolution" and source.get("key_id"):
        return await _evolution(settings, http, source, max_bytes)
    if provider == "meta_cloud":
        return await _meta(settings, http, str(source.get("media_id") or ""), max_bytes)
    url = str(source.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise PermanentDownload("no URL to download the file from")
    data, ctype = await _get(http, "GET", url, what="media", headers={}, max_bytes=max_bytes)
    return Downloaded(data, ctype, None)


async def _evolution(
    settings: CommsSettings, http: aiohttp.ClientSession, source: dict[str, Any], max_bytes: int
) -> Downloaded:
    instance = str(source.get("instance") or settings.evolution_instance)
    url = f"{settings.evolution_base_url.rstrip('/')}/chat/getBase64FromMediaMessage/{instance}"
    headers = {"apikey": settings.evolution_api_key} if settings.evolution_api_key else {}
    # base64 is 4/3 of the file, plus the JSON around it
    raw, _ = await _get(
        http,
        "POST",
        url,
        what="Evolution getBase64FromMediaMessage",
        headers={**headers, "Accept": "application/json"},
        max_bytes=max_bytes * 4 // 3 + 64 * 1024,
        body={"message": {"key": {"id": source["key_id"]}}},
    )
    try:
        answer = json.loads(raw)
        data = base64.b64decode(answer["base64"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise PermanentDownload("Evolution's answer has no valid base64 file") from exc
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    mime = answer.get("mimetype") if isinstance(answer.get("mimetype"), str) else None
    name = answer.get("fileName") if isinstance(answer.get("fileName"), str) else None
    return Downloaded(data, mime, name)


async def _meta(
    settings: CommsSettings, http: aiohttp.ClientSession, media_id: str, max_bytes: int
) -> Downloaded:
    if not media_id or "/" in media_id:
        raise PermanentDownload("no Meta media id")
    bearer = {"Authorization": f"Bearer {settings.meta_access_token or ''}"}
    base = settings.meta_graph_url.rstrip("/")
    raw, _ = await _get(
        http,
        "GET",
        f"{base}/{settings.meta_api_version}/{media_id}",
        what="Meta media info",
        headers=bearer,
        max_bytes=64 * 1024,
    )
    try:
        info = json.loads(raw)
        url = info["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise TypeError(url)
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentDownload("Meta's media info has no url") from exc
    size = info.get("file_size")
    if isinstance(size, int | str) and str(size).isdigit() and int(size) > max_bytes:
        raise too_large(int(size), max_bytes)
    data, ctype = await _get(
        http, "GET", url, what="Meta media", headers=bearer, max_bytes=max_bytes
    )
    sha = info.get("sha256")
    digest = hashlib.sha256(data)
    # Meta's sha256 is hex in the media info; base64 is accepted too (as webhooks write it)
    if (
        isinstance(sha, str)
        and sha
        and sha.lower() != digest.hexdigest()
        and sha != (base64.b64encode(digest.digest()).decode())
    ):
        raise RetryableDownload("Meta media: the file's sha256 is not the one Meta announced")
    mime = info.get("mime_type") if isinstance(info.get("mime_type"), str) else None
    return Downloaded(data, mime or (base_type(ctype) or None), None)
