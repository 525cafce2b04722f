"""Media a reply sends on WhatsApp: WhatsApp's type and size limits checked before anything is
sent (a refused reply sends nothing, and says why), and files the bridge stores sent as bytes
with each provider's own call — exact bodies at the fake gateways, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbridge.channels.whatsapp import WhatsAppChannel
from chatbridge.channels.whatsapp.ids import ChatAddress
from chatbridge.channels.whatsapp.media_out import (
    StoredAttachment,
    check_outbound,
    prepare,
    stored_media_id,
)
from chatbridge.config import Settings
from chatbridge.errors import PermanentDelivery
from chatbridge.media.files import put
from chatbridge.models import Attachment, ConversationRef, OutboundAction
from chatbridge.store import Store
from chatbridge.testing.fake_wa_interactive import state
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.channels.whatsapp.rig import gateways_at

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
MB = 1024 * 1024
WAHA = "waha:default:919876543210@c.us"
EVO = "evolution:shop:919876543210@s.whatsapp.net"
META = "meta_cloud:106540352242922:919876543210"


# ------------------------------------------------------------------------------ limits


@pytest.mark.parametrize(
    ("attachment", "reason"),
    [
        (Attachment("https://x/a.gif", "image/gif", None, "a.gif"), "image/gif is not a type"),
        (Attachment("https://x/a.png", "image/png", 6 * MB, "a.png"), "over WhatsApp's 5.0 MB"),
        (Attachment("https://x/v.mov", "video/quicktime", None, "v.mov"), "(MP4 or 3GPP)"),
        (Attachment("https://x/v.mp4", "video/mp4", 17 * MB, "v.mp4"), "16.0 MB limit for video"),
        (Attachment("https://x/a.wav", "audio/wav", None, "a.wav"), "as audio"),
        (Attachment("https://x/d.pdf", "application/pdf", 101 * MB, "d.pdf"), "100.0 MB"),
        (Attachment("https://x/s.webp", "image/webp", 600 * 1024, "s.webp"), "sticker"),
    ],
)
def test_refused_with_a_reason(attachment: Attachment, reason: str) -> None:
    with pytest.raises(PermanentDelivery, match="whatsapp cannot send") as caught:
        check_outbound(attachment)
    assert reason in str(caught.value)
    assert (attachment.name or "") in str(caught.value)


@pytest.mark.parametrize(
    "attachment",
    [
        Attachment("https://x/a.jpg", "image/jpeg", 5 * MB, "a.jpg"),
        Attachment("https://x/a.ogg", "audio/ogg; codecs=opus", 1000, "a.ogg"),
        Attachment("https://x/d.zip", "application/zip", 99 * MB, "d.zip"),
        Attachment("https://x/unknown-size.png", "image/png"),  # size unknown: the gateway checks
        Attachment("https://x/file"),  # no type: a document
    ],
)
def test_allowed(attachment: Attachment) -> None:
    check_outbound(attachment)


def test_stored_media_id() -> None:
    assert stored_media_id("media:md_1") == "md_1"
    assert (
        stored_media_id("https://b.example/media/md_2?exp=1&sig=x", "https://b.example") == "md_2"
    )
    assert stored_media_id("https://elsewhere/media/md_2", "https://b.example") is None
    assert stored_media_id("https://x/y.png") is None


# ------------------------------------------------------------------------------ sending


class Rig:
    def __init__(self, url: str, fake: FakeWhatsApp, store: Store, settings: Settings) -> None:
        self.url = url
        self.fake = fake
        self.store = store
        self.settings = settings
        comms = gateways_at(url)
        self.channel = WhatsAppChannel(lambda: comms, store=store, timeout=5)
        self.channel.media_settings = settings

    def posts(self) -> list[Any]:
        return [r for r in self.fake.requests if r.method == "POST"]


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = Settings(database_url=database_url, media_dir=str(tmp_path / "media"))
    store = Store(database_url)
    await store.migrate()
    app = create_fake_whatsapp()
    try:
        async with serve_app(app) as url:
            r = Rig(url, app.state.fake, store, settings)
            try:
                yield r
            finally:
                await r.channel.aclose()
    finally:
        await store.close()


def action(key: str, text: str | None, attachments: list[Attachment]) -> OutboundAction:
    conv = ConversationRef(id="c_1", channel="whatsapp", channel_key=key, inbox_id=1)
    return OutboundAction(
        kind="message", conversation=conv, idempotency_key="k1", text=text, attachments=attachments
    )


async def test_waha_sends_a_stored_file_as_data(rig: Rig) -> None:
    row = await put(rig.store, rig.settings, PNG, "image/png", "cat.png")
    await rig.channel.send(action(WAHA, "Our cat", [Attachment(f"media:{row.id}")]))
    [req] = rig.posts()
    assert req.path == "/api/sendImage"
    assert req.headers["x-api-key"] == "waha-key"
    assert req.json == {
        "session": "default",
        "chatId": "919876543210@c.us",
        "file": {
            "data": base64.b64encode(PNG).decode(),
            "mimetype": "image/png",
            "filename": "cat.png",
        },
        "caption": "Our cat",
    }


async def test_evolution_sends_a_stored_file_as_base64(rig: Rig) -> None:
    row = await put(rig.store, rig.settings, PNG, "image/png", "cat.png")
    await rig.channel.send(action(EVO, None, [Attachment(f"media:{row.id}")]))
    [req] = rig.posts()
    assert (req.path, req.headers["apikey"]) == ("/message/sendMedia/shop", "evo-key")
    assert req.json == {
        "number": "919876543210",
        "mediatype": "image",
        "media": base64.b64encode(PNG).decode(),
        "mimetype": "image/png",
        "fileName": "cat.png",
    }


async def test_meta_uploads_a_stored_file_then_sends_its_id(rig: Rig) -> None:
    row = await put(rig.store, rig.settings, PNG, "image/png", "cat.png")
    [stored] = await prepare([Attachment(f"media:{row.id}")], rig.store, rig.settings)
    assert isinstance(stored, StoredAttachment) and stored.data == PNG
    provider = rig.channel.provider("meta_cloud")
    wamid = await provider.send_media(ChatAddress.parse(META), stored, "Our cat")
    upload, send = rig.posts()
    assert (upload.path, upload.headers["authorization"]) == (
        "/v23.0/106540352242922/media",
        "Bearer meta-token",
    )
    assert upload.headers["content-type"].startswith("multipart/form-data")
    [(media_id, file)] = state(rig.fake)["uploads"].items()
    assert (file.data, file.mime, file.filename) == (PNG, "image/png", "cat.png")
    assert send.path == "/v23.0/106540352242922/messages"
    assert send.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+919876543210",
        "type": "image",
        "image": {"id": media_id, "caption": "Our cat"},
    }
    assert wamid is not None and wamid.startswith("wamid.")


async def test_a_refused_attachment_sends_nothing(rig: Rig) -> None:
    """The second file is a GIF: refused before the first (fine) one goes out."""
    row = await put(rig.store, rig.settings, PNG, "image/png", "cat.png")
    gif = Attachment("https://cdn.example/dance.gif", "image/gif", 1000, "dance.gif")
    with pytest.raises(PermanentDelivery, match=r"'dance\.gif': image/gif is not a type"):
        await rig.channel.send(action(WAHA, "Look", [Attachment(f"media:{row.id}"), gif]))
    assert rig.posts() == []


async def test_an_unknown_stored_file_is_refused(rig: Rig) -> None:
    with pytest.raises(PermanentDelivery, match="no stored media 'md_nope'"):
        await rig.channel.send(action(WAHA, None, [Attachment("media:md_nope", "image/png")]))
    assert rig.posts() == []


async def test_the_fake_refuses_an_unknown_media_id(rig: Rig) -> None:
    """The fake Graph API is as strict as Meta: an image sent by an id nobody uploaded is
    refused, and so is an upload without its file."""
    async with httpx.AsyncClient(base_url=rig.url) as graph:
        auth = {"Authorization": "Bearer meta-token"}
        r = await graph.post(
            "/v23.0/106540352242922/messages",
            headers=auth,
            json={
                "messaging_product": "whatsapp",
                "to": "+919876543210",
                "type": "image",
                "image": {"id": "123"},
            },
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, 100)
        r = await graph.post(
            "/v23.0/106540352242922/media",
            headers=auth,
            data={"messaging_product": "whatsapp", "type": "image/png"},
            files={"unrelated": ("x.png", b"x", "image/png")},
        )
        assert r.status_code == 400 and "file is required" in r.json()["error"]["message"]
        r = await graph.post("/v23.0/106540352242922/media", files={"file": ("x", b"x")})
        assert r.status_code == 401


def test_a_static_sticker_is_held_to_100_kb_an_animated_one_to_500() -> None:
    """Meta: static stickers ≤ 100 KB, animated ≤ 500 KB; the animation bit of an extended
    WebP's flags (``VP8X``, byte 20) tells them apart."""
    from chatbridge.channels.whatsapp.media_out import StoredAttachment

    def webp(size: int, *, animated: bool) -> StoredAttachment:
        head = b"RIFF" + size.to_bytes(4, "little") + b"WEBP" + b"VP8X" + b"\x0a\0\0\0"
        head += bytes([0x02 if animated else 0x00])
        data = head + b"\0" * (size - len(head))
        return StoredAttachment("media:md_s", "image/webp", size, "s.webp", data=data)

    with pytest.raises(PermanentDelivery, match="100 KB limit for a static sticker"):
        check_outbound(webp(200 * 1024, animated=False))
    check_outbound(webp(200 * 1024, animated=True))
    check_outbound(webp(90 * 1024, animated=False))
    with pytest.raises(PermanentDelivery, match="limit for sticker"):
        check_outbound(webp(600 * 1024, animated=True))
