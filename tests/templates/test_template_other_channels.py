"""A template reply on a channel without templates (Chatwoot here; web chat and http take the
same path at the delivery boundary) is sent as its rendered text; one that cannot be
rendered is dead-lettered with the reason."""

from __future__ import annotations

from chatbridge.config import AgentConfig
from chatbridge.testing.servers import serve_app
from tests.e2e.harness import running_stack, wait_until
from tests.templates.rig import AGENT_TOKEN, ORDER_UPDATE, HookAgent


async def test_chatwoot_gets_the_rendered_text(database_url: str) -> None:
    agent = HookAgent()
    async with serve_app(agent.app()) as hook_url:
        config = AgentConfig(
            agent_id="agent1",
            transport="http-webhook",
            webhook_url=f"{hook_url}/hook",
            token=AGENT_TOKEN,
            timeout_seconds=5,
        )
        async with running_stack(database_url, agent_config=config, admin_key="k" * 20) as s:
            await s.bridge.store.create_template(
                name="order_update", language="en_US", category="utility", components=ORDER_UPDATE
            )
            await s.say("template please", conv=1)
            assert await s.wait_replies(1, conv=1) == [
                "*Order A-17*\n\nHi Asha, your order ships on Friday."
            ]
            agent.template = {"name": "no_such_template", "parameters": {}}
            await s.say("template please", conv=2)

            async def dead() -> list[str]:
                rows = await s.bridge.store.list_dead_letters(limit=10, offset=0)
                return [str(d.last_error) for d in rows]

            [reason] = await wait_until(dead, 10)
            assert "no template named 'no_such_template'" in reason
            assert s.replies(2) == []
