"""WhatsApp message templates: synced from Meta or kept locally."""

from __future__ import annotations

from chatbridge.store.base import StoreBase


class TemplateStore(StoreBase):
    """WhatsApp message templates: synced from Meta or kept locally."""
