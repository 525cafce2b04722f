"""Shared set-up of the broadcast tests: people written straight into the store (fast, many),
a local template, and a worker sending through the real WhatsApp channel to the fake WAHA."""

from __future__ import annotations

import time
from typing import Any

from chatbridge.crm.segments import Segment, snapshot
from chatbridge.crm.settings import CommsSettings
from chatbridge.ids import new_id
from chatbridge.pipeline.broadcasts import address_for
from chatbridge.store import Store
from chatbridge.store import tables as t
from chatbridge.store.broadcasts import BroadcastRecord, PersonFacts

BODY = [{"type": "BODY", "text": "Hi {{1}}, {{2}} is back in stock."}]
WAHA_KEY = "waha-key"


def waha_settings(url: str, **extra: Any) -> CommsSettings:
    return CommsSettings(  # type: ignore[call-arg]
        _env_file=None,
        provider="waha",
        waha_base_url=url,
        waha_api_key=WAHA_KEY,
        waha_session="default",
        **extra,
    )


def phone_of(i: int) -> str:
    """A +1 555 test number per index (possible, not assigned: WhatsApp test range)."""
    return f"+1555{i:07d}"


async def add_people(
    store: Store,
    n: int,
    *,
    tags: list[str] | None = None,
    opted_out: set[int] | None = None,
    start: int = 0,
) -> list[str]:
    """``n`` people with phones (``opted_out``: their indexes), in one transaction."""
    now = time.time()
    rows = [
        {
            "id": new_id("ps"),
            "name": f"Person {i}",
            "phone": phone_of(i),
            "email": None,
            "company": None,
            "external_ref": None,
            "tags": tags or [],
            "opted_out_at": now if opted_out and i in opted_out else None,
            "meta": {},
            "created_at": now + i * 1e-6,
            "updated_at": now,
        }
        for i in range(start, start + n)
    ]
    async with store._tx() as conn:
        await conn.execute(t.people.insert(), rows)
    return [r["id"] for r in rows]


async def add_template(store: Store, name: str = "restock") -> str:
    template = await store.create_template(
        name=name, language="en", category="marketing", components=BODY
    )
    return template.id


async def create(
    store: Store,
    settings: CommsSettings,
    template_id: str,
    *,
    segment: dict[str, Any] | None = None,
    rate: float = 1000.0,
    parameters: dict[str, str] | None = None,
) -> BroadcastRecord:
    """A broadcast as the API creates it (segment snapshot through the real plan)."""
    seg = Segment.parse(segment or {})
    params = parameters or {"1": "{person.first_name}", "2": "The red kettle"}

    def plan(people: list[PersonFacts]) -> list[dict[str, Any]]:
        return snapshot(people, seg, params, lambda p: address_for(settings, p)).rows

    return await store.create_broadcast(
        name="restock",
        template_id=template_id,
        parameters=params,
        segment=seg.body(),
        rate_per_second=rate,
        plan=plan,
    )
