"""End to end: an agent answers with a template (protocol 1.2) inside and outside Meta's
24-hour window and the customer gets Meta's template message; a free-form agent reply outside
the window is dead-lettered with the reason, not sent and not lost."""

from __future__ import annotations

from typing import Any

from chatbridge.channels.whatsapp.base import OUTSIDE_WINDOW
from tests.e2e.harness import wait_until
from tests.templates.rig import PHONE_NUMBER_ID, template_rig

EXPECTED_TEMPLATE: dict[str, Any] = {
    "name": "order_update",
    "language": {"code": "en_US"},
    "components": [
        {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Asha"}, {"type": "text", "text": "Friday"}],
        },
    ],
}


async def test_agent_template_inside_and_outside_the_window(database_url: str) -> None:
    async with template_rig(database_url) as rig:
        # inside the window: the agent answers at once with a template
        await rig.customer_writes("template please", wamid="wamid.a-1", sender="919876543210")
        await wait_until(lambda: rig.template_sends(), 10)
        [inside] = rig.template_sends()
        assert inside["to"] == "+919876543210" and inside["template"] == EXPECTED_TEMPLATE

        # outside: the agent answers a day later, with a template, then another with text
        late = await rig.customer_writes("later please", wamid="wamid.b-1", sender="14155550100")
        other = await rig.customer_writes("later again", wamid="wamid.c-1", sender="14155550111")
        await wait_until(lambda: len(rig.agent.later) == 2, 10)
        await rig.age_inbound(late)
        await rig.age_inbound(other)
        by_content = {f["content"]: f for f in rig.agent.later}
        r = await rig.answer_later(
            by_content["later please"],
            {"type": "agent_message", "template": rig.agent.template},
        )
        assert r.status_code == 200, r.text
        await wait_until(lambda: len(rig.template_sends()) == 2, 10)
        assert rig.template_sends()[1]["to"] == "+14155550100"
        assert rig.template_sends()[1]["template"] == EXPECTED_TEMPLATE

        texts_before = len(rig.text_sends())
        r = await rig.answer_later(
            by_content["later again"], {"type": "agent_message", "content": "Still there?"}
        )
        assert r.status_code == 200, r.text

        async def dead() -> list[dict[str, Any]]:
            found = (await rig.http.get("/dead-letters")).json()["dead_letters"]
            return [d for d in found if d["conversation_id"] == other]

        [letter] = await wait_until(dead, 10)
        assert letter["text"] == "Still there?" and OUTSIDE_WINDOW in letter["last_error"]
        assert letter["channel_key"] == f"meta_cloud:{PHONE_NUMBER_ID}:14155550111"
        assert len(rig.text_sends()) == texts_before  # nothing free-form went to Meta
