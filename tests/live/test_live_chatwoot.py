"""Chatwoot, a channel without a live status, over real sockets (mock Chatwoot, a scripted
WebSocket agent), on SQLite and PostgreSQL: a slow turn's one working notice, notices kept
off the channel unless the route says so, and rich data arriving as readable text."""

from __future__ import annotations

from typing import Any

from tests.e2e.harness import Stack, running_stack, wait_until
from tests.live.rig import ScriptedAgent, Turn, scripted_agent

CARDS: dict[str, Any] = {
    "kind": "cards",
    "cards": [
        {
            "title": "Blue mug",
            "subtitle": "12 EUR",
            "text": "Stoneware, 350 ml",
            "url": "https://shop.example/mug",
            "buttons": [
                {"title": "Buy", "url": "https://shop.example/buy/mug"},
                {"title": "More like this", "value": "similar mug"},
            ],
        },
        {"title": "Green bowl", "subtitle": "18 EUR"},
    ],
}
QUICK: dict[str, Any] = {
    "kind": "quick_replies",
    "options": [{"title": "Track my order", "value": "track"}, {"title": "Talk to a person"}],
}
CARDS_TEXT = (
    "Two picks for you:\n\n"
    "Blue mug\n12 EUR\nStoneware, 350 ml\nhttps://shop.example/mug\n"
    "- Buy: https://shop.example/buy/mug\n- More like this\n\n"
    "Green bowl\n18 EUR"
)
QUICK_TEXT = "1. Track my order\n2. Talk to a person"


async def answer(turn: Turn) -> None:
    """The scripted agent of these tests, by the customer's words."""
    text = turn.content
    if "slow" in text:
        await turn.send({"type": "status_update", "content": "Searching"})
        await turn.gate("slow")
    if "notice" in text:
        await turn.say({"type": "warning_message", "content": "Deliveries are late this week"})
    if "also" in text:  # besides the reply, a message of the agent's own: quick replies
        await turn.say({"type": "agent_message", "content": "Also:", "data": QUICK})
    if "cards" in text:
        await turn.send({"type": "agent_message", "content": "Two picks for you:", "data": CARDS})
    elif "choices" in text:
        await turn.send({"type": "agent_message", "data": QUICK})
    elif "odd" in text:
        odd = {"kind": "map", "lat": 52.5, "lon": 13.4}
        await turn.send({"type": "agent_message", "content": "Find us here:", "data": odd})
    else:
        await turn.send({"type": "agent_message", "content": f"Answer to {text}"})


def route_body(agent: ScriptedAgent, **policies: Any) -> dict[str, Any]:
    return {
        "inbox_id": 1,
        "agent_config": {
            "agent_id": "agent1",
            "websocket_url": f"ws://127.0.0.1:{agent.port}",
            "timeout_seconds": 10,
        },
        "policies": policies,
    }


async def system_messages(s: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
    assert conv is not None
    rows = await s.bridge.store.list_messages(conv.id)
    return [(m.text, m.direction, m.meta) for m in rows if m.author == "system"]


async def test_a_slow_turn_sends_one_working_notice_before_its_reply(database_url: str) -> None:
    policies = {"working_notice_after": 1.0, "working_notice_text": "One moment, looking…"}
    async with (
        scripted_agent(answer) as agent,
        running_stack(
            database_url, agent_port=agent.port, mapping={"policies": policies}, timeout_seconds=30
        ) as s,
    ):
        await s.say("a slow question")
        assert await s.wait_replies(1) == ["One moment, looking…"]
        # the console shows what the agent is doing meanwhile
        [turn] = agent.turns
        r = await s.http.get(f"/conversations/{turn.frame['conversation_id']}/live")
        assert r.json()["live"]["content"] == "Searching"
        agent.gates.open("slow")
        await s.wait_replies(2)
        await s.idle()
        assert s.replies() == ["One moment, looking…", "Answer to a slow question"]
        assert await system_messages(s) == [
            (
                "One moment, looking…",
                "out",
                {"notice": "system", "working": True, "turn_id": turn.key},
            )
        ]
        # a quick answer goes out alone
        await s.say("a quick one")
        await s.wait_replies(3)
        await s.idle()
        assert s.replies()[2:] == ["Answer to a quick one"]
        assert len(await system_messages(s)) == 1
        assert s.bridge.working_notices.waiting == 0


async def test_notices_stay_off_the_channel_unless_the_route_sends_them(database_url: str) -> None:
    async with (
        scripted_agent(answer) as agent,
        running_stack(database_url, agent_port=agent.port) as s,
    ):
        await s.say("notice please")
        await s.wait_replies(1)
        await s.idle()
        assert s.replies() == ["Answer to notice please"]
        assert await system_messages(s) == [
            ("Deliveries are late this week", "note", {"notice": "warning", "agent_id": "agent1"})
        ]

        # a policy value the bridge cannot use is refused by name, the route left as it was
        bad = await s.http.put("/config/mappings/1", json=route_body(agent, working_notice_after=0))
        assert bad.status_code == 422, bad.text
        assert "working_notice_after" in bad.text
        assert s.bridge.route_for("chatwoot", 1).policies.working_notice_after is None  # type: ignore[union-attr]

        ok = await s.http.put("/config/mappings/1", json=route_body(agent, notices_to_channel=True))
        assert ok.status_code == 200, ok.text
        assert s.bridge.route_for("chatwoot", 1).policies.notices_to_channel  # type: ignore[union-attr]
        await s.agent_connected()
        await s.say("notice again")
        await s.wait_replies(3)
        await s.idle()
        assert s.replies()[1:] == ["Deliveries are late this week", "Answer to notice again"]


async def test_rich_data_arrives_at_chatwoot_as_readable_text(database_url: str) -> None:
    async with (
        scripted_agent(answer) as agent,
        running_stack(database_url, agent_port=agent.port) as s,
    ):
        await s.say("cards please")
        await s.wait_replies(1)
        await s.say("choices please")
        await s.wait_replies(2)
        await s.say("something odd")
        await s.wait_replies(3)
        await s.idle()
        odd = 'Find us here:\n\n{"kind":"map","lat":52.5,"lon":13.4}'
        assert s.replies() == [CARDS_TEXT, QUICK_TEXT, odd]
        created = [m for m in s.mock.received_messages if not m.get("private")]
        assert [m["content"] for m in created] == [CARDS_TEXT, QUICK_TEXT, odd]
        # outside a turn too (a proactive message with data)
        await s.say("also this")
        await s.wait_replies(5)
        await s.idle()
        assert s.replies()[3:] == [f"Also:\n\n{QUICK_TEXT}", "Answer to also this"]
        # the reply keeps its data (the console and the web chat draw it)
        conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None
        rows = [m for m in await s.bridge.store.list_messages(conv.id) if m.author == "agent"]
        stored_cards = {
            "kind": "cards",
            "cards": [CARDS["cards"][0], {**CARDS["cards"][1], "buttons": []}],
        }
        assert [(m.text, m.meta.get("data")) for m in rows][:2] == [
            ("Two picks for you:", stored_cards),  # as validated: a card's buttons always listed
            ("", QUICK),
        ]
        assert agent.errors == []


async def test_the_working_notice_waits_for_nothing_on_a_route_without_it(
    sqlite_url: str,
) -> None:
    async with (
        scripted_agent(answer) as agent,
        running_stack(sqlite_url, agent_port=agent.port) as s,
    ):
        await s.say("a slow question")
        await wait_until(lambda: agent.turns)
        assert s.bridge.working_notices.waiting == 0
        agent.gates.open("slow")
        await s.wait_replies(1)
        await s.idle()
        assert s.replies() == ["Answer to a slow question"]
