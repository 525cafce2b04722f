"""The WhatsApp channel ("whatsapp"): mock, WAHA, Evolution API v2 and Meta Cloud API providers
behind one ``Channel`` (see ``base``)."""

from chatbridge.channels.whatsapp.base import (
    CHANNEL,
    ROUTE_NAMES,
    ProviderCheck,
    WhatsAppChannel,
    build,
    parse_webhook,
    require_provider,
)
from chatbridge.channels.whatsapp.ids import ChatAddress

__all__ = [
    "CHANNEL",
    "ROUTE_NAMES",
    "ChatAddress",
    "ProviderCheck",
    "WhatsAppChannel",
    "build",
    "parse_webhook",
    "require_provider",
]
