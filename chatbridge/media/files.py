"""The media folder: where stored files' bytes live, and ``put`` / ``open_media``, the two
calls the rest of the bridge stores and reads media by.

Bytes live in ``CHATBRIDGE_MEDIA_DIR`` (default: a ``media`` folder beside the SQLite
database, or ``./media``), one file per ``media`` row, named by the row's id under a
two-character fan-out folder. A file is written to a temporary name and renamed into place,
so a reader never sees half a file and a crash leaves no row pointing at one: the row is
written after the file (``put``), and a file without a row is only unused space.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbridge.config import Settings
from chatbridge.ids import new_id
from chatbridge.media.limits import Checked, Kind, check_media
from chatbridge.store import Store
from chatbridge.store.media import MediaRecord

KEY_FILE = ".signing-key"
# key file → its key: read once per process (see ``MediaFolder.signing_key``)
_KEYS: dict[str, bytes] = {}


def default_media_dir(settings: Settings) -> Path:
    """``media_dir``, else a ``media`` folder beside the SQLite file, else ``./media``."""
    if settings.media_dir:
        return Path(settings.media_dir)
    url = settings.database_url
    if url.startswith("sqlite") and ":///" in url:
        db = url.split(":///", 1)[1].split("?", 1)[0]
        if db and db != ":memory:":
            return Path(db).resolve().parent / "media"
    return Path("media").resolve()


class MediaFolder:
    """The folder of stored media's bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_settings(cls, settings: Settings) -> MediaFolder:
        return cls(default_media_dir(settings))

    def _file(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("media path outside the media folder")
        return path

    def write(self, media_id: str, data: bytes) -> str:
        """Write ``data`` for ``media_id`` (atomically); returns its path in the folder."""
        rel = f"{media_id[-2:].lower()}/{media_id}"
        path = self._file(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return rel

    def read(self, rel: str) -> bytes:
        return self._file(rel).read_bytes()

    def remove(self, rel: str) -> None:
        self._file(rel).unlink(missing_ok=True)

    def signing_key(self) -> bytes:
        """The folder's own random signing key, created once (the first writer wins, so
        replicas sharing the folder agree on it). Read from disk once per process: a key,
        once written, never changes."""
        path = self.root / KEY_FILE
        known = _KEYS.get(str(path))
        if known is not None:
            return known
        try:
            key = bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            # written whole under a temporary name, then linked into place: a link fails if
            # another process's key is there already, and no reader sees a half-written key
            self.root.mkdir(parents=True, exist_ok=True)
            key = secrets.token_bytes(32)
            tmp = path.with_name(f"{KEY_FILE}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key.hex())
            try:
                os.link(tmp, path)
            except FileExistsError:
                key = bytes.fromhex(path.read_text().strip())
            finally:
                tmp.unlink(missing_ok=True)
        _KEYS[str(path)] = key
        return key


@dataclass(frozen=True, slots=True)
class Stored:
    """A file written to the folder, not yet indexed."""

    media_id: str
    path: str
    size: int
    sha256: str
    checked: Checked


async def write_checked(
    folder: MediaFolder,
    data: bytes,
    mime: str | None,
    *,
    kind: Kind | None,
    max_bytes: int,
    media_id: str | None = None,
    kind_caps: bool = True,
) -> Stored:
    """Check ``data`` (``limits.check_media``) and write it to the folder.

    Raises:
        MediaRefused: too large, a type not allowed, or bytes that are not that type.
    """
    checked = check_media(data, mime, kind=kind, max_bytes=max_bytes, kind_caps=kind_caps)
    media_id = media_id or new_id("md")
    path = await asyncio.to_thread(folder.write, media_id, data)
    return Stored(media_id, path, len(data), hashlib.sha256(data).hexdigest(), checked)


async def put(
    store: Store,
    settings: Settings,
    data: bytes,
    mime: str | None,
    name: str | None,
    *,
    kind: Kind | None = None,
    conversation_id: str | None = None,
    max_bytes: int | None = None,
    kind_caps: bool = True,
    owner: tuple[str, dict[str, Any]] | None = None,
) -> MediaRecord:
    """Store an uploaded file (an operator's or an agent's attachment): checked, written,
    indexed as a ``done`` media row. Serve it with ``signing.signed_url(settings, row.id)``.

    Args:
        data: the whole file.
        mime: its declared type; None: recognised from the bytes.
        name: the file name shown and sent (``Content-Disposition``).
        kind: image | audio | voice | video | document | sticker; None: from the type.
        max_bytes: the cap; None: ``CHATBRIDGE_MEDIA_MAX_BYTES``.
        kind_caps: also WhatsApp's cap for the kind (``limits.check_media``).
        owner: who uploaded it, kept as the row's ``provider`` and ``source`` (a web chat
            session: ``("webchat", {"session_id": …})``).

    Raises:
        MediaRefused (a ``BadInput``, 413/422): too large, type not allowed, bytes mismatch.
    """
    folder = MediaFolder.for_settings(settings)
    stored = await write_checked(
        folder,
        data,
        mime,
        kind=kind,
        max_bytes=settings.media_max_bytes if max_bytes is None else max_bytes,
        kind_caps=kind_caps,
    )
    try:
        return await store.insert_upload(
            media_id=stored.media_id,
            kind=stored.checked.kind,
            mime=stored.checked.mime,
            name=name,
            size=stored.size,
            sha256=stored.sha256,
            path=stored.path,
            conversation_id=conversation_id,
            provider=owner[0] if owner else None,
            source=owner[1] if owner else None,
        )
    except BaseException:
        await asyncio.to_thread(folder.remove, stored.path)
        raise


async def forget_unsent_uploads(
    store: Store, settings: Settings, provider: str, *, before: float
) -> int:
    """Remove ``provider``'s uploads made before ``before`` that no message sent: their rows,
    then their files (a file left by a crash between the two is only unused space). Returns
    how many."""
    rows = await store.take_unsent_uploads(provider, before=before)
    folder = MediaFolder.for_settings(settings)
    for row in rows:
        if row.path:
            await asyncio.to_thread(folder.remove, row.path)
    return len(rows)


async def open_media(
    store: Store, settings: Settings, media_id: str
) -> tuple[MediaRecord, bytes] | None:
    """A stored file's row and bytes; None if there is no such file (or not yet)."""
    row = await store.get_media(media_id)
    if row is None or row.state != "done" or not row.path:
        return None
    folder = MediaFolder.for_settings(settings)
    try:
        data = await asyncio.to_thread(folder.read, row.path)
    except (OSError, ValueError):
        return None
    return row, data
