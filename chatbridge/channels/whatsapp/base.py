"""The WhatsApp channel: one ``ChannelAdapter`` in front of four interchangeable providers.

    WhatsAppChannel (channel "whatsapp")
    ├── mock        in memory, no credentials (chatbridge.channels.whatsapp.mock)
    ├── waha        WAHA HTTP API            (… .waha)
    ├── evolution   Evolution API v2         (… .evolution)
    └── meta_cloud  Meta WhatsApp Cloud API  (… .meta)

A provider module has two halves: ``parse_webhook(headers, body, settings)`` (pure: checks
authenticity, returns neutral models) and a ``Provider`` class that sends through the
gateway. Modules are imported only when used (a lazy registry, as uvicorn does).

Conversations are keyed ``"<provider>:<instance>:<chat id>"`` (``ChatAddress``), so a reply
goes back through the provider and instance the customer wrote on, with the chat id that
provider understands. Settings are read through ``settings_source`` on every call, so a
change made at runtime (``Bridge.set_comms_settings``) applies to the next send.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from chatbridge.channels import interactive
from chatbridge.channels.base import Capabilities, ChannelContext, InboundRequest
from chatbridge.channels.echoes import SentTexts
from chatbridge.channels.whatsapp import interactive as wa_interactive
from chatbridge.channels.whatsapp import lookups, media_out, templates
from chatbridge.channels.whatsapp.gateway import GatewayError, GatewayHttp
from chatbridge.channels.whatsapp.ids import ChatAddress
from chatbridge.channels.whatsapp.lids import LidDirectory
from chatbridge.channels.whatsapp.media import mark_media
from chatbridge.crm.settings import CommsSettings
from chatbridge.errors import BadInput, PermanentDelivery
from chatbridge.models import (
    Attachment,
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OutboundAction,
    OwnerSignal,
    ParsedWebhook,
    SendResult,
)

if TYPE_CHECKING:
    from chatbridge.config import Settings
    from chatbridge.store import Store

log = logging.getLogger("chatbridge.whatsapp")

CHANNEL = "whatsapp"
# Meta's customer service window: free-form messages only within 24 h of the user's last one.
SERVICE_WINDOW_SECONDS = 24 * 3600
OUTSIDE_WINDOW = "outside Meta's 24-hour customer service window; a template message is needed"

_MODULES = {
    "mock": "chatbridge.channels.whatsapp.mock",
    "waha": "chatbridge.channels.whatsapp.waha",
    "evolution": "chatbridge.channels.whatsapp.evolution",
    "meta_cloud": "chatbridge.channels.whatsapp.meta",
}
# Names in webhook URLs (``/api/comms/webhooks/{name}``) → provider.
ROUTE_NAMES = {"mock": "mock", "waha": "waha", "evolution": "evolution", "meta": "meta_cloud"}


def provider_module(provider: str) -> ModuleType:
    """The module of ``provider`` (imported on first use)."""
    return importlib.import_module(_MODULES[provider])


@dataclass(slots=True)
class ProviderCheck:
    """What ``POST /api/comms/provider/test`` answers: ok, and what is wrong in plain words."""

    provider: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def gateway_problem(
        self,
        exc: GatewayError,
        *,
        unreachable: str,
        refused: str,
        unknown: str,
        other: str,
        unknown_statuses: tuple[int, ...] = (404,),
    ) -> ProviderCheck:
        """Note why a check call failed: the gateway could not be reached, refused our
        credentials (401/403), does not know what we named (``unknown_statuses``), or else."""
        if exc.status is None:
            self.problems.append(f"{unreachable}: {exc}")
        elif exc.status in (401, 403):
            self.problems.append(refused)
        elif exc.status in unknown_statuses:
            self.problems.append(unknown)
        else:
            self.problems.append(f"{other}: {exc}")
        return self

    def body(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
            "details": self.details,
        }


class Outbox:
    """What the mock provider "sent": the newest ``limit`` requests, oldest first."""

    def __init__(self, limit: int = 500) -> None:
        self.items: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = 0

    def record(self, kind: str, chat: ChatAddress, **fields: Any) -> str:
        self._seq += 1
        message_id = f"mock-out-{self._seq}"
        self.items.append(
            {
                "id": message_id,
                "kind": kind,
                "instance": chat.instance,
                "chat_id": chat.chat_id,
                "at": time.time(),
                **fields,
            }
        )
        return message_id


@dataclass(slots=True)
class ProviderContext:
    """What a provider is built from: the current settings and the shared HTTP client."""

    settings: CommsSettings
    http: GatewayHttp
    outbox: Outbox


class WhatsAppProvider(Protocol):
    """Sends through one gateway. Every method raises ``RetryableDelivery`` or
    ``PermanentDelivery`` on failure; ids returned are the gateway's message ids."""

    name: str

    async def send_text(self, chat: ChatAddress, text: str) -> str | None: ...

    async def send_media(
        self, chat: ChatAddress, attachment: Attachment, caption: str | None
    ) -> str | None: ...

    async def set_typing(
        self, chat: ChatAddress, on: bool, *, last_inbound_id: str | None
    ) -> None: ...

    async def mark_read(self, chat: ChatAddress, message_ids: list[str]) -> None: ...

    async def check(self) -> ProviderCheck: ...


def parse_webhook(
    provider: str, headers: Mapping[str, str], body: bytes, settings: CommsSettings
) -> list[ParsedWebhook]:
    """Verify and parse one webhook delivery of ``provider`` (one delivery may hold several
    messages: Meta batches them)."""
    parse: Callable[[Mapping[str, str], bytes, CommsSettings], list[ParsedWebhook]]
    parse = provider_module(provider).parse_webhook
    return parse(headers, body, settings)


def require_provider(settings: CommsSettings, name: str) -> None:
    """Refuse (404, nothing stored) unless ``name`` is the provider chosen in the settings.

    With no provider chosen (the default) WhatsApp is off; the mock provider, which checks no
    credentials, is open only when an operator (or the demo) picked it.

    Raises:
        BadInput: ``whatsapp_not_configured`` or ``provider_not_active`` (404).
    """
    if settings.provider == "none":
        raise BadInput(
            "whatsapp_not_configured",
            "WhatsApp is off: no provider is configured (set CHATBRIDGE_COMMS_PROVIDER or "
            "PATCH /api/comms/settings)",
            status_code=404,
        )
    if name != settings.provider:
        raise BadInput(
            "provider_not_active",
            f"the configured WhatsApp provider is {settings.provider!r}, not {name!r}",
            status_code=404,
        )


class WhatsAppChannel:
    """The ``Channel`` for channel ``"whatsapp"``.

    Inbound, ``parse`` checks that the request's provider (the ``provider`` path parameter,
    as in ``/api/comms/webhooks/{provider}``, else the configured one) is the one in use,
    lets that provider check the request's authenticity and parse it, and screens the echoes
    of our own sends (``screen``). Loop safety lives here: message ids our sends returned,
    the store's record of them, and the texts being sent (an echo can come back before the
    send call returns its id).

    Args:
        settings_source: returns the current ``CommsSettings`` (called on every use).
        store: the bridge's store; needed for Meta's 24-hour window and typing indicator,
            and to recognise our own messages' echoes across processes. Without it the window
            is not checked (a warning is logged) and echoes are recognised in this process only.
        timeout: total seconds per gateway request.
    """

    name = CHANNEL
    # Typing, read receipts and media (by URL) work on every provider; choices (interactive)
    # are Meta's interactive messages, numbered text elsewhere (whatsapp/interactive.py).
    # No ``notes``: a WhatsApp chat has no part the customer does not see (the team reads
    # notes in the console).
    capabilities = Capabilities(
        typing=True, read_receipts=True, media=True, interactive=True, choices=True
    )
    # how long a message's turn waits for its media to download (media.py; build() sets it)
    media_hold: float = 20.0
    # the bridge's settings (media folder, public URL): stored files are sent as bytes
    media_settings: Settings | None = None

    def __init__(
        self,
        settings_source: Callable[[], CommsSettings],
        *,
        store: Store | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.settings_source = settings_source
        self.store = store
        self.http = GatewayHttp(timeout=timeout)
        self.mock_outbox = Outbox()
        self._sent_ids: OrderedDict[str, None] = OrderedDict()
        self.sent_texts = SentTexts()
        self.lids = LidDirectory(self.http)  # WAHA @lid → phone, cached
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ providers
    def provider(self, name: str | None = None) -> WhatsAppProvider:
        """The provider ``name`` (default: the configured one), built on current settings."""
        settings = self.settings_source()
        name = name or settings.provider
        if name not in _MODULES:
            raise PermanentDelivery(f"unknown WhatsApp provider {name!r}")
        cls = provider_module(name).Provider
        provider: WhatsAppProvider = cls(ProviderContext(settings, self.http, self.mock_outbox))
        return provider

    async def check_provider(self) -> ProviderCheck:
        """Reach the configured provider with its credentials; say what is wrong, if anything."""
        return await self.provider().check()

    # ------------------------------------------------------------------ own messages
    def remember_sent(self, *ids: str | None) -> None:
        for message_id in ids:
            if message_id:
                self._sent_ids[message_id] = None
        while len(self._sent_ids) > 10_000:
            self._sent_ids.popitem(last=False)

    async def is_own_message(self, external_id: str) -> bool:
        """Whether ``external_id`` (any form the provider reports) came back from our send."""
        candidates = own_id_forms(external_id)
        if any(c in self._sent_ids for c in candidates):
            return True
        if self.store is None:
            return False
        return await lookups.sent_by_bridge(self.store, candidates)

    # ------------------------------------------------------------------ inbound
    @property
    def signed(self) -> bool:
        """Whether webhooks are authenticated: each provider's own check (HMAC, secret
        header, JWT) when configured; the mock provider checks nothing."""
        return self.settings_source().provider != "mock"

    async def parse(self, request: InboundRequest) -> list[ParsedWebhook]:
        """Check and parse one gateway webhook (Meta batches several messages in one).

        Raises:
            BadInput: 404 WhatsApp off or another provider in use, 401 not authentic, 400
                malformed.
        """
        settings = self.settings_source()
        route_name = request.path.get("provider")
        name = settings.provider if route_name is None else ROUTE_NAMES.get(route_name)
        if name is None:
            raise BadInput("not_found", f"no WhatsApp provider {route_name!r}", status_code=404)
        require_provider(settings, name)
        parsed = parse_webhook(name, request.headers, request.body, settings)
        # a WAHA chat named only by @lid gets its phone first (lids.py), then echoes are screened
        # and a message's attachments become download jobs stored with it (media.py)
        return [
            mark_media(await self.screen(await self.lids.resolve(item, settings)), self.media_hold)
            for item in parsed
        ]

    def stored(self, message: InboundMessage) -> None:
        """A customer's message is stored: mark it read (in the background, if enabled)."""
        if message.external_message_id:
            self.send_read_receipt(message.channel_key, message.external_message_id)

    async def screen(self, parsed: ParsedWebhook) -> ParsedWebhook:
        """Drop the echo of a message the bridge sent (it would look like a human's reply).

        A ``fromMe`` message (a ``DeliveryReceipt`` without our key) whose id a finished
        delivery of ours already has is dropped: nothing waits for it. One whose id only this
        process knows (sent, not yet recorded as done) is surely ours: it goes on as a
        receipt that can no longer mean a human took over. Any other goes on as parsed, to be
        matched to a send of ours that a crash cut off.
        """
        if isinstance(parsed, OwnerSignal):
            if parsed.external_message_id and await self.is_own_message(parsed.external_message_id):
                return Ignored("own_message")
            if parsed.text is not None and self.sent_texts.is_echo(parsed.channel_key, parsed.text):
                return Ignored("own_reply")
        if (
            isinstance(parsed, DeliveryReceipt)
            and parsed.idempotency_key is None
            and parsed.external_message_id
        ):
            forms = own_id_forms(parsed.external_message_id)
            if self.store is not None and await lookups.sent_by_bridge(self.store, forms):
                return Ignored("own_message")
            if parsed.otherwise is not None and any(c in self._sent_ids for c in forms):
                return replace(parsed, otherwise=None)
        if isinstance(parsed, DeliveryReceipt) and parsed.otherwise is not None:
            signal = parsed.otherwise
            if signal.text is not None and self.sent_texts.is_echo(signal.channel_key, signal.text):
                return replace(parsed, otherwise=None)
        return parsed

    # ------------------------------------------------------------------ sending
    async def send(self, action: OutboundAction) -> SendResult:
        """Send a message (text, media by URL), typing on/off; handoff is a no-op here (the
        bridge records the owner change; WhatsApp has nothing to switch).

        Raises:
            RetryableDelivery: gateway unreachable, timed out, 408/429/5xx.
            PermanentDelivery: other refusals; a malformed channel key; for Meta, a message
                outside the 24-hour customer service window; a private note (``notes`` is
                false: anything sent to the chat reaches the customer).
        """
        if action.kind == "note":
            raise PermanentDelivery("whatsapp has no private notes: the customer would see it")
        chat = ChatAddress.parse(action.conversation.channel_key)
        if action.kind == "message" and action.template is not None:
            return await templates.send_template(self, chat, action)  # no 24 h window for these
        provider = self.provider(chat.provider)
        if action.kind == "message":
            if chat.provider == "meta_cloud":
                await self._check_window(action.conversation.id)
            # the words the gateway will echo: with choices, their numbered text
            text = self.sent_texts.sending(interactive.with_numbered_choices(action))
            try:
                first = await self._send_message(provider, chat, action)
            finally:
                if text is not None:
                    self.sent_texts.sent(action.conversation.channel_key, text)
            return SendResult(external_id=first)
        if action.kind in ("typing_on", "typing_off"):
            last_id = None
            if chat.provider == "meta_cloud":
                last_id = await self._last_inbound_id(action.conversation.id)
            await provider.set_typing(chat, action.kind == "typing_on", last_inbound_id=last_id)
            return SendResult()
        if action.kind == "handoff":
            return SendResult()
        raise PermanentDelivery(f"whatsapp cannot perform action kind {action.kind!r}")

    async def _send_message(
        self, provider: WhatsAppProvider, chat: ChatAddress, action: OutboundAction
    ) -> str | None:
        text = action.text or ""
        ids: list[str | None] = []
        # stored files read, every attachment checked against WhatsApp's limits: before the
        # first send, so a refused reply sends nothing (media_out.py)
        attachments = await media_out.prepare(
            [a for a in action.attachments if a.url], self.store, self.media_settings
        )
        caption: str | None = text or None
        offer = interactive.Offer.from_json(action.interactive)
        if offer is not None:  # the words go with the choices, after any attachment
            caption = None
        if caption and attachments and (attachments[0].mime or "").startswith("audio/"):
            ids.append(await provider.send_text(chat, caption))  # voice notes have no caption
            caption = None
        for index, attachment in enumerate(attachments):
            ids.append(await provider.send_media(chat, attachment, caption if index == 0 else None))
        if offer is not None:
            ids.append(await wa_interactive.send_offer(provider, chat, text, offer))
        elif not attachments:
            if not text.strip():
                raise PermanentDelivery("whatsapp cannot send an empty message")
            ids.append(await provider.send_text(chat, text))
        self.remember_sent(*(own for i in ids if i for own in own_id_forms(i)))
        return next((i for i in ids if i), None)

    async def _check_window(self, conversation_id: str) -> None:
        if self.store is None:
            log.warning("no store: Meta's 24-hour window is not checked for %s", conversation_id)
            return
        last = await lookups.last_inbound(self.store, conversation_id)
        if last is None or time.time() - last[0] > SERVICE_WINDOW_SECONDS:
            raise PermanentDelivery(OUTSIDE_WINDOW)

    async def _last_inbound_id(self, conversation_id: str) -> str | None:
        if self.store is None:
            return None
        last = await lookups.last_inbound(self.store, conversation_id)
        return None if last is None else last[1]

    async def already_sent(self, action: OutboundAction) -> bool | None:
        """WhatsApp gateways cannot be asked by our idempotency key: ``None``."""
        return None

    # ------------------------------------------------------------------ read receipts
    def send_read_receipt(self, channel_key: str, message_id: str) -> None:
        """Mark a customer's message read, in the background and best effort (a failure is
        only logged). Does nothing unless ``send_read_receipts`` is on."""
        if not self.settings_source().send_read_receipts:
            return
        task = asyncio.create_task(self._read_receipt(channel_key, message_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _read_receipt(self, channel_key: str, message_id: str) -> None:
        try:
            chat = ChatAddress.parse(channel_key)
            await self.provider(chat.provider).mark_read(chat, [message_id])
        except Exception as exc:
            log.info("read receipt for %s not sent: %s", message_id, exc)

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.http.aclose()


def build(context: ChannelContext) -> WhatsAppChannel:
    """The registry's entry point (``"whatsapp"``): settings read on every use."""
    channel = WhatsAppChannel(context.comms_settings, store=context.store)
    channel.media_hold = context.settings.media_wait_seconds
    channel.media_settings = context.settings  # where stored media are read for sending
    return channel


def own_id_forms(external_id: str) -> list[str]:
    """The forms a provider may report one of our message ids in.

    WAHA reports ``"true_<chat>_<id>"`` in webhooks while some engines return only the
    short id from a send; both are remembered and looked up.
    """
    forms = [external_id]
    head, sep, _ = external_id.partition("_")
    if sep and head in ("true", "false"):
        parts = external_id.split("_")
        if len(parts) >= 3:
            forms.append(parts[2])
    return forms
