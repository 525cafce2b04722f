"""The media folder and ``put``: checked, written, indexed; refused with a reason; signed URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbridge.config import Settings
from chatbridge.media.files import MediaFolder, open_media, put
from chatbridge.media.limits import MediaRefused, check_media, kind_for
from chatbridge.media.signing import MediaSigner, sign_frame_media
from chatbridge.store import Store

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PDF = b"%PDF-1.7\n" + b"x" * 300
OGG = b"OggS" + b"\x00" * 100


def settings_for(url: str, tmp_path: Path, **kw: object) -> Settings:
    return Settings(database_url=url, media_dir=str(tmp_path / "media"), **kw)  # type: ignore[arg-type]


async def test_put_then_open_gives_the_same_bytes(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    s = settings_for(database_url, tmp_path)
    row = await put(store, s, PNG, "image/png", "cat.png", conversation_id="c_1")
    assert (row.kind, row.mime, row.size, row.state, row.origin) == (
        "image",
        "image/png",
        len(PNG),
        "done",
        "upload",
    )
    opened = await open_media(store, s, row.id)
    assert opened is not None and opened[1] == PNG and opened[0].name == "cat.png"


async def test_put_refuses_mistyped_and_oversized_writing_nothing(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    s = settings_for(database_url, tmp_path, media_max_bytes=1024)
    with pytest.raises(MediaRefused) as mistyped:
        await put(store, s, PDF, "image/png", "x.png")
    assert mistyped.value.code == "media_type_mismatch"
    assert "declared image/png but the bytes are a PDF" in mistyped.value.message
    with pytest.raises(MediaRefused) as big:
        await put(store, s, PNG + b"\x00" * 2000, "image/png", "big.png")
    assert big.value.code == "media_too_large" and big.value.status_code == 413
    assert "over the bridge's limit" in big.value.message
    files = (
        [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
        if (tmp_path / "media").exists()
        else []
    )
    assert files == []
    assert await store.list_media(conversation_id=None) == []


def test_checks_by_kind() -> None:
    assert kind_for("audio/ogg; codecs=opus") == "voice"
    assert kind_for("audio/mpeg") == "audio"
    assert kind_for("image/webp") == "sticker"
    assert check_media(OGG, "audio/ogg; codecs=opus", max_bytes=10**6).kind == "voice"
    with pytest.raises(MediaRefused, match="application/x-msdownload is not allowed for document"):
        check_media(b"MZ\x90\x00" + b"\x00" * 10, "application/x-msdownload", max_bytes=10**6)
    with pytest.raises(MediaRefused, match="WhatsApp's limit for image"):
        check_media(PNG + b"\x00" * (6 * 1024 * 1024), "image/png", max_bytes=100 * 1024 * 1024)
    with pytest.raises(MediaRefused, match="empty"):
        check_media(b"", "image/png", max_bytes=10)


def test_signed_urls_expire_and_refuse_tampering(tmp_path: Path) -> None:
    s = Settings(media_dir=str(tmp_path / "m"), public_url="https://bridge.example")
    signer = MediaSigner.for_settings(s)
    again = MediaSigner.for_settings(s)
    assert signer.key == again.key  # the folder's key is made once and kept
    url = signer.url("md_1", now=1000.0)
    assert url.startswith("https://bridge.example/media/md_1?exp=1900&sig=")
    sig = url.rsplit("sig=", 1)[1]
    assert signer.refusal("md_1", "1900", sig, now=1899) is None
    assert signer.refusal("md_1", "1900", sig, now=1901) == "the URL has expired"
    assert signer.refusal("md_2", "1900", sig, now=1000) == "bad signature"
    assert signer.refusal("md_1", "1901", sig, now=1000) == "bad signature"
    assert signer.refusal("md_1", None, sig) is not None
    # not hex, not ASCII: refused like any wrong signature, never an error
    assert signer.refusal("md_1", "1900", "é" * len(sig), now=1000) == "bad signature"
    assert signer.refusal("md_1", "1900", sig + "\u00e9", now=1000) == "bad signature"
    keyed = MediaSigner.for_settings(
        Settings(media_signing_key="k" * 32, media_dir=str(tmp_path / "m"))
    )
    assert keyed.signature("md_1", 5) != signer.signature("md_1", 5)


def test_frames_get_signed_urls_for_ready_media_only(tmp_path: Path) -> None:
    s = Settings(media_dir=str(tmp_path / "m"))
    frame = {
        "messages": [
            {"attachments": [{"media_id": "md_a", "status": "ready", "mime": "image/png"}]},
            {"attachments": [{"media_id": "md_b", "status": "failed", "error": "too big"}]},
            {"attachments": [{"url": "https://elsewhere/x.png"}]},
        ]
    }
    out = sign_frame_media(frame, s)
    first = out["messages"][0]["attachments"][0]
    assert first["url"].startswith("http://127.0.0.1:8000/media/md_a?exp=")
    assert "url" not in out["messages"][1]["attachments"][0]
    assert out["messages"][2]["attachments"][0] == {"url": "https://elsewhere/x.png"}
    assert MediaFolder(tmp_path / "m").signing_key()
