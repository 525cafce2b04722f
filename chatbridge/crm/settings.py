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

    provider: Provider = Field(
        default="none",
        description="the WhatsApp provider: none (WhatsApp off, its webhooks answer 404), mock "
        "(demos only: no webhook authentication), waha, evolution or meta_cloud",
    )
    # which bridge inbox (route) each provider instance / number belongs to; others → default
    instance_inboxes: dict[str, int] = Field(
        default_factory=dict,
        description="JSON object: which bridge inbox (route) each provider instance or number "
        'belongs to, e.g. {"sales": 2}; others go to default_inbox_id',
    )
    default_inbox_id: int = Field(
        default=1,
        ge=0,
        le=2**31 - 1,
        description="the inbox (route) of WhatsApp messages whose instance or number "
        "instance_inboxes does not name",
    )
    default_country: str = Field(
        default="US",
        min_length=2,
        max_length=2,
        description="two-letter country code used to read phone numbers written without an "
        "international prefix",
    )
    auto_link: bool = Field(
        default=True,
        description="link a WhatsApp thread to the person with the same phone number automatically",
    )
    groups_enabled: bool = Field(
        default=False, description="take messages from WhatsApp groups (ignored otherwise)"
    )
    status_broadcasts_enabled: bool = Field(
        default=False, description="take WhatsApp status broadcasts (ignored otherwise)"
    )
    send_read_receipts: bool = Field(
        default=True, description="mark a customer's WhatsApp message read once it is stored"
    )

    # WAHA
    waha_base_url: str = Field(
        default="http://127.0.0.1:3000", description="WAHA: the gateway's address"
    )
    waha_session: str = Field(
        default="default", description="WAHA: the session (phone) messages are sent from"
    )
    waha_api_key: str | None = Field(
        default=None, description="WAHA: the API key sent as X-Api-Key; write-only"
    )
    waha_hmac_key: str | None = Field(
        default=None,
        description="WAHA: the HMAC key of its webhooks (the same hmac.key on WAHA's webhook); "
        "write-only",
    )
    # ask WAHA for the phone behind an @lid chat that came without remoteJidAlt (channels/
    # whatsapp/lids.py), so the thread links to the person with that phone
    waha_lid_lookup: bool = Field(
        default=True,
        description="WAHA: ask the gateway for the phone behind an @lid chat, so the thread links "
        "to the person with that phone",
    )

    # Evolution API v2
    evolution_base_url: str = Field(
        default="http://127.0.0.1:8080", description="Evolution API: the gateway's address"
    )
    evolution_instance: str = Field(
        default="default", description="Evolution API: the instance messages are sent from"
    )
    evolution_api_key: str | None = Field(
        default=None, description="Evolution API: the API key sent as apikey; write-only"
    )
    evolution_webhook_header_name: str = Field(
        default="X-Webhook-Secret",
        description="Evolution API: the header its webhooks carry the shared secret in",
    )
    evolution_webhook_header_value: str | None = Field(
        default=None,
        description="Evolution API: the shared secret its webhooks must carry in that header; "
        "write-only",
    )
    evolution_jwt_key: str | None = Field(
        default=None,
        description="Evolution API: the key of its JWT-signed webhooks (instead of the header "
        "secret); write-only",
    )

    # Meta WhatsApp Cloud API
    meta_graph_url: str = Field(
        default="https://graph.facebook.com",
        description="Meta WhatsApp Cloud API: the Graph API's address",
    )
    meta_api_version: str = Field(
        default="v23.0", description="Meta WhatsApp Cloud API: the Graph API version"
    )
    meta_phone_number_id: str | None = Field(
        default=None,
        description="Meta WhatsApp Cloud API: the phone number id messages are sent from",
    )
    meta_access_token: str | None = Field(
        default=None, description="Meta WhatsApp Cloud API: the access token; write-only"
    )
    meta_app_secret: str | None = Field(
        default=None,
        description="Meta WhatsApp Cloud API: the app secret its webhook signatures "
        "(X-Hub-Signature-256) are checked with; write-only",
    )
    meta_verify_token: str | None = Field(
        default=None,
        description="Meta WhatsApp Cloud API: the token of the webhook verification handshake; "
        "write-only",
    )
    # the WhatsApp Business Account whose templates are synced (CHATBRIDGE_COMMS_META_WABA_ID)
    meta_waba_id: str | None = Field(
        default=None,
        description="Meta WhatsApp Cloud API: the WhatsApp Business Account whose templates are "
        "synced",
    )

    # broadcasts (pipeline/broadcasts.py): the default pace, messages per second. WAHA and
    # Evolution drive a phone's WhatsApp session, which has no published limit: keep it low
    # (CHATBRIDGE_COMMS_BROADCAST_RATE); Meta: the number's throughput tier (80/s by default)
    broadcast_rate: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="broadcasts on WAHA and Evolution: messages per second (a phone's WhatsApp "
        "session has no published limit: keep it low)",
    )
    broadcast_meta_rate: float = Field(
        default=80.0,
        gt=0,
        le=1000,
        description="broadcasts on Meta: messages per second (the number's throughput tier)",
    )

    # call recordings → transcripts
    transcription_provider: TranscriptionProvider = Field(
        default="none",
        description="call recordings and voice notes to text: none (off), openai (an "
        "OpenAI-compatible API) or local (faster_whisper or whisper, if installed)",
    )
    transcription_base_url: str = Field(
        default="https://api.openai.com/v1", description="openai transcription: the API root"
    )
    transcription_api_key: str | None = Field(
        default=None, description="openai transcription: the Bearer key; write-only"
    )
    transcription_model: str = Field(
        default="whisper-1", description="openai transcription: the model"
    )
    recordings_dir: str = Field(
        default="./recordings", description="folder where uploaded call recordings are kept"
    )

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
