"""The comms API over real sockets: threads of every channel, operator messages and take-over,
unread counts, people and linking, notes and tasks, settings, and calls transcribed by a local
OpenAI-compatible server into the thread's history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from chatbridge.store import tables as t
from chatbridge.testing.servers import serve_app
from tests.crm.fake_transcriber import create_fake_transcriber
from tests.e2e.harness import Stack, running_stack, wait_until

AUTH = {"Authorization": "Bearer test-admin-key-0123"}
CUSTOMER = {
    "id": 77,
    "name": "Asha Rao",
    "email": "asha@example.com",
    "phone_number": "+12025550143",
}


@asynccontextmanager
async def comms_stack(url: str, **kw: Any) -> AsyncIterator[Stack]:
    async with running_stack(
        url, webchat=True, admin_key="test-admin-key-0123", delay=0, **kw
    ) as s:
        s.http.headers.update(AUTH)
        yield s


async def counts(s: Stack) -> dict[str, int]:
    out = {}
    async with s.bridge.store.engine.connect() as conn:
        for table in (t.people, t.notes, t.tasks, t.call_logs, t.messages, t.deliveries):
            out[table.name] = (
                await conn.execute(select(func.count()).select_from(table))
            ).scalar_one()
        out["settings"] = (
            await conn.execute(select(func.count()).select_from(t.comms_settings))
        ).scalar_one()
    return out


async def chatwoot_thread(s: Stack, text: str = "hello", conv: int = 1, **kw: Any) -> str:
    await s.say(text, conv=conv, **kw)
    await s.wait_replies(1, conv)
    threads = (await s.http.get("/api/comms/threads", params={"channel": "chatwoot"})).json()
    return next(th["id"] for th in threads["threads"] if th["channel_key"].endswith(f":{conv}"))


async def webchat_thread(s: Stack, text: str = "hi from the web") -> str:
    r = await s.http.post("/api/webchat/sessions", json={"session_id": "visitor-1", "inbox_id": 1})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    r = await s.http.post(f"/api/webchat/sessions/{sid}/messages", json={"text": text})
    return str(r.json()["conversation_id"])


async def test_threads_of_every_channel_are_listed_filtered_and_searched(
    database_url: str,
) -> None:
    async with comms_stack(database_url) as s:
        cw = await chatwoot_thread(s, "where is my order?", sender=CUSTOMER)
        wc = await webchat_thread(s)
        await s.idle()
        r = await s.http.get("/api/comms/threads")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 2
        by_id = {th["id"]: th for th in body["threads"]}
        assert {by_id[cw]["channel"], by_id[wc]["channel"]} == {"chatwoot", "webchat"}
        assert by_id[cw]["contact"]["name"] == "Asha Rao"
        assert by_id[cw]["unlinked"] is True and by_id[cw]["person"] is None
        assert by_id[cw]["unread"] == 1
        assert by_id[cw]["last_message"]["direction"] == "out"  # the agent's echo reply

        async def ids(**params: Any) -> set[str]:
            r = await s.http.get("/api/comms/threads", params=params)
            assert r.status_code == 200, r.text
            return {th["id"] for th in r.json()["threads"]}

        assert await ids(channel="webchat") == {wc}
        assert await ids(q="asha") == {cw}
        assert await ids(q="2025550143") == {cw}
        assert await ids(q="hi from the") == {wc}  # the last message's text (webchat echo)
        assert await ids(q="100%_") == set()
        assert await ids(owner="human") == set()
        assert await ids(unread=True) == {cw, wc}
        assert await ids(unlinked=True) == {cw, wc}
        page = (await s.http.get("/api/comms/threads", params={"limit": 1})).json()
        assert len(page["threads"]) == 1 and page["total"] == 2

        # mark read: the unread count drops and comes back with the next inbound message
        assert (await s.http.post(f"/api/comms/threads/{cw}/read")).json()["unread"] == 0
        assert await ids(unread=True) == {wc}
        await s.say("one more thing", conv=1, sender=CUSTOMER)
        await s.wait_replies(2, 1)
        assert await ids(unread=True) == {cw, wc}


async def test_an_operator_message_is_sent_and_takes_the_thread_from_the_bot(
    database_url: str,
) -> None:
    async with comms_stack(database_url) as s:
        cw = await chatwoot_thread(s, "hello")
        r = await s.http.post(f"/api/comms/threads/{cw}/messages", json={"text": "Hi, Sam here"})
        assert r.status_code == 201, r.text
        assert r.json()["owner"] == "human"
        await s.wait_replies(2, 1)
        assert s.replies(1)[-1] == "Hi, Sam here"
        detail = (await s.http.get(f"/api/comms/threads/{cw}")).json()["thread"]
        assert detail["owner"] == "human"
        # the bot no longer answers: the next customer message gets no agent reply
        await s.say("thanks", conv=1)
        await s.idle()
        assert len(s.replies(1)) == 2
        messages = (await s.http.get(f"/api/comms/threads/{cw}/messages")).json()["messages"]
        assert [(m["role"], m["text"]) for m in messages][-2:] == [
            ("human", "Hi, Sam here"),
            ("contact", "thanks"),
        ]

        # hand back: the bot answers the next message again
        r = await s.http.post(f"/api/comms/threads/{cw}/owner", json={"owner": "bot"})
        assert r.json() == {"id": cw, "owner": "bot", "previous_owner": "human"}
        await s.say("are you there?", conv=1)
        await s.wait_replies(3, 1)
        r = await s.http.post(f"/api/comms/threads/{cw}/owner", json={"owner": "human"})
        assert r.json()["previous_owner"] == "bot"
        assert (await s.http.get("/api/comms/threads", params={"owner": "human"})).json()[
            "total"
        ] == 1


async def test_an_operator_message_reaches_a_webchat_thread(sqlite_url: str) -> None:
    async with comms_stack(sqlite_url) as s:
        wc = await webchat_thread(s)
        await s.idle()
        r = await s.http.post(f"/api/comms/threads/{wc}/messages", json={"text": "a human"})
        assert r.status_code == 201, r.text
        await s.idle()
        r = await s.http.get("/api/webchat/sessions/visitor-1/messages")
        assert "a human" in [m["text"] for m in r.json()["messages"]]


async def test_people_crud_linking_notes_and_tasks(database_url: str) -> None:
    async with comms_stack(database_url) as s:
        cw = await chatwoot_thread(s, "hello", sender=CUSTOMER)
        # a person with the contact's phone (another way of writing it) links the thread
        r = await s.http.post(
            "/api/comms/people",
            json={"name": "Asha Rao", "phone": "(202) 555-0143", "company": "Acme"},
        )
        assert r.status_code == 201, r.text
        person = r.json()["person"]
        assert person["phone"] == "+12025550143" and r.json()["linked_threads"] == 1
        th = (await s.http.get(f"/api/comms/threads/{cw}")).json()["thread"]
        assert th["person"]["company"] == "Acme" and th["linked_by"] == "auto"
        assert th["unlinked"] is False

        dup = await s.http.post("/api/comms/people", json={"name": "X", "phone": "+12025550143"})
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "phone_taken"

        note = await s.http.post(f"/api/comms/threads/{cw}/notes", json={"text": "VIP"})
        assert note.status_code == 201 and note.json()["note"]["person_id"] == person["id"]
        task = await s.http.post(
            f"/api/comms/threads/{cw}/tasks", json={"title": "call back", "due_at": 2e9}
        )
        assert task.status_code == 201, task.text
        task_id = task.json()["task"]["id"]
        done = await s.http.patch(f"/api/comms/tasks/{task_id}", json={"done": True})
        assert done.json()["task"]["done"] is True

        full = (await s.http.get(f"/api/comms/people/{person['id']}")).json()["person"]
        assert full["threads"] == [cw]
        assert [n["text"] for n in full["notes"]] == ["VIP"]
        assert [x["done"] for x in full["tasks"]] == [True]

        # unlink by hand: stays unlinked (auto-linking leaves it alone); link again by hand
        r = await s.http.delete(f"/api/comms/threads/{cw}/link-person")
        assert r.json()["linked_by"] == "unlinked"
        await s.say("again", conv=1, sender=CUSTOMER)
        await s.wait_replies(2, 1)
        assert (await s.http.get(f"/api/comms/threads/{cw}")).json()["thread"]["unlinked"]
        r = await s.http.post(
            f"/api/comms/threads/{cw}/link-person", json={"person_id": person["id"]}
        )
        assert r.json()["linked_by"] == "operator"

        found = (await s.http.get("/api/comms/people", params={"q": "asha"})).json()
        assert [p["id"] for p in found["people"]] == [person["id"]]
        r = await s.http.patch(f"/api/comms/people/{person['id']}", json={"name": "Asha R."})
        assert r.json()["person"]["name"] == "Asha R."
        assert (await s.http.delete(f"/api/comms/people/{person['id']}")).status_code == 200
        assert (await s.http.get(f"/api/comms/people/{person['id']}")).status_code == 404
        th = (await s.http.get(f"/api/comms/threads/{cw}")).json()["thread"]
        assert th["unlinked"] is True and [n["text"] for n in th["notes"]] == ["VIP"]


async def test_a_new_thread_is_auto_linked_by_phone_unless_the_setting_is_off(
    sqlite_url: str,
) -> None:
    async with comms_stack(sqlite_url) as s:
        r = await s.http.post("/api/comms/people", json={"name": "Asha", "phone": "2025550143"})
        assert r.json()["linked_threads"] == 0
        cw = await chatwoot_thread(s, "hello", sender=CUSTOMER)
        th = (await s.http.get(f"/api/comms/threads/{cw}")).json()["thread"]
        assert th["person"]["name"] == "Asha"

        r = await s.http.patch("/api/comms/settings", json={"auto_link": False})
        assert r.status_code == 200, r.text
        other = {**CUSTOMER, "id": 78}
        cw2 = await chatwoot_thread(s, "hello", conv=2, sender=other)
        th2 = (await s.http.get(f"/api/comms/threads/{cw2}")).json()["thread"]
        assert th2["unlinked"] is True


async def test_settings_hide_secrets_and_store_only_changes(database_url: str) -> None:
    async with comms_stack(database_url) as s:
        r = await s.http.get("/api/comms/settings")
        view = r.json()["settings"]
        assert view["transcription_api_key"] is None and view["transcription_api_key_set"] is False
        r = await s.http.patch(
            "/api/comms/settings",
            json={"transcription_api_key": "sk-secret", "default_country": "IN", "auto_link": True},
        )
        assert r.status_code == 200, r.text
        assert "sk-secret" not in r.text
        assert r.json()["settings"]["transcription_api_key_set"] is True
        assert r.json()["changed"] == ["default_country", "transcription_api_key"]
        assert (await counts(s))["settings"] == 2
        # the mask sent back changes nothing
        r = await s.http.patch("/api/comms/settings", json={"transcription_api_key": "********"})
        assert r.json()["changed"] == [] and s.bridge.comms_settings().transcription_api_key
        # a national number is now read as Indian
        r = await s.http.post("/api/comms/people", json={"name": "Ravi", "phone": "098765 43210"})
        assert r.json()["person"]["phone"] == "+919876543210"

        before = await counts(s)
        for bad in (
            {"default_country": "India"},
            {"transcription_provider": "whisperx"},
            {"no_such_setting": 1},
            {"default_inbox_id": -1},
        ):
            r = await s.http.patch("/api/comms/settings", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["error"]["code"] == "invalid_request"
        assert await counts(s) == before
        assert "sk-secret" not in (await s.http.get("/api/comms/settings")).text


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/api/comms/people", {"name": "A", "phone": "12"}, 422, "invalid_phone"),
        ("POST", "/api/comms/people", {"name": ""}, 422, "invalid_request"),
        ("POST", "/api/comms/people", {"name": "A", "phone": "+1 202 555 0143 ext"}, 422, None),
        ("POST", "/api/comms/people", {"name": "A", "extra": 1}, 422, "invalid_request"),
        ("POST", "/api/comms/threads/c_nope/notes", {"text": "x"}, 404, "not_found"),
        ("POST", "/api/comms/threads/c_nope/tasks", {"title": "x"}, 404, "not_found"),
        ("POST", "/api/comms/threads/c_nope/messages", {"text": "x"}, 404, "not_found"),
        ("POST", "/api/comms/threads/c_nope/owner", {"owner": "robot"}, 422, "invalid_request"),
        ("POST", "/api/comms/threads/bad%20id/read", None, 422, "invalid_request"),
        ("PATCH", "/api/comms/tasks/tk_nope", {"done": True}, 404, "not_found"),
        ("POST", "/api/comms/calls", {"direction": "sideways"}, 422, "invalid_request"),
        ("POST", "/api/comms/calls", {"direction": "inbound", "phone": "abc"}, 422, None),
        (
            "POST",
            "/api/comms/calls",
            {"direction": "inbound", "recording_url": "file:///etc/passwd"},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/api/comms/calls",
            {"direction": "inbound", "recording_url": "http://x/a.mp3", "transcribe": True},
            409,
            "transcription_off",
        ),
        ("POST", "/api/comms/calls", {"direction": "inbound", "conversation_id": "c_x"}, 404, None),
        ("POST", "/api/comms/recordings/transcribe", {"call_id": "cl_nope"}, 409, None),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    sqlite_url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int | None,
    code: str | None,
) -> None:
    async with comms_stack(sqlite_url) as s:
        before = await counts(s)
        r = await s.http.request(method, path, json=body)
        assert 400 <= r.status_code < 500, r.text
        if status is not None:
            assert r.status_code == status, r.text
        if code is not None:
            assert r.json()["error"]["code"] == code, r.text
        assert r.json()["error"]["message"]
        assert await counts(s) == before


async def test_the_comms_api_needs_the_admin_key(sqlite_url: str) -> None:
    async with comms_stack(sqlite_url) as s:
        for method, path in (
            ("GET", "/api/comms/threads"),
            ("GET", "/api/comms/settings"),
            ("PATCH", "/api/comms/settings"),
            ("POST", "/api/comms/people"),
            ("POST", "/api/comms/calls/upload"),
        ):
            r = await s.http.request(method, path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401, (method, path, r.text)


async def test_an_uploaded_call_is_transcribed_into_the_thread(
    database_url: str, tmp_path: Path
) -> None:
    fake_app = create_fake_transcriber()
    async with serve_app(fake_app) as fake_url, comms_stack(database_url) as s:
        cw = await chatwoot_thread(s, "call me", sender=CUSTOMER)
        person = (
            await s.http.post("/api/comms/people", json={"name": "Asha", "phone": "+12025550143"})
        ).json()["person"]
        r = await s.http.patch(
            "/api/comms/settings",
            json={
                "transcription_provider": "openai",
                "transcription_base_url": f"{fake_url}/v1",
                "transcription_api_key": "sk-test",
                "recordings_dir": str(tmp_path / "rec"),
            },
        )
        assert r.json()["transcription"]["available"] is True
        r = await s.http.post(
            "/api/comms/calls/upload",
            data={
                "direction": "inbound",
                "conversation_id": cw,
                "duration_seconds": "75",
                "phone": "202-555-0143",
            },
            files={"file": ("call.MP3", b"ID3 fake mp3 bytes", "audio/mpeg")},
        )
        assert r.status_code == 201, r.text
        call = r.json()["call"]
        assert call["person_id"] == person["id"] and call["phone"] == "+12025550143"
        assert call["transcript_status"] == "queued"
        assert (
            await asyncio.to_thread(Path(call["recording_path"]).read_bytes)
            == b"ID3 fake mp3 bytes"
        )
        assert call["recording_path"].endswith(".mp3")

        async def transcribed() -> dict[str, Any] | None:
            c = (await s.http.get(f"/api/comms/calls/{call['id']}")).json()["call"]
            return c if c["transcript_status"] == "done" else None

        done = await wait_until(transcribed)
        assert done["transcript"] == "hello from a 18-byte call"
        fake = fake_app.state.fake
        assert fake.requests[0]["auth"] == "Bearer sk-test"
        assert fake.requests[0]["model"] == "whisper-1"
        messages = (await s.http.get(f"/api/comms/threads/{cw}/messages")).json()["messages"]
        note = messages[-1]
        assert note["role"] == "system" and note["direction"] == "note"
        assert note["text"].startswith("Call transcript (inbound, +12025550143, 1:15)")
        assert "hello from a 18-byte call" in note["text"]
        # a system note is never sent to the customer
        assert "hello from a 18-byte call" not in " ".join(s.replies())

        # a call registered by URL: the provider downloads the recording; retried after a 503
        fake.fail_next = 1
        r = await s.http.post(
            "/api/comms/calls",
            json={
                "direction": "outbound",
                "person_id": person["id"],
                "recording_url": f"{fake_url}/recordings/b.mp3",
            },
        )
        assert r.status_code == 201 and r.json()["call"]["transcript_status"] == "queued"
        url_call = r.json()["call"]["id"]

        async def url_done() -> bool:
            c = (await s.http.get(f"/api/comms/calls/{url_call}")).json()["call"]
            return c["transcript_status"] == "done" and c["attempts"] == 2

        await wait_until(url_done)
        calls = (await s.http.get(f"/api/comms/people/{person['id']}/calls")).json()["calls"]
        assert {c["id"] for c in calls} == {call["id"], url_call}
        thread_calls = (await s.http.get(f"/api/comms/threads/{cw}/calls")).json()["calls"]
        assert [c["id"] for c in thread_calls] == [call["id"]]

        # a missing recording fails for good, visibly; a re-queue is refused while busy
        r = await s.http.post(
            "/api/comms/calls",
            json={"direction": "inbound", "recording_url": f"{fake_url}/recordings/missing.mp3"},
        )
        missing = r.json()["call"]["id"]

        async def failed() -> dict[str, Any] | None:
            c = (await s.http.get(f"/api/comms/calls/{missing}")).json()["call"]
            return c if c["transcript_status"] == "failed" else None

        assert "HTTP 404" in (await wait_until(failed))["transcript_error"]
        r = await s.http.post("/api/comms/recordings/transcribe", json={"call_id": missing})
        assert r.status_code == 202, r.text
        assert r.json()["call"]["transcript_status"] == "queued"
        await wait_until(failed)


async def test_recordings_have_a_body_limit_of_their_own(sqlite_url: str, tmp_path: Path) -> None:
    big = b"x" * (2 * 1024 * 1024)  # over the app's 1 MiB request limit
    async with comms_stack(sqlite_url) as s:
        r = await s.http.patch("/api/comms/settings", json={"recordings_dir": str(tmp_path)})
        assert r.status_code == 200, r.text
        r = await s.http.post(
            "/api/comms/calls/upload",
            data={"direction": "inbound"},
            files={"file": ("big.wav", big, "audio/wav")},
        )
        assert r.status_code == 201, r.text
        assert r.json()["call"]["transcript_status"] == "none"  # no provider: not queued
        saved = Path(r.json()["call"]["recording_path"])
        assert (await asyncio.to_thread(saved.stat)).st_size == len(big)
        assert saved.parent == tmp_path
        # elsewhere the app's limit holds
        r = await s.http.post("/api/comms/people", content=big)
        assert r.status_code == 413

        before = await counts(s)
        r = await s.http.post(
            "/api/comms/calls/upload",
            data={"direction": "inbound"},
            files={"file": ("a.wav", b"", "audio/wav")},
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert await counts(s) == before
