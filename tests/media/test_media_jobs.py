"""The durable download jobs, on SQLite and PostgreSQL: queued in the message's own ingest
transaction (a message without media writes nothing more), the turn held until its media
settle, a failed download retried with backoff, a lease that ran out taken over (the dead
worker's late write refused), a permanent failure recorded and the turn let go."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from chatbridge.config import Settings
from chatbridge.crm.settings import CommsSettings
from chatbridge.models import Attachment, ContactInfo, InboundMessage
from chatbridge.pipeline.media_jobs import MediaWorker
from chatbridge.store import Store
from chatbridge.store import tables as t
from chatbridge.store.media import MEDIA_KEY
from chatbridge.store.records import Route, TurnDecision
from chatbridge.testing.clock import FakeClock
from chatbridge.testing.fake_wa_media import add_waha_file
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.media.rig import PNG

HOLD = 20.0


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with FakeClock().installed() as fake:
        yield fake


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeWhatsApp, str]]:
    app = create_fake_whatsapp()
    async with serve_app(app) as url:
        yield app.state.fake, url


def bot_decides(conv: Any) -> TurnDecision:
    return TurnDecision(create_turn=True, owner=conv.owner, reason=None)


async def make_route(store: Store) -> Route:
    await store.upsert_agent(
        "a1", transport="ws-dial-out", url="ws://127.0.0.1:1", timeout_seconds=5
    )
    route, _ = await store.save_route(
        channel="whatsapp",
        inbox_id=1,
        agent_id="a1",
        reply_mode="async",
        timeout_seconds=5,
        fallback_text=None,
        on_failure="fallback",
        agent_bot_mode=False,
    )
    return route


def message(n: int, *, url: str | None = None) -> InboundMessage:
    """A WAHA customer message; with ``url``, an image to download from there."""
    msg = InboundMessage(
        channel="whatsapp",
        inbox_id=1,
        channel_key=f"waha:default:91987654321{n}@c.us",
        text="" if url else f"hello {n}",
        external_message_id=f"false_chat_{n}",
        contact=ContactInfo(external_id=f"+91987654321{n}"),
        metadata={"provider": "waha", "instance": "default"},
    )
    if url:
        msg.attachments = [Attachment(url=url, mime="image/png", name="photo.png")]
        msg.metadata[MEDIA_KEY] = {
            "hold": HOLD,
            "items": [
                {
                    "kind": "image",
                    "mime": "image/png",
                    "name": "photo.png",
                    "provider": "waha",
                    "source": {"url": url, "session": "default"},
                }
            ],
        }
    return msg


def worker(store: Store, tmp_path: Path, fake_url: str, *, owner: str = "w1") -> MediaWorker:
    settings = Settings(
        database_url="sqlite+aiosqlite:///unused.db",
        media_dir=str(tmp_path / "media"),
        instance_id=owner,
    )
    comms = CommsSettings(  # type: ignore[call-arg]
        _env_file=None, provider="waha", waha_base_url=fake_url, waha_api_key="waha-key"
    )
    return MediaWorker(store, settings, lambda: comms, retry_base=10.0, retry_max=60.0)


async def turn_row(store: Store) -> Any:
    async with store._tx() as conn:
        return (await conn.execute(select(t.turns))).one()


async def test_media_is_queued_with_its_message_and_holds_its_turn(
    store: Store, clock: FakeClock
) -> None:
    route = await make_route(store)
    plain = await store.ingest(message(1), route=route, response_mode="async", decide=bot_decides)
    assert await store.list_media(conversation_id=plain.conversation_id) == []
    url = "http://waha.example/api/files/default/p.png"
    result = await store.ingest(
        message(2, url=url), route=route, response_mode="async", decide=bot_decides
    )
    [row] = await store.list_media(message_id=result.message_id)
    assert (row.state, row.kind, row.provider, row.attempts) == ("queued", "image", "waha", 0)
    assert row.source is not None and row.source["url"] == url
    [stored] = [m for m in await store.list_messages(result.conversation_id)]
    # the message names its file by media id; the provider's URL is only on the job
    assert stored.attachments == [
        {
            "media_id": row.id,
            "kind": "image",
            "mime": "image/png",
            "name": "photo.png",
            "size": None,
            "status": "pending",
        }
    ]
    assert MEDIA_KEY not in stored.meta
    async with store._tx() as conn:
        held = (
            await conn.execute(select(t.turns.c.available_at).where(t.turns.c.id == result.turn_id))
        ).scalar_one()
    assert held == pytest.approx(clock.now() + HOLD)
    assert await store.claim_turns("w", limit=5, lease_seconds=5) != []  # the plain one only
    assert await store.claim_turns("w", limit=5, lease_seconds=5) == []


async def test_failed_download_is_retried_with_backoff_then_stored(
    store: Store, clock: FakeClock, gateway: tuple[FakeWhatsApp, str], tmp_path: Path
) -> None:
    fake, fake_url = gateway
    path = add_waha_file(fake, PNG, "image/png", "p.png")
    route = await make_route(store)
    result = await store.ingest(
        message(1, url=f"{fake_url}{path}"), route=route, response_mode="async", decide=bot_decides
    )
    fake.fail_next.append((503, {}, {"message": "busy", "statusCode": 503}))
    w = worker(store, tmp_path, fake_url)
    try:
        assert await w.run_until_idle() == 1
        [row] = await store.list_media(message_id=result.message_id)
        assert (row.state, row.attempts) == ("queued", 1)
        assert "WAHA media: HTTP 503" in (row.last_error or "")
        assert clock.now() < row.available_at <= clock.now() + 10.0  # backoff, jittered
        assert await w.run_until_idle() == 0  # not before its time
        assert (await turn_row(store)).available_at > clock.now() + HOLD - 1  # still held
        clock.advance(row.available_at - clock.now() + 0.01)
        assert await w.run_until_idle() == 1
        [row] = await store.list_media(message_id=result.message_id)
        assert (row.state, row.attempts, row.size, row.last_error) == ("done", 2, len(PNG), None)
        assert (tmp_path / "media" / str(row.path)).read_bytes() == PNG
        assert (await turn_row(store)).available_at <= clock.now()  # let go
        [msg] = await store.list_messages(result.conversation_id)
        assert msg.attachments[0]["status"] == "ready" and msg.attachments[0]["size"] == len(PNG)
        calls = fake.calls("/api/files/")
        assert [c.headers["x-api-key"] for c in calls] == ["waha-key", "waha-key"]
    finally:
        await w.aclose()


async def test_a_lease_that_ran_out_is_taken_over(
    store: Store, clock: FakeClock, gateway: tuple[FakeWhatsApp, str], tmp_path: Path
) -> None:
    fake, fake_url = gateway
    path = add_waha_file(fake, PNG, "image/png", "p.png")
    route = await make_route(store)
    result = await store.ingest(
        message(1, url=f"{fake_url}{path}"), route=route, response_mode="async", decide=bot_decides
    )
    [dead] = await store.claim_media("dead-process", limit=1, lease_seconds=30)
    w = worker(store, tmp_path, fake_url, owner="w2")
    try:
        assert await w.run_until_idle() == 0  # its lease still holds
        clock.advance(31)
        assert await w.run_until_idle() == 1
        [row] = await store.list_media(message_id=result.message_id)
        assert (row.state, row.attempts, row.lease_owner) == ("done", 2, None)
        late = await store.finish_media(
            dead.id,
            "dead-process",
            path="x",
            mime="image/png",
            size=1,
            sha256="0",
            name=None,
            kind="image",
        )
        assert late is False  # fenced: the dead worker writes nothing
        assert (await store.list_media(message_id=result.message_id))[0].size == len(PNG)
    finally:
        await w.aclose()


async def test_permanent_failure_is_recorded_and_lets_the_turn_go(
    store: Store, clock: FakeClock, gateway: tuple[FakeWhatsApp, str], tmp_path: Path
) -> None:
    _, fake_url = gateway
    route = await make_route(store)
    url = f"{fake_url}/api/files/default/gone.png"  # WAHA no longer has it: 404
    result = await store.ingest(
        message(1, url=url), route=route, response_mode="async", decide=bot_decides
    )
    w = worker(store, tmp_path, fake_url)
    try:
        assert await w.run_until_idle() == 1
        [row] = await store.list_media(message_id=result.message_id)
        assert (row.state, row.attempts) == ("failed", 1)
        assert "WAHA media: HTTP 404" in (row.last_error or "")
        assert (await turn_row(store)).available_at <= clock.now()
        [msg] = await store.list_messages(result.conversation_id)
        assert msg.attachments[0]["status"] == "failed"
        assert "HTTP 404" in msg.attachments[0]["error"]
        # an operator downloads it again once WAHA has it back
        again = await store.requeue_media(row.id)
        assert not isinstance(again, str) and again.state == "queued"
        assert await store.requeue_media(row.id) == "busy"
    finally:
        await w.aclose()
