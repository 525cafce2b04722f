"""A stored file on a channel that sends links (Chatwoot here): the reply carries a signed
bridge URL for it, never the internal ``media:<id>`` form, and that URL serves the bytes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx

from chatbridge.agent import Agent, Answer, Turn
from chatbridge.channels.media_links import with_signed_links
from chatbridge.config import Settings
from chatbridge.models import Attachment, ConversationRef, OutboundAction
from tests.e2e.harness import running_stack

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
TOKEN = "agent-secret-0123456789"


def test_with_signed_links(tmp_path: Path) -> None:
    settings = Settings(media_dir=str(tmp_path), public_url="https://bridge.example")
    conv = ConversationRef(id="c", channel="http", channel_key="k", inbox_id=1)
    action = OutboundAction(
        "message",
        conv,
        "i",
        text="Here",
        attachments=[Attachment("media:md_1", "image/png"), Attachment("https://x/y.png")],
    )
    signed = with_signed_links(action, settings)
    assert signed.attachments[0].url.startswith("https://bridge.example/media/md_1?exp=")
    assert signed.attachments[1].url == "https://x/y.png"
    plain = OutboundAction("message", conv, "i", text="Hi")
    assert with_signed_links(plain, settings) is plain


async def test_chatwoot_gets_a_signed_link(database_url: str, tmp_path: Path) -> None:
    urls: list[str] = []
    agent = Agent("agent1", reconnect_initial_delay=0.02)

    @agent.on_message
    async def answer(turn: Turn) -> Answer:
        async with httpx.AsyncClient(base_url=urls[0]) as http:
            r = await http.post(
                "/api/agent/media?name=a.png",
                content=PNG,
                headers={
                    "X-Agent-Id": "agent1",
                    "Authorization": f"Bearer {TOKEN}",
                    "Content-Type": "image/png",
                },
            )
            assert r.status_code == 201, r.text
        return Answer("Here it is", attachments=[{"url": r.json()["url"]}])

    async with running_stack(
        database_url,
        agent=agent,
        agent_tokens={"agent1": TOKEN},
        media_dir=str(tmp_path / "media"),
    ) as stack:
        urls.append(stack.url)
        await stack.say("Show me")
        [reply] = await stack.wait_replies(1)
        assert "media:" not in reply
        link = next(word for word in reply.split() if "/media/" in word)
        signed = urlsplit(link)
        got = await stack.http.get(f"{signed.path}?{signed.query}")
        assert got.status_code == 200 and got.content == PNG
