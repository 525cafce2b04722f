"""Broadcasts: a template sent to a CRM segment, one row per recipient, leased."""

from __future__ import annotations

from chatbridge.store.base import StoreBase


class BroadcastStore(StoreBase):
    """Broadcasts: a template sent to a CRM segment, one row per recipient, leased."""
