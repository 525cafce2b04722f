"""Short-lived signed URLs of stored media: ``{public base}/media/{id}?exp=<unix>&sig=<hmac>``.

Whoever holds such a URL may fetch that one file until ``exp``, without any credential: the
agent gets them in its ``user_message`` attachments, the console in its message views. No
provider credential is in them, and no provider URL is ever handed out: the bytes come from
the bridge's own media folder.

``sig`` is the hex HMAC-SHA256 of ``"{id}.{exp}"`` under the signing key:
``CHATBRIDGE_MEDIA_SIGNING_KEY`` if set, else a random key kept in the media folder (shared
by the replicas that share the folder). Checking is constant-time; an expired or altered URL
is refused (403) by ``api.media``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from chatbridge.config import Settings
from chatbridge.media.files import MediaFolder


def public_base(settings: Settings) -> str:
    """Where the bridge is reached from outside: ``public_url``, else host and port."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


@dataclass(frozen=True, slots=True)
class MediaSigner:
    """Signs and checks media URLs with one key."""

    key: bytes
    base: str
    ttl: int

    @classmethod
    def for_settings(cls, settings: Settings) -> MediaSigner:
        if settings.media_signing_key:
            key = settings.media_signing_key.encode()
        else:
            key = MediaFolder.for_settings(settings).signing_key()
        return cls(key, public_base(settings), settings.media_url_ttl_seconds)

    def signature(self, media_id: str, exp: int) -> str:
        return hmac.new(self.key, f"{media_id}.{exp}".encode(), hashlib.sha256).hexdigest()

    def path(self, media_id: str, *, now: float | None = None, ttl: int | None = None) -> str:
        """``/media/{id}?exp=…&sig=…``, valid for ``ttl`` (default the setting) seconds."""
        exp = int((time.time() if now is None else now) + (self.ttl if ttl is None else ttl))
        return f"/media/{media_id}?" + urlencode({"exp": exp, "sig": self.signature(media_id, exp)})

    def url(self, media_id: str, *, now: float | None = None) -> str:
        """The absolute signed URL (what an agent is given)."""
        return self.base + self.path(media_id, now=now)

    def refusal(
        self, media_id: str, exp: str | None, sig: str | None, *, now: float | None = None
    ) -> str | None:
        """Why a URL is refused (``missing``, ``expired``, ``bad signature``), or None."""
        if not exp or not sig:
            return "the URL has no exp or sig"
        try:
            when = int(exp)
        except ValueError:
            return "exp is not a number"
        # bytes, not str: compare_digest refuses non-ASCII text (a 500 instead of a 403)
        expected = self.signature(media_id, when).encode()
        if not hmac.compare_digest(expected, sig.lower().encode("utf-8", "replace")):
            return "bad signature"
        if when < (time.time() if now is None else now):
            return "the URL has expired"
        return None


SCHEME = "media:"


def stored_media_id(attachment: Mapping[str, Any]) -> str | None:
    """The media id of an attachment of a stored file: its ``media_id`` (inbound media, an
    operator's upload) or its ``media:<id>`` url (a web chat visitor's file, an agent's
    upload); None for a link to elsewhere."""
    media_id = attachment.get("media_id")
    if media_id:
        return str(media_id)
    url = attachment.get("url")
    if isinstance(url, str) and url.startswith(SCHEME) and len(url) > len(SCHEME):
        return url[len(SCHEME) :]
    return None


def signed_attachment(signer: MediaSigner, attachment: Mapping[str, Any]) -> dict[str, Any]:
    """A stored message's attachment as an agent (or the widget) sees it: ``url`` signed for
    a ready file (url, mime, size, name, media_id, kind; a voice note's transcript), nothing
    of the provider. An upload (``media:<id>``) is ready. An attachment of no stored file is
    returned as it is."""
    out = dict(attachment)
    media_id = stored_media_id(out)
    if not media_id:
        return out
    out.pop("url", None)
    out["media_id"] = media_id
    if out.get("status", "ready") == "ready":
        out["url"] = signer.url(media_id)
    return out


def sign_frame_media(frame: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A ``user_message`` frame whose stored media get signed URLs (in place; returned): the
    messages' attachments and the ``files`` refs (``file_url`` of ``media:<id>``). A frame
    without stored media costs one scan of its attachments and no key lookup."""
    messages = frame.get("messages") or []
    if not any(stored_media_id(a) for m in messages for a in m.get("attachments") or []):
        return frame
    signer = MediaSigner.for_settings(settings)
    for m in messages:
        if m.get("attachments"):
            m["attachments"] = [signed_attachment(signer, a) for a in m["attachments"]]
    for ref in frame.get("files") or []:
        url = ref.get("file_url")
        if isinstance(url, str) and url.startswith(SCHEME):
            ref["file_url"] = signer.url(url[len(SCHEME) :])
    return frame
