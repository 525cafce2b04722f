"""End to end, on SQLite and PostgreSQL: a customer's media on each provider is downloaded
with that provider's credentials (exact path, headers and body at the fake gateway), its turn
waits for it, and the agent gets the bridge's signed URL, which serves the identical bytes —
never the provider's URL. Voice notes reach the agent as their transcript; refused files
say why; a signed URL that expired or was altered is a 403."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from chatbridge.store import tables as t
from chatbridge.testing.fake_wa_media import add_evolution_file, add_meta_file, add_waha_file
from chatbridge.testing.whatsapp_payloads import evolution_message, meta_webhook, waha_message
from tests.e2e.harness import wait_until
from tests.media.rig import OGG, PDF, PNG, MediaRig, media_rig

META_MEDIA_ID = "1037543291543636"


async def send_image(rig: MediaRig, provider: str, data: bytes, mime: str, msg_id: str) -> None:
    """The customer sends ``data`` as an image on ``provider`` (the gateway has the file)."""
    if provider == "waha":
        path = add_waha_file(rig.fake, data, mime, f"{msg_id}.png")
        media = {"url": f"{rig.fake_url}{path}", "mimetype": mime, "filename": None, "error": None}
        await rig.webhook("waha", waha_message("", msg_id=msg_id, media=media))
    elif provider == "evolution":
        add_evolution_file(rig.fake, msg_id, data, mime, "photo.png")
        message = {
            "imageMessage": {
                "url": "https://mmg.whatsapp.net/o1/v/t62.7118-24/f1/enc-file",
                "mimetype": mime,
                "caption": "look",
            }
        }
        payload = evolution_message(msg_id=msg_id, message=message, message_type="imageMessage")
        await rig.webhook("evolution", payload)
    else:
        add_meta_file(rig.fake, META_MEDIA_ID, data, mime)
        item = {
            "from": "919876543210",
            "id": msg_id,
            "timestamp": "1749416383",
            "type": "image",
            "image": {"mime_type": mime, "sha256": "x", "id": META_MEDIA_ID, "caption": "look"},
        }
        await rig.webhook("meta", meta_webhook(messages=[item]))


def assert_provider_call(rig: MediaRig, provider: str, msg_id: str) -> None:
    """The download went to the provider's endpoint with its credential, as documented."""
    if provider == "waha":
        [call] = rig.fake.calls("/api/files/")
        assert (call.method, call.path) == ("GET", f"/api/files/default/{msg_id}.png")
        assert call.headers["x-api-key"] == "waha-key"
    elif provider == "evolution":
        [call] = rig.fake.calls("/chat/getBase64FromMediaMessage/")
        assert (call.method, call.path) == ("POST", "/chat/getBase64FromMediaMessage/shop")
        assert call.headers["apikey"] == "evo-key"
        assert call.json == {"message": {"key": {"id": msg_id}}}
    else:
        [info] = rig.fake.calls(f"/v23.0/{META_MEDIA_ID}")
        assert (info.method, info.headers["authorization"]) == ("GET", "Bearer meta-token")
        [get] = rig.fake.calls("/whatsapp_business/attachments/")
        assert (get.method, get.headers["authorization"]) == ("GET", "Bearer meta-token")


@pytest.mark.parametrize("provider", ["waha", "evolution", "meta_cloud"])
async def test_media_reaches_the_agent_as_a_signed_url_with_identical_bytes(
    database_url: str, tmp_path: Path, provider: str
) -> None:
    route = {"meta_cloud": "meta"}.get(provider, provider)
    async with media_rig(database_url, tmp_path, provider) as rig:
        msg_id = "wamid.IMG1" if provider == "meta_cloud" else "3EB0MEDIA000001"
        await send_image(rig, route, PNG, "image/png", msg_id)
        frame = await rig.frame()
        [attachment] = frame["messages"][0]["attachments"]
        assert attachment["status"] == "ready"
        assert (attachment["mime"], attachment["size"], attachment["kind"]) == (
            "image/png",
            len(PNG),
            "image",
        )
        url = attachment["url"]
        assert url.startswith(
            f"{str(rig.http.base_url).rstrip('/')}/media/{attachment['media_id']}?exp="
        )
        # nothing of the provider reaches the agent: no gateway URL, no credential
        text = json.dumps(frame)
        assert rig.fake_url not in text and "mmg.whatsapp.net" not in text
        assert "waha-key" not in text and "meta-token" not in text
        assert_provider_call(rig, route, msg_id)
        async with httpx.AsyncClient() as anyone:  # no admin key: the URL is the credential
            got = await anyone.get(url)
        assert got.status_code == 200
        assert got.content == PNG and hashlib.sha256(got.content).digest() == (
            hashlib.sha256(PNG).digest()
        )
        assert got.headers["content-type"] == "image/png"
        assert got.headers["content-disposition"].startswith("inline; filename=")
        assert got.headers["x-content-type-options"] == "nosniff"
        # the admin API shows the row (without the provider's fetch details)
        r = await rig.http.get(f"/api/comms/media/{attachment['media_id']}")
        assert r.status_code == 200, r.text
        row = r.json()
        assert (row["state"], row["origin"], row["provider"]) == ("done", "inbound", provider)
        assert "source" not in row and "path" not in row


async def test_signed_url_expired_or_tampered_is_403(database_url: str, tmp_path: Path) -> None:
    async with media_rig(database_url, tmp_path, "waha") as rig:
        await send_image(rig, "waha", PNG, "image/png", "3EB0MEDIA000002")
        [attachment] = (await rig.frame())["messages"][0]["attachments"]
        parts = urlsplit(attachment["url"])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        async with httpx.AsyncClient() as anyone:
            assert (await anyone.get(attachment["url"])).status_code == 200
            cases = {
                "bad signature": {**query, "sig": "0" * 64},
                "the URL has expired": {
                    "exp": "1000",
                    "sig": _sign(rig, attachment["media_id"], 1000),
                },
                "the URL has no exp or sig": {},
            }
            for reason, params in cases.items():
                r = await anyone.get(base, params=params)
                assert r.status_code == 403, (reason, r.text)
                error = r.json()["error"]
                assert (error["code"], error["message"]) == ("media_url_refused", reason)
            # another file's id with this file's signature
            other = base.replace(attachment["media_id"], "md_01AAAAAAAAAAAAAAAAAAAAAAAA")
            assert (await anyone.get(other, params=query)).status_code == 403


def _sign(rig: MediaRig, media_id: str, exp: int) -> str:
    from chatbridge.media.signing import MediaSigner

    return MediaSigner.for_settings(rig.bridge.settings).signature(media_id, exp)


async def test_voice_note_reaches_the_agent_as_its_transcript(
    database_url: str, tmp_path: Path
) -> None:
    async with media_rig(database_url, tmp_path, "meta_cloud") as rig:
        add_meta_file(rig.fake, META_MEDIA_ID, OGG, "audio/ogg; codecs=opus")
        item = {
            "from": "919876543210",
            "id": "wamid.VOICE1",
            "timestamp": "1749416383",
            "type": "audio",
            "audio": {"mime_type": "audio/ogg; codecs=opus", "id": META_MEDIA_ID, "voice": True},
        }
        await rig.webhook("meta", meta_webhook(messages=[item]))
        frame = await rig.frame()
        transcript = f"hello from a {len(OGG)}-byte call"
        assert frame["content"] == transcript
        [attachment] = frame["messages"][0]["attachments"]
        assert attachment["kind"] == "voice" and attachment["transcript"] == transcript
        assert attachment["transcript_status"] == "done" and attachment["url"]
        [asked] = rig.transcriber.requests
        assert (asked["auth"], asked["size"]) == ("Bearer sk-transcribe", len(OGG))


async def test_voice_note_transcribed_on_the_next_attempt_when_the_provider_was_busy(
    database_url: str, tmp_path: Path
) -> None:
    async with media_rig(database_url, tmp_path, "waha") as rig:
        rig.transcriber.fail_next = 1  # a 503 first
        path = add_waha_file(rig.fake, OGG, "audio/ogg; codecs=opus", "v1.oga")
        media = {"url": f"{rig.fake_url}{path}", "mimetype": "audio/ogg; codecs=opus"}
        await rig.webhook("waha", waha_message("", msg_id="3EB0VOICE00003", media=media))
        frame = await rig.frame()
        assert frame["content"] == f"hello from a {len(OGG)}-byte call"
        assert len(rig.transcriber.requests) == 2
        rows = await rig.bridge.store.list_media(message_id=frame["messages"][0]["id"])
        assert [(r.state, r.attempts, r.transcript_status) for r in rows] == [("done", 2, "done")]


async def test_voice_note_without_a_transcriber_says_so(database_url: str, tmp_path: Path) -> None:
    async with media_rig(database_url, tmp_path, "waha", transcribe=False) as rig:
        path = add_waha_file(rig.fake, OGG, "audio/ogg; codecs=opus", "v.oga")
        media = {"url": f"{rig.fake_url}{path}", "mimetype": "audio/ogg; codecs=opus"}
        await rig.webhook("waha", waha_message("", msg_id="3EB0VOICE00002", media=media))
        frame = await rig.frame()
        assert frame["content"] == "voice note (not transcribed)"
        [attachment] = frame["messages"][0]["attachments"]
        assert attachment["transcript_status"] == "skipped" and attachment["url"]


@pytest.mark.parametrize(
    ("data", "mime", "reason"),
    [
        (PDF, "image/png", "declared image/png but the bytes are a PDF"),
        (PNG + b"\x00" * 3000, "image/png", "over the bridge's limit"),
    ],
    ids=["mistyped", "oversized"],
)
async def test_refused_media_say_why_and_write_nothing(
    database_url: str, tmp_path: Path, data: bytes, mime: str, reason: str
) -> None:
    async with media_rig(database_url, tmp_path, "evolution", media_max_bytes=2048) as rig:
        await send_image(rig, "evolution", data, mime, "3EB0BAD0000001")
        frame = await rig.frame()
        [attachment] = frame["messages"][0]["attachments"]
        assert attachment["status"] == "failed" and reason in attachment["error"]
        assert "url" not in attachment
        rows = await rig.bridge.store.list_media(message_id=frame["messages"][0]["id"])
        assert [(r.state, r.attempts, r.path) for r in rows] == [("failed", 1, None)]
        assert reason in (rows[0].last_error or "")
        assert rig.files() == []  # nothing half-written in the media folder
        # an operator may have it downloaded again (it fails the same way: same reason)
        r = await rig.http.post(f"/api/comms/media/{rows[0].id}/retry")
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["attempts"]) == ("queued", 0)

        async def failed_again() -> bool:
            [row] = await rig.bridge.store.list_media(message_id=frame["messages"][0]["id"])
            return row.state == "failed" and reason in (row.last_error or "")

        await wait_until(failed_again, 10)
        missing = await rig.http.post("/api/comms/media/md_01NOSUCHFILE000000000000000/retry")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_turn_waits_for_its_media_then_runs(database_url: str, tmp_path: Path) -> None:
    """The download is held at the gateway: the agent is not asked until it is stored."""
    from chatbridge.testing.fake_wa_media import media_of

    async with media_rig(database_url, tmp_path, "waha") as rig:
        gate = media_of(rig.fake).gate = asyncio.Event()
        await send_image(rig, "waha", PNG, "image/png", "3EB0WAIT000001")
        await wait_until(lambda: rig.fake.calls("/api/files/"), 10)
        async with rig.bridge.store._tx() as conn:
            [turn] = (await conn.execute(select(t.turns.c.state, t.turns.c.available_at))).all()
        # held: not claimable before the wait bound (20 s), though the message came just now
        assert turn.state == "pending" and turn.available_at > time.time() + 10
        assert rig.agent.received == []
        gate.set()
        frame = await rig.frame()
        assert frame["messages"][0]["attachments"][0]["status"] == "ready"
