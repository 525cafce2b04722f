"""A web chat visitor's files, over real sockets on SQLite and PostgreSQL: the upload is
checked and stored, the message names it, the agent gets it as a file ref whose signed URL
serves the identical bytes (altered or expired: 403), and files the agent answers with reach
the widget by signed URL. Refused uploads say why and leave nothing behind."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets
from sqlalchemy import update

from chatbridge.agent import Agent, Answer, Turn
from chatbridge.media.signing import MediaSigner
from chatbridge.pipeline.webchat_sessions import UNSENT_UPLOAD_SECONDS, forget_unsent_files
from chatbridge.store import tables as t
from tests.e2e.harness import Stack, wait_until
from tests.webchat.rig import PDF, PNG, media_files, media_rows, new_session, upload, webchat_stack


def file_agent(seen: list[dict[str, Any]], fetched: dict[str, bytes]) -> Agent:
    """An agent that fetches every file of a turn by its ``file_url`` (as an agent would) and
    answers with the first file attached (``media:<id>``)."""
    agent = Agent("agent1")

    @agent.on_message
    async def answer(turn: Turn) -> Answer | str:
        seen.append(turn.raw)
        files = turn.raw.get("files") or []
        async with httpx.AsyncClient() as client:
            for ref in files:
                r = await client.get(ref["file_url"])
                assert r.status_code == 200, r.text
                fetched[ref["file_id"]] = r.content
        if not files:
            return "no files"
        return Answer(
            content=f"got {len(files)}", attachments=[{"url": f"media:{files[0]['file_id']}"}]
        )

    return agent


async def agent_reply(s: Stack, session_id: str) -> dict[str, Any]:
    async def reply() -> dict[str, Any] | None:
        r = await s.http.get(f"/api/webchat/sessions/{session_id}/messages")
        agent = [m for m in r.json()["messages"] if m["role"] == "agent"]
        return agent[-1] if agent else None

    found: dict[str, Any] = await wait_until(reply)
    return found


async def test_a_visitors_file_reaches_the_agent_and_its_signed_url_serves_the_same_bytes(
    database_url: str, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    fetched: dict[str, bytes] = {}
    async with webchat_stack(database_url, tmp_path, file_agent(seen, fetched)) as s:
        sid = await new_session(s)
        r = await upload(s, sid, PNG, "image/png", "C:\\fakepath\\photo.png")
        assert r.status_code == 201, r.text
        up = r.json()
        assert up["file_name"] == "photo.png" and up["mime"] == "image/png"
        assert up["size"] == len(PNG) and up["file_id"].startswith("md_")
        pdf = (await upload(s, sid, PDF, "application/pdf", "terms.pdf")).json()

        r = await s.http.post(
            f"/api/webchat/sessions/{sid}/messages",
            json={"text": "here they are", "files": [up["file_id"], pdf["file_id"]]},
        )
        assert r.status_code == 202, r.text
        reply = await agent_reply(s, sid)

        [frame] = seen
        assert frame["files"] == [
            {
                "file_id": up["file_id"],
                "file_name": "photo.png",
                "file_url": frame["files"][0]["file_url"],
                "mime": "image/png",
                "size": len(PNG),
            },
            {
                "file_id": pdf["file_id"],
                "file_name": "terms.pdf",
                "file_url": frame["files"][1]["file_url"],
                "mime": "application/pdf",
                "size": len(PDF),
            },
        ]
        assert fetched == {up["file_id"]: PNG, pdf["file_id"]: PDF}
        # the message's attachments point at the same signed URLs
        attachments = frame["messages"][0]["attachments"]
        assert [a["url"] for a in attachments] == [f["file_url"] for f in frame["files"]]
        assert [a["name"] for a in attachments] == ["photo.png", "terms.pdf"]

        # the widget's history: the visitor's files and the agent's file, by signed URL
        history = (await s.http.get(f"/api/webchat/sessions/{sid}/messages")).json()["messages"]
        mine = history[0]
        assert mine["role"] == "user" and mine["text"] == "here they are"
        assert [a["mime"] for a in mine["attachments"]] == ["image/png", "application/pdf"]
        assert reply["text"] == "got 2"
        [back] = reply["attachments"]
        assert back["media_id"] == up["file_id"] and back["url"].startswith(s.url + "/media/")
        # the console shows both by their media ids, as it shows downloaded media
        conversation_id = r.json()["conversation_id"]
        thread = (await s.http.get(f"/api/comms/threads/{conversation_id}/messages")).json()
        shown = [[a.get("media_id") for a in m["attachments"]] for m in thread["messages"]]
        assert shown == [[up["file_id"], pdf["file_id"]], [up["file_id"]]]
        async with httpx.AsyncClient() as widget:
            assert (await widget.get(mine["attachments"][1]["url"])).content == PDF
            got = await widget.get(back["url"])
            assert (got.status_code, got.content) == (200, PNG)
            assert got.headers["content-type"] == "image/png"


async def test_a_file_url_altered_or_past_its_expiry_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    async with webchat_stack(database_url, tmp_path, file_agent(seen, {})) as s:
        sid = await new_session(s)
        file_id = (await upload(s, sid, PDF, "application/pdf", "a.pdf")).json()["file_id"]
        await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"files": [file_id]})
        await agent_reply(s, sid)
        url = seen[0]["files"][0]["file_url"]
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        base = url.split("?", 1)[0]
        signer = MediaSigner.for_settings(s.bridge.settings)
        # valid for CHATBRIDGE_MEDIA_URL_TTL_SECONDS
        expected = time.time() + s.bridge.settings.media_url_ttl_seconds
        assert abs(int(query["exp"]) - expected) <= 60
        past = int(time.time()) - 1
        async with httpx.AsyncClient() as anyone:
            assert (await anyone.get(url)).content == PDF
            for params in (
                {**query, "sig": query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1")},
                {**query, "exp": str(int(query["exp"]) + 1)},
                {"exp": str(past), "sig": signer.signature(file_id, past)},
            ):
                r = await anyone.get(base, params=params)
                assert r.status_code == 403, r.text
                assert r.json()["error"]["code"] == "media_url_refused"


OVER = b"a" * 3000  # plain text over the 2048-byte cap of these tests


@pytest.mark.parametrize(
    ("data", "mime", "status", "code"),
    [
        (OVER, "text/plain", 413, "media_too_large"),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            "image/svg+xml",
            415,
            "upload_type_not_allowed",
        ),
        (b"PK\x03\x04" + b"\x00" * 100, "application/zip", 415, "upload_type_not_allowed"),
        (b"MZ\x90\x00" + b"\x00" * 100, "application/octet-stream", 415, "upload_type_not_allowed"),
        (PDF, "image/png", 422, "media_type_mismatch"),
        (b"", "text/plain", 422, "media_empty"),
    ],
)
async def test_refused_uploads_say_why_and_store_nothing(
    sqlite_url: str, tmp_path: Path, data: bytes, mime: str, status: int, code: str
) -> None:
    async with webchat_stack(sqlite_url, tmp_path, webchat_upload_max_bytes=2048) as s:
        sid = await new_session(s)
        r = await upload(s, sid, data, mime, "x")
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["code"] == code and error["message"]
        assert await media_rows(s) == 0
        assert media_files(tmp_path) == []


async def test_refusals_store_nothing_on_postgresql_either(
    database_url: str, tmp_path: Path
) -> None:
    async with webchat_stack(database_url, tmp_path, webchat_upload_max_bytes=2048) as s:
        sid = await new_session(s)
        for data, mime in ((OVER, "text/plain"), (PDF, "image/gif"), (PNG, "image/svg+xml")):
            r = await upload(s, sid, data, mime)
            assert r.status_code in (413, 415, 422), r.text
        # a body past the path's own limit is cut off before it is read
        r = await upload(s, sid, b"b" * (1024 * 1024 + 100 * 1024), "text/plain")
        assert r.status_code == 413 and r.json()["error"]["code"]
        assert await media_rows(s) == 0
        assert media_files(tmp_path) == []


TEXT_FILE = {"file": ("a.txt", b"hi", "text/plain")}


@pytest.mark.parametrize(
    ("session_id", "body", "status", "code"),
    [
        ("nobody", {"files": TEXT_FILE}, 404, "unknown_session"),
        ("bad id!", {"files": TEXT_FILE}, 422, "invalid_request"),
        (None, {}, 422, "invalid_request"),  # no file
        (None, {"files": {"other": ("a.txt", b"hi", "text/plain")}}, 422, "invalid_request"),
    ],
)
async def test_bad_upload_requests_are_refused(
    sqlite_url: str,
    tmp_path: Path,
    session_id: str | None,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    async with webchat_stack(sqlite_url, tmp_path) as s:
        sid = session_id or await new_session(s)
        r = await s.http.post("/api/webchat/upload", data={"session_id": sid}, **body)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        # a JSON body is not a file
        r = await s.http.post("/api/webchat/upload", json={"session_id": sid, "file": "aGk="})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert await media_rows(s) == 0


async def test_a_message_may_name_only_its_own_sessions_files(
    database_url: str, tmp_path: Path
) -> None:
    async with webchat_stack(database_url, tmp_path) as s:
        mine, theirs = await new_session(s), await new_session(s)
        their_file = (await upload(s, theirs, PNG, "image/png")).json()["file_id"]
        path = f"/api/webchat/sessions/{mine}/messages"
        for files in ([their_file], ["md_01NOSUCHFILE0000000000000"]):
            r = await s.http.post(path, json={"text": "look", "files": files})
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["code"] == "unknown_file" and error["details"]["file_id"] == files[0]
        r = await s.http.post(path, json={"files": []})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
        r = await s.http.post(path, json={"text": "x", "files": ["a"] * 11})
        assert r.status_code == 422
        history = (await s.http.get(path)).json()["messages"]
        assert history == []  # nothing was stored


async def test_the_live_socket_sends_files_too(sqlite_url: str, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    async with webchat_stack(sqlite_url, tmp_path, file_agent(seen, {})) as s:
        sid = await new_session(s)
        file_id = (await upload(s, sid, PNG, "image/png", "p.png")).json()["file_id"]
        other = await new_session(s)
        foreign = (await upload(s, other, PNG, "image/png")).json()["file_id"]
        url = s.url.replace("http://", "ws://") + f"/api/ws/chat/{sid}"
        frames: list[dict[str, Any]] = []
        async with websockets.connect(url) as ws:

            async def read() -> None:
                async for raw in ws:
                    frames.append(json.loads(raw))

            reader = asyncio.create_task(read())
            await ws.send(
                json.dumps({"type": "user_message", "files": [foreign], "client_message_id": "c1"})
            )
            await ws.send(
                json.dumps({"type": "user_message", "files": [file_id], "client_message_id": "c2"})
            )

            def agent_message() -> dict[str, Any] | None:
                for f in frames:
                    if f["type"] == "message" and f["message"]["role"] == "agent":
                        return dict(f["message"])
                return None

            reply = await wait_until(agent_message)
            reader.cancel()
        [refused] = [f for f in frames if f["type"] == "error"]
        assert (refused["code"], refused["client_message_id"]) == ("unknown_file", "c1")
        [mine] = [
            f["message"]
            for f in frames
            if f["type"] == "message" and f["message"]["role"] == "user"
        ]
        assert mine["text"] == "" and mine["attachments"][0]["name"] == "p.png"
        assert mine["attachments"][0]["url"].startswith(s.url + "/media/")
        assert reply["attachments"][0]["url"].startswith(s.url + "/media/")
        assert [f["file_id"] for f in seen[0]["files"]] == [file_id]


async def test_the_session_answer_says_what_may_be_uploaded(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with webchat_stack(sqlite_url, tmp_path, webchat_upload_max_bytes=4096) as s:
        r = await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})
        uploads = r.json()["uploads"]
        assert uploads["enabled"] is True and uploads["max_bytes"] == 4096
        assert "application/pdf" in uploads["types"] and "image/png" in uploads["types"]


async def test_with_no_type_allowed_uploads_are_off(sqlite_url: str, tmp_path: Path) -> None:
    async with webchat_stack(sqlite_url, tmp_path, webchat_upload_types=[]) as s:
        r = await s.http.post("/api/webchat/sessions", json={"inbox_id": 1})
        assert r.json()["uploads"]["enabled"] is False
        refused = await upload(s, r.json()["session_id"], PNG, "image/png")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "uploads_disabled"
        assert await media_rows(s) == 0 and media_files(tmp_path) == []


async def test_a_file_never_sent_is_forgotten_after_a_day_and_a_sent_one_kept(
    database_url: str, tmp_path: Path
) -> None:
    async with webchat_stack(database_url, tmp_path) as s:
        sid = await new_session(s)
        sent = (await upload(s, sid, PNG, "image/png", "sent.png")).json()["file_id"]
        left = (await upload(s, sid, PDF, "application/pdf", "left.pdf")).json()["file_id"]
        r = await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"files": [sent]})
        row = await s.bridge.store.get_media(sent)
        assert row is not None and row.message_id == r.json()["message_id"]
        assert row.conversation_id == r.json()["conversation_id"]
        assert len(media_files(tmp_path)) == 2
        assert await forget_unsent_files(s.bridge) == 0  # both are new
        m = t.media
        async with s.bridge.store._tx() as conn:
            await conn.execute(
                update(m).values(created_at=m.c.created_at - UNSENT_UPLOAD_SECONDS - 1)
            )
        assert await forget_unsent_files(s.bridge) == 1
        assert await s.bridge.store.get_media(left) is None
        [kept] = media_files(tmp_path)
        assert kept.read_bytes() == PNG
        assert await s.bridge.store.get_media(sent) is not None


async def test_a_file_without_a_useful_type_is_taken_for_what_its_bytes_are(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with webchat_stack(
        sqlite_url, tmp_path, webchat_upload_types=["image/*", "application/pdf"]
    ) as s:
        sid = await new_session(s)
        pdf = await upload(s, sid, PDF, "application/octet-stream", "scan")
        assert (pdf.status_code, pdf.json()["mime"]) == (201, "application/pdf")
        png = await upload(s, sid, PNG, "image/png", "p.png")  # allowed by image/*
        assert (png.status_code, png.json()["mime"]) == (201, "image/png")
        text = await upload(s, sid, b"plain words", "application/octet-stream", "notes")
        assert text.status_code == 415  # text/plain is not on this list
        assert text.json()["error"]["details"]["mime"] == "text/plain"
        row = await s.bridge.store.get_media(pdf.json()["file_id"])
        assert row is not None and row.mime == "application/pdf" and row.name == "scan"
