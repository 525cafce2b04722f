"""Live status over real sockets, on SQLite and PostgreSQL: an agent's status and progress
reach the web chat visitor's socket in the widget's frame shapes and the console's live
endpoint while the turn runs; the reply (or a turn ending without one) clears both; none of
it is stored. Notices reach the visitor as system messages; rich data rides the message."""

from __future__ import annotations

from typing import Any

from tests.api.test_webchat_native import live_socket, new_session
from tests.e2e.harness import Stack, running_stack, wait_until
from tests.live.rig import Turn, scripted_agent


async def live_of(s: Stack, conversation_id: str) -> Any:
    r = await s.http.get(f"/conversations/{conversation_id}/live")
    assert r.status_code == 200, r.text
    assert r.json()["conversation_id"] == conversation_id
    return r.json()["live"]


async def test_status_and_progress_show_live_and_the_reply_clears_them(database_url: str) -> None:
    async def script(turn: Turn) -> None:
        await turn.send({"type": "status_update", "content": "Searching your orders…"})
        await turn.send({"type": "progress_update", "progress": 0.4})
        await turn.gate("reply")
        await turn.send({"type": "agent_message", "content": "Found order A-17"})

    async with (
        scripted_agent(script) as agent,
        running_stack(database_url, webchat=True, agent_port=agent.port) as s,
    ):
        session = await new_session(s)
        async with live_socket(s, session["session_id"]) as c:
            await c.send({"type": "user_message", "content": "where is my order"})
            await wait_until(lambda: c.of("progress_update"))
            [turn] = agent.turns
            conv = turn.frame["conversation_id"]
            assert c.of("status_update") == [
                {"type": "status_update", "turn_id": turn.key, "content": "Searching your orders…"}
            ]
            assert c.of("progress_update") == [
                {"type": "progress_update", "turn_id": turn.key, "progress": 0.4}
            ]
            live = await live_of(s, conv)
            assert live.pop("updated_at") > 0
            assert live == {
                "agent_id": "agent1",
                "turn_id": turn.key,
                "content": "Searching your orders…",
                "progress": 0.4,
            }

            agent.gates.open("reply")
            await wait_until(lambda: c.texts("agent") == ["Found order A-17"])
            await wait_until(lambda: c.of("status_clear"))
            assert c.of("status_clear") == [{"type": "status_clear", "turn_id": turn.key}]
            assert await live_of(s, conv) is None
        # live only: nothing of it is a message
        rows = await s.bridge.store.list_messages(conv)
        assert [(m.author, m.text) for m in rows] == [
            ("contact", "where is my order"),
            ("agent", "Found order A-17"),
        ]
        assert agent.errors == []


async def test_a_turn_ending_without_a_reply_clears_its_status_and_late_frames_stay_out(
    sqlite_url: str,
) -> None:
    async def script(turn: Turn) -> None:
        await turn.send({"type": "status_update", "content": "Thinking"})
        await turn.gate("end")
        await turn.send({"type": "no_reply"})
        await turn.gate("late")
        # too late: the turn is over (named by its conversation, as outside a turn)
        await turn.say({"type": "status_update", "message_id": turn.key, "content": "Late"})
        await turn.say({"type": "typing", "on": True})  # a marker the socket does show

    async with (
        scripted_agent(script) as agent,
        running_stack(sqlite_url, webchat=True, agent_port=agent.port) as s,
    ):
        session = await new_session(s)
        async with live_socket(s, session["session_id"]) as c:
            await c.send({"type": "user_message", "content": "ok thanks"})
            await wait_until(lambda: c.of("status_update"))
            [turn] = agent.turns
            conv = turn.frame["conversation_id"]
            assert (await live_of(s, conv))["content"] == "Thinking"
            agent.gates.open("end")
            await wait_until(lambda: c.of("status_clear"))
            assert c.of("status_clear") == [{"type": "status_clear", "turn_id": turn.key}]
            assert await live_of(s, conv) is None
            agent.gates.open("late")
            await wait_until(lambda: [f for f in c.of("typing") if f["on"]])
            assert [f["content"] for f in c.of("status_update")] == ["Thinking"]
            assert await live_of(s, conv) is None


async def test_file_events_reach_the_widget(sqlite_url: str) -> None:
    async def script(turn: Turn) -> None:
        await turn.send({"type": "file_processing", "file_id": "f_1", "content": "Reading"})
        await turn.send({"type": "file_error", "file_id": "f_2", "error": "unreadable"})
        await turn.send({"type": "agent_message", "content": "done"})

    async with (
        scripted_agent(script) as agent,
        running_stack(sqlite_url, webchat=True, agent_port=agent.port) as s,
    ):
        session = await new_session(s)
        async with live_socket(s, session["session_id"]) as c:
            await c.send({"type": "user_message", "content": "see file"})
            await wait_until(lambda: c.texts("agent") == ["done"])
            assert c.of("file_processing") == [
                {"type": "file_processing", "file_id": "f_1", "content": "Reading"}
            ]
            assert c.of("file_error") == [
                {"type": "file_error", "file_id": "f_2", "error": "unreadable"}
            ]
        assert agent.errors == []


async def test_notices_and_rich_data_reach_the_visitor_in_the_message_view(
    database_url: str,
) -> None:
    quick = {"kind": "quick_replies", "options": [{"title": "Yes"}, {"title": "No"}]}

    async def script(turn: Turn) -> None:
        await turn.say({"type": "system_message", "content": "Assistant in test mode"})
        await turn.say({"type": "warning_message", "content": "Deliveries are late"})
        await turn.send({"type": "agent_message", "content": "Go on?", "data": quick})

    async with (
        scripted_agent(script) as agent,
        running_stack(database_url, webchat=True, agent_port=agent.port) as s,
    ):
        session = await new_session(s)
        async with live_socket(s, session["session_id"]) as c:
            await c.send({"type": "user_message", "content": "hi"})
            await wait_until(lambda: c.texts("agent") == ["Go on?"])
            await wait_until(lambda: len(c.texts("system")) == 2)
            views = [f["message"] for f in c.of("message")]
            notices = [(v["text"], v.get("notice")) for v in views if v["role"] == "system"]
            assert notices == [
                ("Assistant in test mode", "system"),
                ("Deliveries are late", "warning"),
            ]
            [reply] = [v for v in views if v["role"] == "agent"]
            assert reply["data"] == quick
            assert "notice" not in reply
        conv = agent.turns[0].frame["conversation_id"]
        rows = await s.bridge.store.list_messages(conv)
        stored = [(m.author, m.direction, m.meta) for m in rows if m.author == "system"]
        assert stored == [
            ("system", "out", {"notice": "system", "agent_id": "agent1"}),
            ("system", "out", {"notice": "warning", "agent_id": "agent1"}),
        ]
        [answer] = [m for m in rows if m.author == "agent"]
        assert answer.meta["data"] == quick and answer.meta["agent_id"] == "agent1"
        # the widget's history endpoint carries the same
        r = await s.http.get(f"/api/webchat/sessions/{session['session_id']}/messages")
        assert r.status_code == 200, r.text
        kinds = [m.get("notice") for m in r.json()["messages"] if m["role"] == "system"]
        assert kinds == ["system", "warning"]


async def test_the_live_endpoint_names_an_unknown_conversation(sqlite_url: str) -> None:
    async with running_stack(sqlite_url) as s:
        r = await s.http.get("/conversations/c_nope/live")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await s.http.get("/conversations/bad%20id!/live")
        assert r.status_code == 422, r.text


async def test_an_agent_cannot_speak_into_another_agents_conversation(sqlite_url: str) -> None:
    async def script(turn: Turn) -> None:
        other = turn.content.removeprefix("into ")
        await turn.ws_send({"type": "status_update", "conversation_id": other, "content": "Hi"})
        await turn.ws_send({"type": "warning_message", "conversation_id": other, "content": "x"})
        await turn.send({"type": "agent_message", "content": "tried"})

    async with (
        scripted_agent(script) as agent,
        running_stack(sqlite_url, webchat=True, agent_port=agent.port) as s,
    ):
        # Chatwoot inbox 2 is answered by agent2 (dialing in; it never does)
        r = await s.http.put(
            "/config/mappings/2",
            json={
                "inbox_id": 2,
                "agent_config": {"agent_id": "agent2", "transport": "ws-dial-in"},
                "on_failure": "handoff",
            },
        )
        assert r.status_code == 201, r.text
        await s.say("hello", conv=5, inbox_id=2)
        other = await wait_until(lambda: s.bridge.store.find_conversation("chatwoot", "1:5"))
        session = await new_session(s)
        async with live_socket(s, session["session_id"]) as c:
            await c.send({"type": "user_message", "content": f"into {other.id}"})
            await wait_until(lambda: c.texts("agent") == ["tried"])
        assert await live_of(s, other.id) is None
        rows = await s.bridge.store.list_messages(other.id)
        assert [m.author for m in rows] == ["contact"]
        dropped = s.bridge.metrics.agent_replies_dropped.labels("agent1")._value.get()
        assert dropped == 2
