"""An agent's attachments reach the channel: they ride on the reply's (last) message
delivery, in the shape the channels read (``Attachment``)."""

from __future__ import annotations

from chatbridge.models import Attachment
from chatbridge.pipeline.decisions import outbound_attachments, plan_outcome
from chatbridge.pipeline.delivery_runner import to_action
from chatbridge.policies import RoutePolicies
from chatbridge.store.records import ClaimedDelivery, ConversationRecord
from chatbridge.transports.base import AgentOutcome
from tests.pipeline.test_decisions import route

PHOTO = {"url": "https://cdn.example/p.jpg", "mime_type": "image/jpeg", "type": "image"}


def plan(**policies: object):  # type: ignore[no-untyped-def]
    outcome = AgentOutcome(kind="reply", content="Here it is.\n\nAnything else?")
    outcome.attachments = [PHOTO, {"name": "no url, cannot be sent"}]
    r = route()
    r.policies = RoutePolicies.model_validate(policies)
    return plan_outcome(outcome, route=r, default_fallback="sorry", max_attempts=5)


def test_attachments_are_normalised_and_those_without_a_url_dropped() -> None:
    assert outbound_attachments([PHOTO, {"name": "x"}, "junk"]) == [  # type: ignore[list-item]
        {"url": "https://cdn.example/p.jpg", "mime": "image/jpeg", "size": None, "name": None}
    ]


def test_the_reply_delivery_carries_them_and_becomes_an_action_with_them() -> None:
    [message] = [s for s in plan().deliveries if s.kind == "message"]
    delivery = ClaimedDelivery(
        id=1,
        conversation_id="c1",
        turn_id=1,
        message_id="m1",
        kind="message",
        text=message.text,
        payload=message.payload,
        attempts=1,
        max_attempts=5,
        idempotency_key="d_1",
        uncertain=False,
        conversation=ConversationRecord("c1", "chatwoot", "1:1", 1, None, "bot", "open", None, {}),
    )
    action = to_action(delivery)
    assert action.attachments == [Attachment("https://cdn.example/p.jpg", "image/jpeg")]


def test_a_split_reply_sends_them_with_its_last_part() -> None:
    messages = [s for s in plan(split_replies=True).deliveries if s.kind == "message"]
    assert [m.text for m in messages] == ["Here it is.", "Anything else?"]
    assert "attachments" not in messages[0].payload
    assert messages[1].payload["attachments"][0]["url"] == PHOTO["url"]
