"""The media store's index and its durable download (and transcription) jobs."""

from __future__ import annotations

from chatbridge.store.base import StoreBase


class MediaStore(StoreBase):
    """The media store's index and its durable download (and transcription) jobs."""
