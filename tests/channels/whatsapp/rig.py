"""WhatsApp settings the tests share: the three gateways (WAHA, Evolution, Meta's Graph API)
all at one URL, usually a ``create_fake_whatsapp`` server's."""

from __future__ import annotations

from typing import Any

from chatbridge.crm.settings import CommsSettings

PHONE_NUMBER_ID = "106540352242922"


def gateways_at(url: str, **extra: Any) -> CommsSettings:
    """Comms settings whose WAHA, Evolution and Meta gateways are all at ``url`` (with the
    fakes' keys, instance and phone number id); ``extra`` sets more (the provider, say)."""
    return CommsSettings(  # type: ignore[call-arg]
        _env_file=None,
        waha_base_url=url,
        waha_api_key="waha-key",
        evolution_base_url=url,
        evolution_api_key="evo-key",
        evolution_instance="shop",
        meta_graph_url=url,
        meta_access_token="meta-token",
        meta_phone_number_id=PHONE_NUMBER_ID,
        **extra,
    )
