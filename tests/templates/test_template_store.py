"""The template store on SQLite and PostgreSQL: unique (name, language), lookups by name, and
the sync that makes the synced templates what Meta lists without losing a broadcast's."""

from __future__ import annotations

import time

import pytest

from chatbridge.channels.whatsapp.templates import TemplateProblem, resolve
from chatbridge.store import Store
from chatbridge.store import tables as t
from chatbridge.store.templates import TemplateTaken

BODY = [{"type": "BODY", "text": "Hi {{1}}"}]


def meta(name: str, language: str = "en_US", status: str = "APPROVED") -> dict[str, object]:
    return {
        "id": f"id-{name}-{language}",
        "name": name,
        "language": language,
        "status": status,
        "category": "MARKETING",
        "components": BODY,
    }


async def test_unique_by_name_and_language_and_found_by_name(store: Store) -> None:
    en = await store.create_template(name="hi", language="en", category="utility", components=BODY)
    await store.create_template(name="hi", language="de", category="utility", components=BODY)
    with pytest.raises(TemplateTaken) as caught:
        await store.create_template(name="hi", language="en", category="utility", components=[])
    assert caught.value.other_id == en.id
    assert [x.language for x in await store.find_templates("hi")] == ["de", "en"]
    with pytest.raises(TemplateProblem, match=r"several languages \(de, en\)"):
        await resolve(store, "hi", None)
    assert (await resolve(store, "hi", "en")).id == en.id
    with pytest.raises(TemplateTaken):
        await store.update_template(en.id, language="de")
    changed = await store.update_template(en.id, components=[{"type": "BODY", "text": "Yo"}])
    assert changed is not None and changed.components == [{"type": "BODY", "text": "Yo"}]
    assert await store.delete_template(en.id) == "deleted"
    assert await store.delete_template(en.id) == "missing"


async def test_sync_adds_updates_removes_and_keeps_what_a_broadcast_needs(store: Store) -> None:
    local = await store.create_template(
        name="promo", language="en_US", category="marketing", components=[]
    )
    counts = await store.sync_meta_templates([meta("promo"), meta("gone"), meta("used")])
    assert (counts.added, counts.updated) == (2, 1)
    promo = await store.get_template(local.id)
    assert promo is not None
    assert (promo.source, promo.status, promo.external_id) == ("meta", "approved", "id-promo-en_US")
    assert promo.components == BODY and promo.category == "marketing"

    [used] = await store.find_templates("used")
    now = time.time()
    async with store._tx() as conn:
        await conn.execute(
            t.broadcasts.insert().values(
                id="b1",
                name="spring",
                template_id=used.id,
                parameters={},
                segment={},
                rate_per_second=1.0,
                state="done",
                total=0,
                created_at=now,
                updated_at=now,
            )
        )
    assert await store.delete_template(used.id) == "in_use"
    counts = await store.sync_meta_templates([meta("promo", status="PAUSED")])
    assert (counts.updated, counts.removed, counts.kept_deleted) == (1, 1, 1)
    assert await store.find_templates("gone") == []
    [kept] = await store.find_templates("used")
    assert kept.status == "deleted"
    with pytest.raises(TemplateProblem, match="deleted at Meta"):
        await resolve(store, "used", None)
    [paused] = await store.find_templates("promo")
    assert paused.status == "paused"
    listed, total = await store.list_templates(source="meta")
    assert total == 2 and [x.name for x in listed] == ["promo", "used"]
