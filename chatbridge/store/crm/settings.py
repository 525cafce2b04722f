"""The comms settings changed through the API, one row per key; they win over the
environment's (``crm.linking.load_settings`` puts them together)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase


class CommsSettingsStore(StoreBase):
    """Stored comms settings: read them all, save the changed ones."""

    async def comms_overrides(self) -> dict[str, Any]:
        """The settings changed through the API (they win over the environment)."""
        async with self._tx() as conn:
            rows = await conn.execute(select(t.comms_settings.c.key, t.comms_settings.c.value))
            return {r.key: r.value for r in rows.all()}

    async def save_comms_settings(self, changes: Mapping[str, Any]) -> None:
        """Store changed settings, one row per key, in one transaction."""
        if not changes:
            return
        now = time.time()
        table = t.comms_settings
        async with self._tx() as conn:
            for key, value in changes.items():
                await conn.execute(
                    self._insert(table)
                    .values(key=key, value=value, updated_at=now)
                    .on_conflict_do_update(
                        index_elements=["key"], set_={"value": value, "updated_at": now}
                    )
                )
