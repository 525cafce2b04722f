"""``ChatwootChannel``: the Chatwoot channel behind the ``Channel`` contract.

Inbound: the signature and its replay window (``X-Chatwoot-Signature`` /
``X-Chatwoot-Timestamp``, when a secret is configured), ``parse_delivery`` (``chatwoot``),
and the loop safety that needs memory: an echo of a reply this channel is sending or just
sent, reported as a human's message (see ``echoes``), is dropped here. The echoes that carry
our ``source_id`` are turned into ``DeliveryReceipt`` values by the parser itself.

Outbound: ``ChatwootAdapter`` (``chatwoot_api``), with each message's text noted around its
send for that echo check.
"""

from __future__ import annotations

from dataclasses import replace

from chatbridge.channels.base import Capabilities, ChannelContext, InboundRequest
from chatbridge.channels.chatwoot import parse_delivery
from chatbridge.channels.chatwoot_api import ChatwootAdapter
from chatbridge.channels.echoes import SentTexts
from chatbridge.channels.signatures import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_chatwoot_signature,
)
from chatbridge.config import Settings
from chatbridge.models import (
    DeliveryReceipt,
    Ignored,
    InboundMessage,
    OutboundAction,
    OwnerSignal,
    ParsedWebhook,
    SendResult,
)

_TIMESTAMP = TIMESTAMP_HEADER.lower()
_SIGNATURE = SIGNATURE_HEADER.lower()
_DELIVERY = DELIVERY_HEADER.lower()


class ChatwootChannel(ChatwootAdapter):
    """Chatwoot, both ways. Typing (``toggle_typing_status``) and interactive messages
    (``content_attributes`` passed through) work; private notes (``notes``: a message created
    with ``private: true``, which agents see and the customer never does) work with a bot's
    token as with a user's; attachments go out as links, so ``media`` is false; Chatwoot has
    no read receipts, templates or streaming for a bot."""

    capabilities = Capabilities(typing=True, interactive=True, notes=True)
    signed = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings.chatwoot_base_url,
            settings.chatwoot_api_access_token,
            timeout=settings.chatwoot_timeout_seconds,
        )
        self.settings = settings
        self.sent_texts = SentTexts()

    # ------------------------------------------------------------------ inbound
    async def parse(self, request: InboundRequest) -> list[ParsedWebhook]:
        headers = request.headers
        return [
            self.parse_delivery(
                request.body,
                timestamp=headers.get(_TIMESTAMP),
                signature=headers.get(_SIGNATURE),
                delivery_id=headers.get(_DELIVERY),
            )
        ]

    def parse_delivery(
        self,
        body: bytes,
        *,
        timestamp: str | None,
        signature: str | None,
        delivery_id: str | None,
    ) -> ParsedWebhook:
        """``parse`` of one delivery whose headers are already looked up (the webhook's fast
        path reads its four headers in one pass): checked, parsed and screened.

        Raises:
            BadSignature: a secret is set and the signature is missing, wrong or too old.
            BadInput: as ``chatwoot.parse_delivery``.
        """
        settings = self.settings
        secret = settings.chatwoot_webhook_secret
        if secret is not None:
            max_age = settings.chatwoot_signature_max_age_seconds
            check_chatwoot_signature(secret, body, timestamp, signature, max_age=max_age or None)
        parsed = parse_delivery(
            body, delivery_id=delivery_id, default_account_id=settings.chatwoot_account_id
        )
        kind = type(parsed)
        if kind is OwnerSignal or kind is DeliveryReceipt:
            return self.screen(parsed)
        return parsed

    def screen(self, parsed: ParsedWebhook) -> ParsedWebhook:
        """Drop a human's "reply" that is the echo of a text this channel is sending or just
        sent (posted with a user token, our reply comes back from a user)."""
        if isinstance(parsed, OwnerSignal):
            if parsed.text is not None and self.sent_texts.is_echo(parsed.channel_key, parsed.text):
                return Ignored("own_reply", delivery_id=parsed.delivery_id)
        elif isinstance(parsed, DeliveryReceipt) and parsed.otherwise is not None:
            signal = parsed.otherwise
            if signal.text is not None and self.sent_texts.is_echo(signal.channel_key, signal.text):
                # ours either way: a receipt if its key is ours, else dropped, never a takeover
                return replace(parsed, otherwise=None)
        return parsed

    def stored(self, message: InboundMessage) -> None:
        return None  # Chatwoot shows the bot's messages as read by itself

    # ------------------------------------------------------------------ outbound
    async def send(self, action: OutboundAction) -> SendResult:
        text = self.sent_texts.sending(action)
        try:
            return await super().send(action)
        finally:
            if text is not None:
                self.sent_texts.sent(action.conversation.channel_key, text)


def build(context: ChannelContext) -> ChatwootChannel:
    """The registry's entry point (``"chatwoot"``)."""
    return ChatwootChannel(context.settings)
