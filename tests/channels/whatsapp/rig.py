"""WhatsApp settings the tests share: the three gateways (WAHA, Evolution, Meta's Graph API)
all at one URL, usually a ``create_fake_whatsapp`` server's, and a bridge whose WhatsApp inbox
goes to an http-webhook agent."""

from __future__ import annotations

from typing import Any

from chatbridge.config import AgentConfig, InboxMapping, Settings
from chatbridge.crm.settings import CommsSettings
from tests.e2e.harness import FAST

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


def hook_agent_settings(
    database_url: str, *, instance_id: str, admin_key: str, hook_url: str, token: str, **extra: Any
) -> Settings:
    """A bridge (the tests' ``FAST`` timings) whose WhatsApp inbox 1 goes to the http-webhook
    agent ``agent1`` at ``{hook_url}/hook``; ``extra`` sets more (or overrides ``FAST``)."""
    return Settings(
        database_url=database_url,
        instance_id=instance_id,
        admin_key=admin_key,
        inbox_agent_mappings=[
            InboxMapping(
                channel="whatsapp",
                inbox_id=1,
                agent_config=AgentConfig(
                    agent_id="agent1",
                    transport="http-webhook",
                    webhook_url=f"{hook_url}/hook",
                    token=token,
                    timeout_seconds=5,
                ),
            )
        ],
        **{**FAST, **extra},
    )
