"""Operator accounts over real sockets, on SQLite and PostgreSQL: passwords stored as argon2id
hashes only, login by email and password, roles, assignment, attribution, private notes,
canned replies and the audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from chatbridge.api.operator_shapes import (
    AuditPage,
    CannedReplies,
    CannedReplyOne,
    MeOut,
    OperatorsOut,
)
from chatbridge.store import tables as t
from chatbridge.testing.chatwoot_state import TriggerRequest
from tests.e2e.harness import Stack, wait_until
from tests.operators.rig import ADA, BOB, chatwoot_thread, create, login, operators_stack


async def _hashes(s: Stack) -> dict[str, str | None]:
    async with s.bridge.store.engine.connect() as conn:
        rows = (await conn.execute(select(t.operators.c.email, t.operators.c.password_hash))).all()
    return {r.email: r.password_hash for r in rows}


async def _audit(s: Stack) -> list[dict[str, Any]]:
    r = await s.http.get("/api/audit")
    assert r.status_code == 200, r.text
    AuditPage.model_validate(r.json(), strict=True)  # as the OpenAPI document says
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


async def test_passwords_are_stored_hashed_and_operators_log_in_by_email(
    database_url: str,
) -> None:
    async with operators_stack(database_url) as s:
        made = await create(s, ADA)
        assert "password" not in made and "password_hash" not in made
        assert made["status"] == "active"
        stored = (await _hashes(s))[ADA["email"]]
        assert stored is not None and stored.startswith("$argon2id$")
        assert ADA["password"] not in stored

        ada = await login(s, "ADA@example.com", ADA["password"])  # emails are case-blind
        me = MeOut.model_validate((await ada.get("/api/operators/me")).json()).model_dump()[
            "operator"
        ]
        assert (me["id"], me["name"], me["role"], me["via"]) == (
            made["id"],
            "Ada Admin",
            "admin",
            "session",
        )

        wrong = await s.http.post(
            "/console/login", json={"email": ADA["email"], "password": "not-her-password"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        assert "password" in wrong.json()["error"]["message"]
        nobody = await s.http.post(
            "/console/login", json={"email": "nobody@example.com", "password": "whatever-123"}
        )
        assert nobody.status_code == 401
        assert nobody.json() == wrong.json()  # no hint which emails have accounts

        short = await s.http.post("/api/operators", json={**BOB, "password": "short"})
        assert short.status_code == 422
        assert "10 characters" in short.json()["error"]["message"]
        taken = await s.http.post("/api/operators", json={**BOB, "email": ADA["email"]})
        assert taken.status_code == 409
        # a value PostgreSQL cannot hold is the request's fault, never a 500
        nul = await s.http.post("/api/operators", json={**BOB, "name": "Bob\u0000"})
        assert nul.status_code in (201, 400), nul.text
        nul = await s.http.post("/console/login", json={"email": "a\u0000@b", "password": "x"})
        assert nul.status_code in (400, 401), nul.text

        entries = [e for e in await _audit(s) if e["target"] == made["id"]]
        assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
            ("operator.create", made["id"], "admin key")
        ]
        assert entries[0]["details"] == {"email": ADA["email"], "role": "admin", "invited": False}


async def test_an_agent_role_operator_is_refused_the_admin_screens(database_url: str) -> None:
    async with operators_stack(database_url) as s:
        await create(s, BOB)
        bob = await login(s, BOB["email"], BOB["password"])
        refused = [
            await bob.get("/config/mappings"),
            await bob.put("/config/mappings/1", json={"inbox_id": 1, "agent_id": "x"}),
            await bob.get("/api/comms/settings"),
            await bob.patch("/api/comms/settings", json={"default_country": "IN"}),
            await bob.post("/api/operators", json={**BOB, "email": "eve@example.com"}),
            await bob.post("/dead-letters/1/retry"),
            await bob.post("/dead-letters/1/discard"),
            await bob.get("/api/audit"),
        ]
        for r in refused:
            assert r.status_code == 403, (r.request.url, r.text)
            assert r.json()["error"]["code"] == "forbidden"
            assert "agent role" in r.json()["error"]["message"]
        # what a team member needs stays open
        for path in ("/api/comms/threads", "/dead-letters", "/api/operators", "/agents/status"):
            assert (await bob.get(path)).status_code == 200, path
        team = OperatorsOut.model_validate((await bob.get("/api/operators")).json())
        assert [o.email for o in team.operators] == [None]  # an agent sees names, not emails
        # nothing was changed, so nothing was audited
        assert await _audit(s) == [e for e in await _audit(s) if e["action"] == "operator.create"]
        assert len(await _audit(s)) == 1


async def test_messages_notes_and_owner_changes_name_their_operator(database_url: str) -> None:
    async with operators_stack(database_url) as s:
        ada_row = await create(s, ADA)
        bob_row = await create(s, BOB)
        ada = await login(s, ADA["email"], ADA["password"])
        bob = await login(s, BOB["email"], BOB["password"])
        cw = await chatwoot_thread(s, "hello")
        base = f"/api/comms/threads/{cw}"

        async def view(c: Any, name: str) -> list[str]:
            r = await c.get("/api/comms/threads", params={"view": name})
            assert r.status_code == 200, r.text
            return [th["id"] for th in r.json()["threads"]]

        assert await view(bob, "unassigned") == [cw]
        assert await view(bob, "mine") == []
        r = await bob.post(f"{base}/assignee", json={"operator_id": "me"})
        assert r.status_code == 200, r.text
        assert r.json()["assignee"]["id"] == bob_row["id"]
        assert await view(bob, "mine") == [cw]
        assert await view(ada, "mine") == []
        assert await view(ada, "unassigned") == []
        assert await view(ada, "all") == [cw]
        listed = (await ada.get("/api/comms/threads")).json()["threads"][0]
        assert listed["assignee"] == {"id": bob_row["id"], "name": "Bob Agent"}

        # Bob answers: Chatwoot gets the text as the bridge sends it today
        r = await bob.post(f"{base}/messages", json={"text": "Hi, Bob here"})
        assert r.status_code == 201, r.text
        await s.wait_replies(2, 1)
        assert s.replies(1)[-1] == "Hi, Bob here"
        r = await bob.post(f"{base}/private-notes", json={"text": "VIP, refund approved"})
        assert r.status_code == 201, r.text
        assert (await ada.post(f"{base}/owner", json={"owner": "bot"})).status_code == 200
        await s.idle()
        assert "VIP, refund approved" not in [m["content"] for m in s.mock.received_messages]

        messages = (await ada.get(f"{base}/messages")).json()["messages"]
        mine = [
            (m["role"], m["text"], m["meta"].get("operator_name"), m["meta"].get("operator_id"))
            for m in messages
            if m["meta"].get("operator_id")
        ]
        assert mine == [
            (
                "note",
                "Bob Agent assigned the conversation to themselves",
                "Bob Agent",
                bob_row["id"],
            ),
            ("human", "Hi, Bob here", "Bob Agent", bob_row["id"]),
            ("note", "VIP, refund approved", "Bob Agent", bob_row["id"]),
            ("note", "Ada Admin handed back to the bot", "Ada Admin", ada_row["id"]),
        ]
        # the agent is never told about notes: its history has the customer and replies only
        exchanged = await s.bridge.store.thread_messages(cw, limit=50)
        assert exchanged is not None

        r = await ada.post(f"{base}/assignee", json={"operator_id": None})
        assert r.json()["assignee"] is None
        assert await view(bob, "unassigned") == [cw]
        unknown = await ada.post(f"{base}/assignee", json={"operator_id": "op_NOPE"})
        assert unknown.status_code == 422
        missing = await ada.post("/api/comms/threads/c_nope/private-notes", json={"text": "x"})
        assert missing.status_code == 404


async def test_a_new_role_or_password_ends_the_old_sessions_and_changes_are_audited(
    database_url: str,
) -> None:
    async with operators_stack(database_url) as s:
        ada_row = await create(s, ADA)
        bob_row = await create(s, BOB)
        ada = await login(s, ADA["email"], ADA["password"])
        bob = await login(s, BOB["email"], BOB["password"])
        r = await ada.patch(f"/api/operators/{bob_row['id']}", json={"role": "admin"})
        assert r.status_code == 200, r.text
        assert (await bob.get("/api/operators/me")).status_code == 401  # log in again
        bob = await login(s, BOB["email"], BOB["password"])
        assert (await bob.get("/api/operators/me")).json()["operator"]["role"] == "admin"
        # nobody takes their own admin role (or account) away
        own = await ada.patch(f"/api/operators/{ada_row['id']}", json={"active": False})
        assert own.status_code == 422
        r = await bob.patch(f"/api/operators/{ada_row['id']}", json={"password": "new-pass-0123"})
        assert r.status_code == 200
        assert (await ada.get("/api/operators/me")).status_code == 401
        old = await s.http.post(
            "/console/login", json={"email": ADA["email"], "password": ADA["password"]}
        )
        assert old.status_code == 401
        ada = await login(s, ADA["email"], "new-pass-0123")
        # her own password: the current one is asked again; her sessions end
        own = {"current_password": "not-it-0123", "new_password": "own-pass-0123"}
        wrong = await ada.post("/api/operators/me/password", json=own)
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "wrong_password")
        own["current_password"] = "new-pass-0123"
        assert (await ada.post("/api/operators/me/password", json=own)).status_code == 200
        assert (await ada.get("/api/operators/me")).status_code == 401
        await login(s, ADA["email"], "own-pass-0123")
        keyed = await s.http.post("/api/operators/me/password", json=own)
        assert keyed.status_code == 422  # the admin key has no password of its own
        r = await bob.patch(f"/api/operators/{ada_row['id']}", json={"active": False})
        gone = await s.http.post(
            "/console/login", json={"email": ADA["email"], "password": "own-pass-0123"}
        )
        assert gone.status_code == 401

        entries = await _audit(s)
        said = [(e["action"], e["actor"], e["details"]) for e in reversed(entries)]
        assert said[2:] == [
            ("operator.change", "Ada Admin <ada@example.com>", {"role": "admin"}),
            ("operator.change", "Bob Agent <bob@example.com>", {"password": "changed"}),
            ("operator.change", "Bob Agent <bob@example.com>", {"active": False}),
        ]
        assert all("pass-0123" not in str(e) for e in entries)


async def test_admin_actions_on_routes_settings_and_dead_letters_are_audited(
    sqlite_url: str,
) -> None:
    async with operators_stack(sqlite_url) as s:
        await create(s, ADA)
        ada = await login(s, ADA["email"], ADA["password"])
        route = {
            "inbox_id": 3,
            "agent_config": {
                "agent_id": "agent1",
                "websocket_url": f"ws://127.0.0.1:{s.agent_port}",
                "timeout_seconds": 5,
            },
        }
        r = await ada.put("/config/mappings/3", json=route)
        assert r.status_code in (200, 201), r.text
        r = await ada.patch("/api/comms/settings", json={"default_country": "IN"})
        assert r.status_code == 200, r.text
        assert (await ada.post("/dead-letters/999/retry")).status_code == 404  # not audited
        r = await ada.delete(f"/config/mappings/{route['inbox_id']}")
        assert r.status_code == 200, r.text

        # a reply Chatwoot refuses (404: the conversation is gone) dead-letters; Ada retries it
        payload, _ = s.mock.build_event(
            "message_created", TriggerRequest(conversation_id=7, content="lost", inbox_id=1)
        )
        conversation = s.mock.conversations.pop(7)
        assert (await s.http.post("/webhook/chatwoot", json=payload)).status_code == 200

        async def dead_letters() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = (await ada.get("/dead-letters")).json()["dead_letters"]
            return listed

        [dead] = await wait_until(dead_letters)
        s.mock.conversations[7] = conversation
        assert (await ada.post(f"/dead-letters/{dead['id']}/retry")).status_code == 200

        entries = list(reversed(await _audit(s)))
        assert [(e["action"], e["target"], e["details"]) for e in entries] == [
            ("operator.create", entries[0]["target"], entries[0]["details"]),
            ("route.save", "chatwoot:3", {"agent_id": "agent1", "reply_mode": "async"}),
            ("settings.change", None, {"changed": ["default_country"]}),
            ("route.delete", "chatwoot:3", {}),
            ("dead_letter.retry", str(dead["id"]), {}),
        ]
        assert {e["actor"] for e in entries[1:]} == {"Ada Admin <ada@example.com>"}
        only = (await ada.get("/api/audit", params={"action": "route."})).json()
        assert only["total"] == 2


async def test_canned_replies_are_an_operators_own_or_shared_by_an_admin(sqlite_url: str) -> None:
    async with operators_stack(sqlite_url) as s:
        await create(s, ADA)
        await create(s, BOB)
        ada = await login(s, ADA["email"], ADA["password"])
        bob = await login(s, BOB["email"], BOB["password"])
        r = await ada.post(
            "/api/canned-replies", json={"shortcut": "hours", "text": "9 to 5", "shared": True}
        )
        assert r.status_code == 201, r.text
        shared_id = r.json()["canned_reply"]["id"]
        r = await bob.post("/api/canned-replies", json={"shortcut": "thanks", "text": "Thanks!"})
        assert r.status_code == 201, r.text
        bobs = r.json()["canned_reply"]["id"]
        assert (
            await bob.post("/api/canned-replies", json={"shortcut": "hours", "text": "x"})
        ).status_code == 409
        assert (
            await bob.post(
                "/api/canned-replies", json={"shortcut": "x", "text": "y", "shared": True}
            )
        ).status_code == 403
        assert (
            await bob.patch(f"/api/canned-replies/{shared_id}", json={"text": "no"})
        ).status_code == 403
        assert (await bob.delete(f"/api/canned-replies/{shared_id}")).status_code == 403

        def shortcuts(r: Any) -> list[str]:
            return [c.shortcut for c in CannedReplies.model_validate(r.json()).canned_replies]

        assert shortcuts(await bob.get("/api/canned-replies")) == ["hours", "thanks"]
        assert shortcuts(await ada.get("/api/canned-replies")) == ["hours"]
        assert shortcuts(await ada.get("/api/canned-replies", params={"everyone": True})) == [
            "hours",
            "thanks",
        ]
        r = await bob.patch(f"/api/canned-replies/{bobs}", json={"text": "Thank you!"})
        assert CannedReplyOne.model_validate(r.json()).canned_reply.text == "Thank you!"
        assert (await ada.delete(f"/api/canned-replies/{bobs}")).status_code == 200
        bad = await bob.post("/api/canned-replies", json={"shortcut": "Has Space", "text": "x"})
        assert bad.status_code == 422


async def test_wrong_passwords_spend_the_addresss_budget(sqlite_url: str) -> None:
    async with operators_stack(sqlite_url, auth_failure_limit="3/minute") as s:
        await create(s, ADA)
        for _ in range(3):
            r = await s.http.post(
                "/console/login", json={"email": ADA["email"], "password": "wrong-password"}
            )
            assert r.status_code == 401
        r = await s.http.post(
            "/console/login", json={"email": ADA["email"], "password": ADA["password"]}
        )
        assert r.status_code == 429  # even the right password, once the budget is spent
        assert int(r.headers["Retry-After"]) > 0
        assert r.json()["error"]["code"] == "rate_limited"


async def test_an_invited_operator_chooses_a_password_once(sqlite_url: str) -> None:
    async with operators_stack(sqlite_url) as s:
        r = await s.http.post(
            "/api/operators", json={"email": "cy@example.com", "name": "Cy", "role": "agent"}
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["operator"]["status"] == "invited"
        token = body["invite_url"].split("token=", 1)[1]
        assert (await _hashes(s))["cy@example.com"] is None
        # no password yet: nothing logs in
        r = await s.http.post("/console/login", json={"email": "cy@example.com", "password": ""})
        assert r.status_code == 401
        page = await s.http.get("/console/invitation", params={"token": token})
        assert page.status_code == 200 and "Welcome, Cy" in page.text
        weak = await s.http.post("/console/invitation", json={"token": token, "password": "x"})
        assert weak.status_code == 422
        r = await s.http.post(
            "/console/invitation", json={"token": token, "password": "cy-pass-0123"}
        )
        assert r.status_code == 200, r.text
        await login(s, "cy@example.com", "cy-pass-0123")
        again = await s.http.post(
            "/console/invitation", json={"token": token, "password": "cy-pass-4567"}
        )
        assert again.status_code == 404
        assert (await s.http.get("/console/invitation", params={"token": token})).status_code == 404


async def test_web_chat_visitors_see_the_operators_name(sqlite_url: str) -> None:
    async with operators_stack(sqlite_url, webchat=True) as s:
        await create(s, BOB)
        bob = await login(s, BOB["email"], BOB["password"])
        r = await s.http.post(
            "/api/webchat/sessions", json={"session_id": "visitor-1", "inbox_id": 1}
        )
        assert r.status_code == 200, r.text
        r = await s.http.post("/api/webchat/sessions/visitor-1/messages", json={"text": "hi"})
        thread = str(r.json()["conversation_id"])
        await s.idle()
        r = await bob.post(f"/api/comms/threads/{thread}/messages", json={"text": "Bob here"})
        assert r.status_code == 201, r.text
        await s.idle()
        history = (await s.http.get("/api/webchat/sessions/visitor-1/messages")).json()["messages"]
        (mine,) = [m for m in history if m["text"] == "Bob here"]
        assert (mine["role"], mine["sender_name"]) == ("human", "Bob Agent")
        assert all(m.get("sender_name") is None for m in history if m["role"] != "human")
