"""The agent SDK's ``Answer``: a reply with choices, a template or attachments becomes an
``agent_message`` the bridge's protocol accepts; a malformed one ends the turn with
``handler_error`` before anything is sent; ``turn.choice`` reads the customer's pick."""

from __future__ import annotations

from typing import Any

from chatbridge.agent import Answer, Turn
from chatbridge.agent.answers import WholeAnswers
from chatbridge.agent.frames import reply_frame
from chatbridge.agent.turn import Handlers
from chatbridge.protocol import AgentMessage, Interactive, UserMessage, parse_agent_frame

USER = {
    "type": "user_message",
    "protocol": "chatbridge/1",
    "message_id": "t_1",
    "conversation_id": "c_1",
    "content": "2",
    "messages": [
        {"id": "m_1", "content": "hi", "attachments": []},
        {
            "id": "m_2",
            "content": "2",
            "attachments": [],
            "metadata": {"interactive": {"id": "no", "title": "No"}},
        },
    ],
}


def turn(raw: dict[str, Any] = USER) -> Turn:
    return Turn.from_message(UserMessage.model_validate(raw), raw)


def test_turn_choice() -> None:
    assert turn().choice == {"id": "no", "title": "No"}
    plain = {**USER, "messages": USER["messages"][:1]}
    assert turn(plain).choice is None


def test_answer_with_choices_and_template_is_a_valid_agent_message() -> None:
    frame = reply_frame(
        turn(),
        Answer(
            "Which size?",
            interactive=Interactive.model_validate(
                {"kind": "list", "options": [{"id": "s", "title": "Small"}]}
            ),
            attachments=[{"url": "https://x/y.jpg", "mime": "image/jpeg"}],
        ),
        {"agent_id": "a"},
    )
    assert frame["interactive"] == {"kind": "list", "options": [{"id": "s", "title": "Small"}]}
    assert frame["attachments"] == [{"url": "https://x/y.jpg", "mime": "image/jpeg"}]
    parsed = parse_agent_frame(frame)
    assert isinstance(parsed, AgentMessage) and parsed.interactive is not None

    template = reply_frame(
        turn(),
        Answer(template={"name": "order_update", "language": "en_US", "parameters": {"1": "A7"}}),
        {},
    )
    assert "content" not in template
    assert template["template"] == {
        "name": "order_update",
        "language": "en_US",
        "parameters": {"1": "A7"},
    }
    assert isinstance(parse_agent_frame(template), AgentMessage)


async def test_malformed_answer_is_a_handler_error() -> None:
    handlers = Handlers(
        message=lambda _t: Answer("Pick", interactive={"kind": "buttons", "options": []})
    )
    [frame] = await WholeAnswers("a", handlers, 10).answer(UserMessage.model_validate(USER), USER)
    assert frame["type"] == "error_message"
    assert frame["error_code"] == "handler_error"
    assert "options" in frame["error_details"]["message"]
