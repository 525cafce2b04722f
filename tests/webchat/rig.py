"""A running bridge with a web chat inbox, its media folder in the test's own directory and
signed URLs naming where the test reaches the bridge; helpers to upload and to count what
the media store holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from chatbridge.agent import Agent
from chatbridge.store import tables as t
from tests.e2e.harness import Stack, running_stack

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n" + b"%binary \xe2\xe3\xcf\xd3\n" + b"1 0 obj\n" * 200


@asynccontextmanager
async def webchat_stack(
    database_url: str, tmp_path: Path, agent: Agent | None = None, **settings: Any
) -> AsyncIterator[Stack]:
    async with running_stack(
        database_url,
        agent=agent,
        webchat=True,
        delay=0,
        media_dir=str(tmp_path / "media"),
        **settings,
    ) as s:
        s.bridge.settings.public_url = s.url  # signed URLs name where the test reaches us
        yield s


async def new_session(s: Stack, **body: Any) -> str:
    r = await s.http.post("/api/webchat/sessions", json={"inbox_id": 1, **body})
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


async def upload(s: Stack, session_id: str, data: bytes, mime: str, name: str = "file.bin") -> Any:
    """``POST /api/webchat/upload`` as the widget sends it (multipart: session_id, file)."""
    return await s.http.post(
        "/api/webchat/upload",
        data={"session_id": session_id},
        files={"file": (name, data, mime)},
    )


async def media_rows(s: Stack) -> int:
    async with s.bridge.store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.media))).scalar_one())


def media_files(tmp_path: Path) -> list[Path]:
    """The stored files in the media folder (not its signing key, nor folders)."""
    root = tmp_path / "media"
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and p.name != ".signing-key"]
