"""One agent, several bridges: a turn is answered from memory only when it is the same turn.

The bridge's ``message_id`` (``t_<n>``) counts per database, so two bridges (or one whose
database was reset or restored) send ``t_1`` for different customers' turns. Each must get its
own answer; only a genuine repeat (same conversation, same messages) comes from memory.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.asyncio.client import connect

from chatbridge.agent import Agent, Turn
from chatbridge.agent.identity import turn_key
from chatbridge.protocol import UserMessage
from chatbridge.signing import SIGNATURE_HEADER, sign
from tests.agent.sdk_helpers import recv, send

SECRET = "identity-secret"


def turn_frame(
    conversation_id: str, content: str, *, message_ids: list[str] | None, key: str = "t_1"
) -> dict[str, Any]:
    """A ``user_message`` as the bridge builds it: ``messages`` carry the message ids."""
    frame: dict[str, Any] = {
        "type": "user_message",
        "protocol": "chatbridge/1",
        "message_id": key,
        "seq": 1,
        "conversation_id": conversation_id,
        "content": content,
    }
    if message_ids is not None:
        frame["messages"] = [{"id": m, "content": content} for m in message_ids]
    return frame


def counting_agent() -> tuple[Agent, list[str]]:
    agent = Agent("shared-agent")
    ran: list[str] = []

    @agent.on_message
    async def answer(turn: Turn) -> str:
        ran.append(turn.content)
        return f"Re: {turn.content}"

    return agent, ran


# Bridge A and bridge B both count their turns from t_1.
A_ORDER = turn_frame("c_01JDAAAA", "where is my order?", message_ids=["m_01JDA1"])
B_CANCEL = turn_frame("c_01JDBBBB", "cancel my subscription", message_ids=["m_01JDB1"])
# Bridge A's database restored from a backup: the same conversation, t_1 again, new messages.
A_RESTORED = turn_frame("c_01JDAAAA", "my address changed", message_ids=["m_01JDA9"])


def test_turn_key_tells_apart_what_message_id_alone_cannot() -> None:
    def key(frame: dict[str, Any]) -> tuple[str, str, str]:
        return turn_key(UserMessage.model_validate(frame))

    assert len({key(A_ORDER), key(B_CANCEL), key(A_RESTORED)}) == 3
    assert key(A_ORDER) == key(dict(A_ORDER, seq=7, deadline="2030-01-01T00:00:00Z"))
    # a bridge that sends no message ids: the content tells the turns apart
    old = turn_frame("456", "hello", message_ids=None)
    assert key(old) == key(dict(old)) != key(turn_frame("456", "bye", message_ids=None))
    assert key(turn_frame("456", "hello", message_ids=[])) == key(old)


async def test_two_bridges_dialing_one_agent_get_their_own_answers() -> None:
    agent, ran = counting_agent()
    async with (
        agent.serving() as port,
        connect(f"ws://127.0.0.1:{port}") as bridge_a,
        connect(f"ws://127.0.0.1:{port}") as bridge_b,
    ):
        await send(bridge_a, A_ORDER)
        a = await recv(bridge_a)
        await send(bridge_b, B_CANCEL)
        b = await recv(bridge_b)
        await send(bridge_a, A_RESTORED)
        restored = await recv(bridge_a)
        await send(bridge_a, A_ORDER)  # bridge A reconnected and sends its turn again
        repeat = await recv(bridge_a)
    assert (a["message_id"], a["conversation_id"], a["content"]) == (
        "t_1", "c_01JDAAAA", "Re: where is my order?",
    )  # fmt: skip
    assert (b["message_id"], b["conversation_id"], b["content"]) == (
        "t_1", "c_01JDBBBB", "Re: cancel my subscription",
    )  # fmt: skip
    assert restored["content"] == "Re: my address changed"
    assert repeat == a  # from memory
    assert ran == ["where is my order?", "cancel my subscription", "my address changed"]


async def test_webhook_agent_serving_two_bridges_answers_each_turn_for_itself() -> None:
    agent, ran = counting_agent()
    transport = httpx.ASGITransport(app=agent.webhook_app(SECRET))

    async def post(http: httpx.AsyncClient, frame: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(frame).encode()
        r = await http.post("/", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)})
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
        a = await post(http, A_ORDER)
        b = await post(http, B_CANCEL)
        restored = await post(http, A_RESTORED)
        repeat = await post(http, A_ORDER)
    assert a["content"] == "Re: where is my order?"
    assert (b["conversation_id"], b["content"]) == ("c_01JDBBBB", "Re: cancel my subscription")
    assert restored["content"] == "Re: my address changed"
    assert repeat == a
    assert ran == ["where is my order?", "cancel my subscription", "my address changed"]
