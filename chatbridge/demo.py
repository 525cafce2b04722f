"""``chatbridge demo``: the bridge, the mock agent and the mock Chatwoot on real loopback
sockets, one scripted conversation printed as a transcript, then everything keeps running.

Everything goes through the real paths: signed webhooks from the mock Chatwoot, the bridge's
SQLite store and workers, the agent over WebSocket (the bridge dials it), replies posted to the
mock Chatwoot's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from chatbridge.config import AgentConfig, InboxMapping, Settings

console = Console(soft_wrap=True)

SECRET = "demo-webhook-secret"
TOKEN = "demo-bot-token"

# (who, text, what to expect)
SCRIPT: list[tuple[str, str, str]] = [
    ("customer", "Hi there!", "reply"),
    ("customer", "Can you stream your answer?", "reply"),
    ("customer", "Is this slow?", "reply"),
    ("customer", "error please", "reply"),
    ("customer", "I want to talk to a human", "handoff"),
    ("human", "Hi, I'm Sam from support. How can I help?", "none"),
    ("customer", "Thanks Sam!", "none"),
]


async def _wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    return None


def _remove_database(database: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(database + suffix).unlink(missing_ok=True)


async def run_demo(
    *,
    port: int = 8000,
    chatwoot_port: int = 3000,
    agent_port: int = 8765,
    database: str = "chatbridge-demo.db",
    keep_running: bool = True,
) -> int:
    """Run the demo; returns a process exit code (0 when the transcript went as expected)."""
    from chatbridge.api import create_app
    from chatbridge.logs import configure_logging
    from chatbridge.testing.mock_agent import run_mock_agent
    from chatbridge.testing.mock_chatwoot import create_mock_chatwoot
    from chatbridge.testing.servers import serve_app

    configure_logging("ERROR")
    _remove_database(database)
    bridge_url = f"http://127.0.0.1:{port}"
    chatwoot_url = f"http://127.0.0.1:{chatwoot_port}"
    agent_config = AgentConfig(
        agent_id="mock-agent", websocket_url=f"ws://127.0.0.1:{agent_port}", timeout_seconds=5
    )
    settings = Settings(
        port=port,
        database_url=f"sqlite+aiosqlite:///{database}",
        chatwoot_base_url=chatwoot_url,
        chatwoot_api_access_token=TOKEN,
        chatwoot_webhook_secret=SECRET,
        inbox_agent_mappings=[
            InboxMapping(channel=channel, inbox_id=1, agent_config=agent_config)
            for channel in ("chatwoot", "webchat", "whatsapp")
        ],
        instance_id="demo",
        # the demo's widget may be embedded in any local page
        webchat_cors_origins=["*"],
    )
    agent_task = asyncio.create_task(
        run_mock_agent(
            "auto", agent_id="mock-agent", serve_host="127.0.0.1", serve_port=agent_port, delay=1.5
        )
    )
    mock = create_mock_chatwoot(
        webhook_url=f"{bridge_url}/webhook/chatwoot", secret=SECRET, api_token=TOKEN
    )
    ok = True
    try:
        async with (
            serve_app(mock, port=chatwoot_port),
            serve_app(create_app(settings), port=port),
            httpx.AsyncClient(timeout=15) as http,
        ):
            console.rule("[bold]Chatbridge demo")
            console.print(
                f"bridge {bridge_url} · mock Chatwoot {chatwoot_url} · "
                f"mock agent ws://127.0.0.1:{agent_port}  (SQLite: {database})\n"
            )

            async def agent_connected() -> bool:
                r = await http.get(f"{bridge_url}/agents/status")
                return any(a["connected"] for a in r.json()["agents"])

            if not await _wait_for(agent_connected, 10):
                console.print("[red]the bridge could not reach the mock agent[/red]")
                return 1
            ok = await _play(http, bridge_url, chatwoot_url)
            ok = await _play_webchat(http, bridge_url) and ok
            ok = await _play_whatsapp(http, bridge_url) and ok
            console.rule()
            console.print(
                "[green]Round trips done.[/green]" if ok else "[red]Unexpected transcript[/red]"
            )
            if keep_running:
                _print_urls(bridge_url, chatwoot_url, agent_port)
                await _wait_for_ctrl_c()
    finally:
        agent_task.cancel()
        with contextlib.suppress(BaseException):
            await agent_task
    return 0 if ok else 1


async def _play(http: httpx.AsyncClient, bridge_url: str, chatwoot_url: str) -> bool:
    ok = True
    for who, text, expect in SCRIPT:
        before = len((await http.get(f"{chatwoot_url}/mock/api/received_messages")).json())
        if who == "customer":
            body = {
                "conversation_id": 1,
                "inbox_id": 1,
                "content": text,
                "sender": {"id": 7, "name": "Ana", "email": "ana@example.com"},
            }
            console.print(f"[cyan]customer >[/cyan] {text}")
        else:
            body = {
                "conversation_id": 1,
                "inbox_id": 1,
                "content": text,
                "message_type": "outgoing",
                "sender_type": "user",
                "sender": {"id": 2, "name": "Sam"},
            }
            console.print(f"[magenta]human    >[/magenta] {text}")
        r = await http.post(f"{chatwoot_url}/mock/webhook/trigger/message_created", json=body)
        r.raise_for_status()
        if expect == "none":
            await asyncio.sleep(1.0)
            after = (await http.get(f"{chatwoot_url}/mock/api/received_messages")).json()
            if who == "customer":
                if len(after) == before:
                    console.print(
                        "           [dim](bot stays quiet: a human owns the conversation)[/dim]"
                    )
                else:
                    ok = False
                    console.print(f"[red]unexpected bot reply: {after[-1]['content']}[/red]")
            continue

        async def replied(n: int = before) -> list[dict[str, Any]] | None:
            got = (await http.get(f"{chatwoot_url}/mock/api/received_messages")).json()
            return got if len(got) > n else None

        got = await _wait_for(replied, 15)
        if not got:
            console.print("[red]no reply within 15 s[/red]")
            ok = False
            continue
        console.print(f"[green]agent    >[/green] {got[-1]['content']}")
        if expect == "handoff":
            await asyncio.sleep(0.3)
            conv = (
                await http.get(
                    f"{chatwoot_url}/api/v1/accounts/1/conversations/1",
                    headers={"api_access_token": TOKEN},
                )
            ).json()
            status = conv.get("status")
            console.print(f"           [dim](handed to a human: conversation is {status})[/dim]")
    actions = (await http.get(f"{chatwoot_url}/mock/api/actions")).json()
    typing = [a["kind"] for a in actions if a["kind"].startswith("typing")]
    on, off = typing.count("typing_on"), typing.count("typing_off")
    console.print(
        f"\n[dim]typing indicator: {on} on / {off} off; "
        f"API calls seen by the mock Chatwoot: {len(actions)}[/dim]"
    )
    return ok


async def _play_webchat(http: httpx.AsyncClient, bridge_url: str) -> bool:
    """The same agent behind the web chat widget's API: one visitor, two messages."""
    console.print("\n[bold]web chat[/bold] (what the widget at /chat does)")
    session = (await http.post(f"{bridge_url}/api/webchat/sessions", json={"inbox_id": 1})).json()
    base = f"{bridge_url}/api/webchat/sessions/{session['session_id']}/messages"
    cursor = None
    for text in ("hello from the web", "please stream the answer"):
        console.print(f"[cyan]visitor  >[/cyan] {text}")
        posted = (await http.post(base, json={"text": text})).json()
        cursor = posted["message_id"]
        r = await http.get(base, params={"after": cursor, "wait": 10})
        replies = [m for m in r.json()["messages"] if m["role"] == "agent"]
        if not replies:
            console.print("[red]no reply within 10 s[/red]")
            return False
        console.print(f"[green]agent    >[/green] {replies[-1]['text']}")
    return True


async def _play_whatsapp(http: httpx.AsyncClient, bridge_url: str) -> bool:
    """WhatsApp through the mock provider (no credentials): a customer writes, the agent
    answers, an operator takes over from the console's API."""
    console.print("\n[bold]WhatsApp[/bold] (mock provider; the console at /console shows it)")
    # No provider is configured by default (WhatsApp is off); the mock one, which checks no
    # credentials, is chosen explicitly, as an operator would in the console's settings.
    r = await http.patch(f"{bridge_url}/api/comms/settings", json={"provider": "mock"})
    r.raise_for_status()
    phone = "+15550001111"

    async def customer(text: str, n: int) -> None:
        console.print(f"[cyan]customer >[/cyan] {text}")
        body = {"from": phone, "name": "Asha", "text": text, "id": f"demo-wa-{n}"}
        r = await http.post(f"{bridge_url}/api/comms/mock/inbound", json=body)
        r.raise_for_status()

    async def sent(n: int) -> list[dict[str, Any]] | None:
        items = (await http.get(f"{bridge_url}/api/comms/mock/outbox")).json()["items"]
        texts = [i for i in items if i.get("text")]
        return texts if len(texts) >= n else None

    await customer("Is the flat on Elm Street still available?", 1)
    got = await _wait_for(lambda: sent(1), 10)
    if not got:
        console.print("[red]no reply within 10 s[/red]")
        return False
    console.print(f"[green]agent    >[/green] {got[-1]['text']}")
    threads = (await http.get(f"{bridge_url}/api/comms/threads?channel=whatsapp")).json()
    thread = threads["threads"][0]["id"]
    text = "Hi Asha, this is Maria from the agency. Yes, shall we book a viewing?"
    r = await http.post(f"{bridge_url}/api/comms/threads/{thread}/messages", json={"text": text})
    r.raise_for_status()
    console.print(f"[magenta]operator >[/magenta] {text}")
    got = await _wait_for(lambda: sent(2), 10)
    await customer("Yes please, Saturday morning?", 2)
    await asyncio.sleep(0.5)
    after = await sent(2) or []
    quiet = len(after) == 2
    console.print(
        "           [dim](the operator took over: the agent stays quiet)[/dim]"
        if quiet
        else "[red]the agent answered after the takeover[/red]"
    )
    return bool(got) and quiet


def _print_urls(bridge_url: str, chatwoot_url: str, agent_port: int) -> None:
    console.print(
        f"""
[bold]Still running — Ctrl-C to stop.[/bold]
  web chat        {bridge_url}/chat   (the widget; embed it with /widget.js)
  console         {bridge_url}/console   (operator console; no admin key: empty key)
  bridge          {bridge_url}        API docs {bridge_url}/docs
                  {bridge_url}/agents/status   {bridge_url}/metrics   {bridge_url}/dead-letters
  mock Chatwoot   {chatwoot_url}        replies {chatwoot_url}/mock/api/received_messages
  mock agent      ws://127.0.0.1:{agent_port}

Send another customer message:
  curl -s -X POST {chatwoot_url}/mock/webhook/trigger/message_created \\
       -H 'content-type: application/json' -d '{{"conversation_id": 2, "content": "hello"}}'
"""
    )


async def _wait_for_ctrl_c() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
