"""The comms module's settings: which WhatsApp provider, its credentials, linking, calls.

Defaults come from the environment (``CHATBRIDGE_COMMS_…``); ``PATCH /api/comms/settings``
stores changes in the ``comms_settings`` table, which win over the environment. Secrets are
write-only: ``public_view()`` masks them and says which are set (``*_set``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# "none" (the default): WhatsApp is off, every provider webhook answers 404 and stores nothing.
# The mock provider has no webhook authentication at all, so it is only ever chosen explicitly.
Provider = Literal["none", "mock", "waha", "evolution", "meta_cloud"]
TranscriptionProvider = Literal["none", "openai", "local"]

# Fields that are secrets: never returned, only whether they are set.
SECRETS = (
    "waha_api_key",
    "waha_hmac_key",
    "evolution_api_key",
    "evolution_webhook_header_value",
    "evolution_jwt_key",
    "meta_access_token",
    "meta_app_secret",
    "meta_verify_token",
    "transcription_api_key",
)


class CommsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHATBRIDGE_COMMS_", env_file=".env", extra="ignore", validate_assignment=True
    )

    provider: Provider = "none"
    # which bridge inbox (route) each provider instance / number belongs to; others → default
    instance_inboxes: dict[str, int] = Field(default_factory=dict)
    default_inbox_id: int = Field(default=1, ge=0, le=2**31 - 1)
    default_country: str = Field(default="US", min_length=2, max_length=2)
    auto_link: bool = True
    groups_enabled: bool = False
    status_broadcasts_enabled: bool = False
    send_read_receipts: bool = True

    # WAHA
    waha_base_url: str = "http://127.0.0.1:3000"
    waha_session: str = "default"
    waha_api_key: str | None = None
    waha_hmac_key: str | None = None
    # ask WAHA for the phone behind an @lid chat that came without remoteJidAlt (channels/
    # whatsapp/lids.py), so the thread links to the person with that phone
    waha_lid_lookup: bool = True

    # Evolution API v2
    evolution_base_url: str = "http://127.0.0.1:8080"
    evolution_instance: str = "default"
    evolution_api_key: str | None = None
    evolution_webhook_header_name: str = "X-Webhook-Secret"
    evolution_webhook_header_value: str | None = None
    evolution_jwt_key: str | None = None

    # Meta WhatsApp Cloud API
    meta_graph_url: str = "https://graph.facebook.com"
    meta_api_version: str = "v23.0"
    meta_phone_number_id: str | None = None
    meta_access_token: str | None = None
    meta_app_secret: str | None = None
    meta_verify_token: str | None = None
    # the WhatsApp Business Account whose templates are synced (CHATBRIDGE_COMMS_META_WABA_ID)
    meta_waba_id: str | None = None

    # broadcasts (pipeline/broadcasts.py): the default pace, messages per second. WAHA and
    # Evolution drive a phone's WhatsApp session, which has no published limit: keep it low
    # (CHATBRIDGE_COMMS_BROADCAST_RATE); Meta: the number's throughput tier (80/s by default)
    broadcast_rate: float = Field(default=1.0, gt=0, le=1000)
    broadcast_meta_rate: float = Field(default=80.0, gt=0, le=1000)

    # call recordings → transcripts
    transcription_provider: TranscriptionProvider = "none"
    transcription_base_url: str = "https://api.openai.com/v1"
    transcription_api_key: str | None = None
    transcription_model: str = "whisper-1"
    recordings_dir: str = "./recordings"

    def public_view(self) -> dict[str, Any]:
        """Every setting, secrets masked (``"********"`` or null) with ``<name>_set`` flags."""
        out = self.model_dump()
        for name in SECRETS:
            value = out.pop(name)
            out[name] = "********" if value else None
            out[f"{name}_set"] = bool(value)
        return out

    def updated(self, changes: dict[str, Any]) -> CommsSettings:
        """A copy with ``changes`` applied and validated (raises ``ValidationError``)."""
        merged = {**self.model_dump(), **changes}
        return CommsSettings.model_validate(merged)
