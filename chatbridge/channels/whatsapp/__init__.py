"""The WhatsApp channel ("whatsapp"): mock, WAHA, Evolution API v2 and Meta Cloud API providers
behind one ``ChannelAdapter`` (see ``base``)."""

from chatbridge.channels.whatsapp.base import (
    CHANNEL,
    ROUTE_NAMES,
    ProviderCheck,
    WhatsAppChannel,
    parse_webhook,
)
from chatbridge.channels.whatsapp.ids import ChatAddress

__all__ = [
    "CHANNEL",
    "ROUTE_NAMES",
    "ChatAddress",
    "ProviderCheck",
    "WhatsAppChannel",
    "parse_webhook",
]
