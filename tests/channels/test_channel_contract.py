"""The channel behaviour suite: every channel in the registry passes the same checks.

Dedupe (the same message twice → one stored), loop safety (the echo of our own send → no
turn), signature (bad or missing → 401 where the channel signs; a channel that does not says
so with ``signed = False``), bad input (400 JSON error, nothing stored), order (two messages →
stored in order) and capability honesty (what a channel says it cannot do is never queued;
what it says it can do reaches its fake; a private note reaches the team where the channel
declares ``notes``, is refused where it does not, and never reaches the customer).

Each channel runs behind a whole stack on real loopback sockets (``running_stack``), with its
fake: the mock Chatwoot, the fake WhatsApp gateways (WAHA, Evolution, Meta) and the mock
provider, the web chat's live hub, the memory channel's own record. A channel joins the suite
by having a ``Case`` here; the registry's webhook channels without one fail
``test_every_registered_channel_is_in_the_suite``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from chatbridge.channels.base import Capabilities, Channel, ChannelAdapter
from chatbridge.channels.memory import MemoryChannel
from chatbridge.channels.registry import CHANNELS, WEBHOOK_CHANNELS, ChannelUnavailable, builder
from chatbridge.channels.signatures import sign_chatwoot
from chatbridge.channels.whatsapp.signatures import evolution_jwt, sign_meta, sign_waha
from chatbridge.config import AgentConfig, InboxMapping
from chatbridge.errors import BadInput, PermanentDelivery
from chatbridge.models import ConversationRef, OutboundAction
from chatbridge.store import tables as t
from chatbridge.testing.chatwoot_state import TriggerRequest
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from chatbridge.testing.whatsapp_payloads import (
    evolution_message,
    meta_text,
    meta_webhook,
    waha_message,
)
from tests.channels.whatsapp.rig import gateways_at
from tests.e2e.harness import Stack, running_stack

SECRET = "contract-secret-0123"
HTTP_SECRET = "contract-http-secret-0123"
PHONE_NUMBER_ID = "106540352242922"


@dataclass
class Case:
    """One channel (or provider) as the suite drives it."""

    name: str  # the test id
    channel: str  # the channel's registry name
    url: str = ""
    stack: Stack | None = None
    fake: FakeWhatsApp | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bridge(self) -> Any:
        assert self.stack is not None
        return self.stack.bridge

    @property
    def adapter(self) -> ChannelAdapter:
        return self.bridge.channels[self.channel]  # type: ignore[no-any-return]

    # ---- what each channel's requests look like -------------------------------------
    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def sign(self, body: bytes) -> dict[str, str]:
        return {}

    def bad_sign(self, body: bytes) -> dict[str, str]:
        """Credentials that must be refused for ``body`` (by default: another body's)."""
        return self.sign(body + b" ")

    # a well-formed JSON object the channel must refuse as malformed (None: the channel
    # acknowledges shapes it does not know, and stores nothing)
    malformed: ClassVar[bytes | None] = None

    def conversation_key(self) -> str:
        raise NotImplementedError

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        raise NotImplementedError

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        assert self.stack is not None
        r = await self.stack.http.post(
            self.url, content=body, headers={"Content-Type": "application/json", **headers}
        )
        return r.status_code, r.json()

    async def send_message(self, text: str) -> tuple[OutboundAction, str | None]:
        """Send ``text`` through the channel to its fake, as a delivery would."""
        conv = await self.bridge.store.find_conversation(self.channel, self.conversation_key())
        assert conv is not None
        action = OutboundAction(
            "message",
            ConversationRef(conv.id, self.channel, conv.channel_key, conv.inbox_id),
            idempotency_key=f"d_contract_{time.monotonic_ns()}",
            text=text,
        )
        result = await self.adapter.send(action)
        return action, result.external_id


class ChatwootCase(Case):
    """Payloads from the mock Chatwoot itself (it then knows the conversation we reply in)."""

    malformed = b'{"event": 5}'

    def _event(self, **spec: Any) -> bytes:
        assert self.stack is not None
        payload, _ = self.stack.mock.build_event(
            "message_created", TriggerRequest(conversation_id=7, inbox_id=1, **spec)
        )
        return json.dumps(payload).encode()

    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        return self._event(content=text, message_id=msg_id), {}

    def sign(self, body: bytes) -> dict[str, str]:
        return sign_chatwoot(SECRET, body, int(time.time()))

    def conversation_key(self) -> str:
        return "1:7"

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        # posted with a user token and without its source_id, our reply looks like a human's
        return self._event(
            content=action.text, message_type="outgoing", sender_type="user", sender={"id": 5}
        )


class WahaCase(Case):
    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        return json.dumps(waha_message(text, msg_id=f"IN{msg_id}")).encode(), {}

    def sign(self, body: bytes) -> dict[str, str]:
        return sign_waha("hmac-key-0123456789", body)

    def conversation_key(self) -> str:
        return "waha:default:919876543210@c.us"

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        assert self.fake is not None
        return json.dumps(self.fake.waha_echo(self.fake.waha_sent[-1])).encode()


class EvolutionCase(Case):
    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        return json.dumps(evolution_message(text, msg_id=f"IN{msg_id}")).encode(), {}

    def sign(self, body: bytes) -> dict[str, str]:
        return {"Authorization": f"Bearer {evolution_jwt('evo-jwt-secret-0123456789')}"}

    def bad_sign(self, body: bytes) -> dict[str, str]:
        # Evolution's JWT authenticates the sender, not the body: a token of another key
        return {"Authorization": f"Bearer {evolution_jwt('another-key-0123456789')}"}

    def conversation_key(self) -> str:
        return "evolution:shop:919876543210@s.whatsapp.net"

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        assert self.fake is not None
        return json.dumps(self.fake.evolution_echo(self.fake.evolution_sent[-1])).encode()


class MetaCase(Case):
    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        payload = meta_webhook(
            messages=[meta_text(text, wamid=f"wamid.IN{msg_id}")], phone_number_id=PHONE_NUMBER_ID
        )
        return json.dumps(payload).encode(), {}

    def sign(self, body: bytes) -> dict[str, str]:
        return sign_meta("meta-app-secret-0123", body)

    def conversation_key(self) -> str:
        return f"meta_cloud:{PHONE_NUMBER_ID}:919876543210"

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        assert self.fake is not None
        return json.dumps(self.fake.meta_status_of(self.fake.meta_sent[-1])).encode()


class MockWhatsAppCase(Case):
    malformed = b'{"event": 5}'  # the mock provider refuses what is not its own shape

    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        payload = {"from": "+919876543210", "text": text, "id": f"IN{msg_id}"}
        return json.dumps(payload).encode(), {}

    def conversation_key(self) -> str:
        return "mock:mock:919876543210@c.us"

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        assert external_id is not None
        payload = {"from": "+919876543210", "text": action.text, "id": external_id, "fromMe": True}
        return json.dumps(payload).encode()


class MemoryCase(Case):
    malformed = b'{"conversation": 5, "id": "x"}'

    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        payload = {"conversation": "c1", "id": f"IN{msg_id}", "text": text, "inbox_id": 1}
        return json.dumps(payload).encode(), {}

    def conversation_key(self) -> str:
        return "c1"

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        assert external_id is not None
        return json.dumps({"conversation": "c1", "id": external_id, "from_me": True}).encode()


class HttpCase(Case):
    """The generic ``http`` channel (chatbridge/channels/http.py), its callbacks received by
    the in-package ``CallbackReceiver``."""

    malformed = b'{"type": "message", "conversation_id": 5}'

    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        payload = {"type": "message", "conversation_id": "c1", "message_id": f"m{msg_id}"}
        return json.dumps({**payload, "text": text}).encode(), {}

    def sign(self, body: bytes) -> dict[str, str]:
        from chatbridge.channels.http import sign

        return sign(HTTP_SECRET, body)

    def conversation_key(self) -> str:
        return "1:c1"

    async def echo_of(self, action: OutboundAction, external_id: str | None) -> bytes:
        # an app that mirrors its whole log sends the bridge's own reply back as "bot"
        payload = {"type": "message", "conversation_id": "c1", "message_id": "echo-1"}
        return json.dumps({**payload, "text": action.text, "author": "bot"}).encode()


class WebchatCase(Case):
    """The web chat's messages come through its own API, not a webhook: the suite runs its
    channel's ``parse`` and the bridge's ``accept`` in-process, as that API does."""

    malformed = b'{"session_id": 5, "text": "hi"}'

    def message(self, msg_id: int, text: str) -> tuple[bytes, dict[str, str]]:
        session = self.extra["session"]
        payload = {"session_id": session.id, "text": text, "client_message_id": f"IN{msg_id}"}
        return json.dumps(payload).encode(), {}

    def conversation_key(self) -> str:
        return str(self.extra["session"].uid)

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        from chatbridge.channels.base import InboundRequest

        channel = self.adapter
        assert isinstance(channel, Channel)
        try:
            [parsed] = await channel.parse(InboundRequest(body, headers=headers))
            accepted = await self.bridge.accept(parsed)
        except BadInput as exc:
            return exc.status_code, {"error": {"code": exc.code, "message": exc.message}}
        return 200, accepted.body()


CASES = {
    "chatwoot": ChatwootCase("chatwoot", "chatwoot", url="/webhook/chatwoot"),
    "whatsapp-waha": WahaCase("whatsapp-waha", "whatsapp", url="/api/comms/webhooks/waha"),
    "whatsapp-evolution": EvolutionCase(
        "whatsapp-evolution", "whatsapp", url="/api/comms/webhooks/evolution"
    ),
    "whatsapp-meta": MetaCase("whatsapp-meta", "whatsapp", url="/api/comms/webhooks/meta"),
    "whatsapp-mock": MockWhatsAppCase("whatsapp-mock", "whatsapp", url="/webhook/whatsapp"),
    "webchat": WebchatCase("webchat", "webchat"),
    "memory": MemoryCase("memory", "memory", url="/webhook/memory/1"),
    "http": HttpCase("http", "http", url="/webhook/http/1"),
}
PROVIDERS = {
    "whatsapp-waha": "waha",
    "whatsapp-evolution": "evolution",
    "whatsapp-meta": "meta_cloud",
    "whatsapp-mock": "mock",
}


def _available(name: str) -> bool:
    try:
        builder(name)
    except ChannelUnavailable:
        return False
    return True


# Parametrised from the registry: a channel whose module is there runs (an optional one
# that is not installed drops out).
CASE_IDS = [c for c in CASES if _available(CASES[c].channel)]


@asynccontextmanager
async def prepared(case_id: str, database_url: str) -> AsyncIterator[Case]:
    case = CASES[case_id]
    fake_app = create_fake_whatsapp(evolution_instances={"shop": "open"})
    receiver = _receiver()
    async with (
        serve_app(fake_app) as fake_url,
        serve_app(receiver.app) if receiver else nullcontext("http://127.0.0.1:9") as receiver_url,
        running_stack(
            database_url,
            behaviour="delay",
            delay=0.0,
            secret=SECRET,
            webchat=True,
            typing_delay_seconds=0,
            channel_settings={
                "http": {"inboxes": {"1": {"secret": HTTP_SECRET, "callback_url": receiver_url}}}
            },
        ) as stack,
    ):
        case.stack, case.fake = stack, fake_app.state.fake
        case.extra["receiver"] = receiver
        bridge = stack.bridge
        if case.channel != "chatwoot" and case.channel != "webchat":
            await bridge.save_mapping(
                InboxMapping(
                    channel=case.channel,
                    inbox_id=1,
                    agent_config=AgentConfig(
                        agent_id="agent1",
                        websocket_url=f"ws://127.0.0.1:{stack.agent_port}",
                        timeout_seconds=5,
                    ),
                )
            )
        if case.channel == "memory":
            bridge.channels["memory"] = MemoryChannel()
        if case_id in PROVIDERS:
            bridge.set_comms_settings(
                gateways_at(
                    fake_url,
                    provider=PROVIDERS[case_id],
                    waha_hmac_key="hmac-key-0123456789",
                    evolution_jwt_key="evo-jwt-secret-0123456789",
                    meta_app_secret="meta-app-secret-0123",
                    send_read_receipts=False,
                )
            )
        if case.channel == "webchat":
            session, _ = await bridge.store.open_session("ws_contract", inbox_id=1, timeout=600)
            case.extra["session"] = session
        yield case


def _receiver() -> Any:
    try:
        from chatbridge.channels.http_receiver import CallbackReceiver
    except ModuleNotFoundError:  # the http channel is not installed
        return None
    return CallbackReceiver(HTTP_SECRET)


async def _post_message(case: Case, msg_id: int, text: str) -> tuple[int, dict[str, Any]]:
    body, headers = case.message(msg_id, text)
    return await case.post(body, {**headers, **case.sign(body)})


async def _inbound_texts(case: Case) -> list[str]:
    async with case.bridge.store._tx() as conn:
        rows = (
            await conn.execute(
                select(t.messages.c.text)
                .join(t.conversations, t.conversations.c.id == t.messages.c.conversation_id)
                .where(t.conversations.c.channel == case.channel, t.messages.c.direction == "in")
                .order_by(t.messages.c.created_at, t.messages.c.id)
            )
        ).all()
    return [r.text for r in rows]


async def _turns(case: Case) -> int:
    async with case.bridge.store._tx() as conn:
        return len((await conn.execute(select(t.turns.c.id))).all())


def _signed(case: Case) -> bool:
    return bool(getattr(case.adapter, "signed", True))


@pytest.fixture(params=CASE_IDS)
async def case(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Case]:
    async with prepared(request.param, sqlite_url) as c:
        yield c


def test_every_registered_channel_is_in_the_suite() -> None:
    covered = {c.channel for c in CASES.values()}
    missing = {n for n in CHANNELS if n not in covered}
    assert not missing, f"channels without a case in the behaviour suite: {missing}"
    assert WEBHOOK_CHANNELS <= set(CHANNELS)


async def test_dedupe_the_same_message_twice_is_stored_once(case: Case) -> None:
    first = await _post_message(case, 1, "Is this in stock?")
    again = await _post_message(case, 1, "Is this in stock?")
    assert first[0] == 200 and first[1]["status"] in ("accepted", "stored"), first
    assert again == (200, {**again[1], "status": "duplicate"}), again
    assert await _inbound_texts(case) == ["Is this in stock?"]


async def test_order_two_messages_are_stored_in_order(case: Case) -> None:
    for msg_id, text in ((1, "first"), (2, "second")):
        status, body = await _post_message(case, msg_id, text)
        assert status == 200, body
    assert await _inbound_texts(case) == ["first", "second"]


async def test_loop_safety_our_own_echo_makes_no_turn(case: Case) -> None:
    if case.channel == "webchat":
        # nothing the bridge sends a visitor comes back as a visitor's message
        assert CASES["webchat"].channel not in WEBHOOK_CHANNELS
        return
    status, _ = await _post_message(case, 1, "hello")
    assert status == 200
    await case.stack.idle()  # type: ignore[union-attr]
    turns = await _turns(case)
    action, external_id = await case.send_message("Our own reply")
    echo = await case.echo_of(action, external_id)
    status, body = await case.post(echo, case.sign(echo))
    assert status == 200, body
    assert body["status"] in ("ignored", "stored"), body
    assert body.get("reason") not in ("owner:human",), body
    assert await _turns(case) == turns
    conv = await case.bridge.store.find_conversation(case.channel, case.conversation_key())
    assert conv is not None and conv.owner == "bot"


async def test_signature_bad_or_missing_is_401_where_the_channel_signs(case: Case) -> None:
    body, headers = case.message(1, "hello")
    if not _signed(case):
        # such a channel says so; its inbound is not authenticated by a signature
        assert case.sign(body) == {}
        return
    missing = await case.post(body, headers)
    bad = await case.post(body, {**headers, **case.bad_sign(body)})
    assert missing[0] == 401 and missing[1]["error"]["code"], missing
    assert bad[0] == 401 and bad[1]["error"]["code"], bad
    assert await _inbound_texts(case) == []


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b"malformed"])
async def test_bad_input_is_a_400_json_error_and_nothing_is_stored(case: Case, body: bytes) -> None:
    if body == b"malformed":
        if case.malformed is None:
            # WhatsApp gateways retry even a 4xx: a shape the provider does not know is
            # acknowledged, and nothing of it is stored
            status, answer = await case.post(b'{"event": 5}', case.sign(b'{"event": 5}'))
            assert (status, answer["status"]) == (200, "ignored"), answer
            assert await _inbound_texts(case) == []
            return
        body = case.malformed
    status, answer = await case.post(body, case.sign(body))
    assert status == 400, answer
    assert answer["error"]["code"] in ("invalid_json", "invalid_payload", "invalid_session_id")
    assert await _inbound_texts(case) == []


async def test_capabilities_are_honest(case: Case) -> None:
    status, _ = await _post_message(case, 1, "hello")
    assert status == 200
    await case.stack.idle()  # type: ignore[union-attr]
    channel = case.adapter
    assert isinstance(channel, Channel)
    conv = await case.bridge.store.find_conversation(case.channel, case.conversation_key())
    assert conv is not None
    before = await _deliveries(case, "typing_on")
    await case.bridge._on_typing("agent1", conv.id, True)
    queued = await _deliveries(case, "typing_on") - before
    assert queued == (1 if channel.capabilities.typing else 0)
    if channel.capabilities.typing:
        ref = ConversationRef(conv.id, case.channel, conv.channel_key, conv.inbox_id)
        await channel.send(OutboundAction("typing_on", ref, idempotency_key="d_typing"))
        assert _fake_saw_typing(case), "typing declared but it did not reach the fake"


NOTE = "Handoff (keyword). The agent's summary:\nWants a refund for order 1042."


async def test_notes_are_honest(case: Case) -> None:
    """A channel that declares ``notes`` shows a note to the team only: its fake records it
    as private and the customer's side gets nothing. One that does not refuses the note
    (``PermanentDelivery``) and sends nothing at all, rather than show it to the customer."""
    status, _ = await _post_message(case, 1, "hello")
    assert status == 200
    await case.stack.idle()  # type: ignore[union-attr]
    channel = case.adapter
    assert isinstance(channel, Channel)
    conv = await case.bridge.store.find_conversation(case.channel, case.conversation_key())
    assert conv is not None
    ref = ConversationRef(conv.id, case.channel, conv.channel_key, conv.inbox_id)
    note = OutboundAction("note", ref, idempotency_key="d_contract_note", text=NOTE)
    watch = _watch_customer_side(case)
    before = watch()
    if channel.capabilities.notes:
        await channel.send(note)
        assert _fake_saw_note(case, note), "notes declared but the note did not reach the team"
    else:
        with pytest.raises(PermanentDelivery):
            await channel.send(note)
        assert not _fake_saw_note(case, note)
    assert watch() == before, "the note reached the customer's side"


def _watch_customer_side(case: Case) -> Callable[[], object]:
    """A snapshot function of what the customer's side of the channel has been sent."""
    if case.channel == "chatwoot":
        mock = case.stack.mock  # type: ignore[union-attr]
        return lambda: [m["id"] for m in mock.received_messages if not m["private"]]
    if case.channel == "memory":
        channel = case.adapter
        assert isinstance(channel, MemoryChannel)
        return lambda: [a.idempotency_key for a in channel.actions if a.kind != "note"]
    if case.channel == "http":
        receiver = case.extra["receiver"]
        return lambda: [c["idempotency_key"] for c in receiver.received if c["type"] != "note"]
    if case.channel == "webchat":
        sub = case.adapter.live.subscribe(case.conversation_key())  # type: ignore[attr-defined]
        return lambda: list(sub.frames)
    if case.name == "whatsapp-mock":
        outbox = case.adapter.mock_outbox  # type: ignore[attr-defined]
        return lambda: len(outbox.items)
    fake = case.fake
    assert fake is not None
    return lambda: len(fake.requests)


def _fake_saw_note(case: Case, note: OutboundAction) -> bool:
    """Whether the team's side of the channel shows ``note`` (channels with a place for it)."""
    if case.channel == "chatwoot":
        return any(
            n["content"] == note.text and n["source_id"] == note.idempotency_key
            for n in case.stack.mock.notes()  # type: ignore[union-attr]
        )
    if case.channel == "http":
        receiver = case.extra["receiver"]
        return any(c["text"] == note.text for c in receiver.of_type("note"))
    if case.channel == "memory":
        channel = case.adapter
        assert isinstance(channel, MemoryChannel)
        return any(a.kind == "note" for a in channel.actions)
    # no team-only place: a channel here that declares notes needs a way to see them
    channel = case.adapter
    assert isinstance(channel, Channel)
    assert not channel.capabilities.notes, f"{case.name}: how does its fake show a note?"
    return False


async def test_the_memory_channel_shows_notes_only_when_built_to() -> None:
    ref = ConversationRef("c_1", "memory", "c1", 1)
    note = OutboundAction("note", ref, idempotency_key="d_note", text=NOTE)
    plain = MemoryChannel()
    with pytest.raises(PermanentDelivery, match="no private notes"):
        await plain.send(note)
    assert plain.actions == []
    with_notes = MemoryChannel(capabilities=Capabilities(notes=True))
    await with_notes.send(note)
    assert with_notes.actions == [note]


async def _deliveries(case: Case, kind: str) -> int:
    async with case.bridge.store._tx() as conn:
        rows = await conn.execute(select(t.deliveries.c.id).where(t.deliveries.c.kind == kind))
        return len(rows.all())


def _fake_saw_typing(case: Case) -> bool:
    if case.channel == "chatwoot":
        return "typing_on" in case.stack.actions()  # type: ignore[union-attr]
    if case.channel == "memory":
        channel = case.adapter
        assert isinstance(channel, MemoryChannel)
        return any(a.kind == "typing_on" for a in channel.actions)
    if case.channel == "http":
        receiver = case.extra["receiver"]
        return any("typing" in json.dumps(c) for c in receiver.received)
    if case.channel == "webchat":
        return True  # a live-only event: published to the session's (here: no) sockets
    assert case.fake is not None
    if case.name == "whatsapp-mock":
        outbox = case.adapter.mock_outbox.items  # type: ignore[attr-defined]
        return any(i["kind"] == "typing_on" for i in outbox)
    return any(
        "typ" in r.path.lower() or "presence" in r.path.lower() for r in case.fake.requests
    ) or any("typing" in json.dumps(r.json or {}) for r in case.fake.requests)
