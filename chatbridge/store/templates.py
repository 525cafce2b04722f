"""WhatsApp message templates: synced from Meta's WhatsApp Business Account, or kept locally.

A template is unique by (name, language). ``source`` says where it came from: ``meta`` (read
from the WABA by ``sync_meta_templates``; its wording is Meta's, so only Meta changes it) or
``local`` (written here, for the gateways without templates: WAHA and Evolution send its
rendered text). A template a broadcast refers to cannot be deleted (the broadcast keeps its
history); a synced one that Meta no longer has is then kept with status ``deleted``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import Conn, StoreBase

Source = Literal["meta", "local"]


@dataclass(slots=True)
class TemplateRecord:
    """One stored template. ``components`` keep Meta's shape (``type`` HEADER / BODY /
    FOOTER / BUTTONS, upper case) whatever the source."""

    id: str
    name: str
    language: str
    category: str
    status: str
    components: list[dict[str, Any]] = field(default_factory=list)
    source: str = "local"
    external_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def body(self) -> dict[str, Any]:
        """The record as the API answers it."""
        return asdict(self)


@dataclass(slots=True)
class SyncCounts:
    """What one sync changed: templates added, updated, removed (and kept as ``deleted``)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    kept_deleted: int = 0


class TemplateTaken(Exception):
    """Another template already has this (name, language)."""

    def __init__(self, other_id: str) -> None:
        super().__init__(other_id)
        self.other_id = other_id


def _record(row: Any) -> TemplateRecord:
    return TemplateRecord(
        id=row.id,
        name=row.name,
        language=row.language,
        category=row.category,
        status=row.status,
        components=list(row.components or []),
        source=row.source,
        external_id=row.external_id,
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
    )


class TemplateStore(StoreBase):
    """Create, read, change, delete and sync message templates."""

    async def _template_named(
        self, conn: Conn, name: str, language: str, *, other_than: str | None = None
    ) -> str | None:
        tp = t.templates
        stmt = select(tp.c.id).where(and_(tp.c.name == name, tp.c.language == language))
        if other_than is not None:
            stmt = stmt.where(tp.c.id != other_than)
        found = (await conn.execute(stmt.limit(1))).scalar_one_or_none()
        return None if found is None else str(found)

    async def create_template(
        self,
        *,
        name: str,
        language: str,
        category: str,
        components: list[dict[str, Any]],
        source: Source = "local",
        status: str = "local",
        external_id: str | None = None,
    ) -> TemplateRecord:
        """Store a new template. Raises ``TemplateTaken`` when (name, language) exists."""
        now = time.time()
        record = TemplateRecord(
            id=new_id("tp"),
            name=name,
            language=language,
            category=category,
            status=status,
            components=components,
            source=source,
            external_id=external_id,
            created_at=now,
            updated_at=now,
        )
        async with self._tx() as conn:
            other = await self._template_named(conn, name, language)
            if other is not None:
                raise TemplateTaken(other)
            await conn.execute(t.templates.insert().values(**asdict(record)))
        return record

    async def get_template(self, template_id: str) -> TemplateRecord | None:
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.templates).where(t.templates.c.id == template_id))
            ).first()
        return None if row is None else _record(row)

    async def find_templates(self, name: str, language: str | None = None) -> list[TemplateRecord]:
        """The templates called ``name`` (in ``language`` when given), by language."""
        tp = t.templates
        stmt = select(tp).where(tp.c.name == name)
        if language is not None:
            stmt = stmt.where(tp.c.language == language)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt.order_by(tp.c.language))).all()
        return [_record(r) for r in rows]

    async def list_templates(
        self,
        *,
        q: str | None = None,
        source: str | None = None,
        status: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> tuple[list[TemplateRecord], int]:
        """Templates by name and language, with the total that match."""
        tp = t.templates
        where = []
        if q:
            pattern = f"%{q.lower()}%"
            where.append(or_(func.lower(tp.c.name).like(pattern), tp.c.language == q))
        if source:
            where.append(tp.c.source == source)
        if status:
            where.append(tp.c.status == status)
        cond = and_(*where) if where else None
        stmt = select(tp).order_by(tp.c.name, tp.c.language).limit(limit).offset(offset)
        count = select(func.count()).select_from(tp)
        if cond is not None:
            stmt = stmt.where(cond)
            count = count.where(cond)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).all()
            total = int((await conn.execute(count)).scalar_one())
        return [_record(r) for r in rows], total

    async def update_template(self, template_id: str, **changes: Any) -> TemplateRecord | None:
        """Change a template's fields (name, language, category, components, status).
        Returns None when there is no such template. Raises ``TemplateTaken``."""
        async with self._tx() as conn:
            row = (
                await conn.execute(select(t.templates).where(t.templates.c.id == template_id))
            ).first()
            if row is None:
                return None
            current = _record(row)
            name = changes.get("name", current.name)
            language = changes.get("language", current.language)
            other = await self._template_named(conn, name, language, other_than=template_id)
            if other is not None:
                raise TemplateTaken(other)
            changes["updated_at"] = time.time()
            await conn.execute(
                update(t.templates).where(t.templates.c.id == template_id).values(**changes)
            )
            row = (
                await conn.execute(select(t.templates).where(t.templates.c.id == template_id))
            ).first()
        return None if row is None else _record(row)

    async def template_in_use(self, template_id: str) -> bool:
        """Whether a broadcast refers to the template."""
        stmt = select(t.broadcasts.c.id).where(t.broadcasts.c.template_id == template_id)
        async with self._tx() as conn:
            return (await conn.execute(stmt.limit(1))).first() is not None

    async def delete_template(self, template_id: str) -> Literal["deleted", "missing", "in_use"]:
        """Delete a template, unless a broadcast refers to it."""
        async with self._tx() as conn:
            used = select(t.broadcasts.c.id).where(t.broadcasts.c.template_id == template_id)
            if (await conn.execute(used.limit(1))).first() is not None:
                return "in_use"
            result = await conn.execute(delete(t.templates).where(t.templates.c.id == template_id))
        return "deleted" if result.rowcount else "missing"

    async def sync_meta_templates(self, items: list[dict[str, Any]]) -> SyncCounts:
        """Make the ``meta`` templates what Meta listed, in one transaction.

        ``items`` are Meta's objects (``id``, ``name``, ``language``, ``status``,
        ``category``, ``components``). A local template with the same (name, language)
        becomes Meta's (what Meta approved is what will be sent). A synced template Meta no
        longer lists is deleted, or kept as ``deleted`` while a broadcast refers to it.
        """
        counts = SyncCounts()
        now = time.time()
        tp = t.templates
        seen: set[tuple[str, str]] = set()
        async with self._tx() as conn:
            existing = {(r.name, r.language): r for r in (await conn.execute(select(tp))).all()}
            for item in items:
                key = (str(item["name"]), str(item["language"]))
                if key in seen:
                    continue
                seen.add(key)
                values = {
                    "category": str(item.get("category") or "").lower()[:20] or "utility",
                    "status": str(item.get("status") or "").lower()[:20] or "approved",
                    "components": item.get("components") or [],
                    "source": "meta",
                    "external_id": str(item["id"]) if item.get("id") is not None else None,
                    "updated_at": now,
                }
                row = existing.get(key)
                if row is None:
                    await conn.execute(
                        tp.insert().values(
                            id=new_id("tp"),
                            name=key[0],
                            language=key[1],
                            created_at=now,
                            **values,
                        )
                    )
                    counts.added += 1
                else:
                    await conn.execute(update(tp).where(tp.c.id == row.id).values(**values))
                    counts.updated += 1
            for key, row in existing.items():
                if row.source != "meta" or key in seen:
                    continue
                used = select(t.broadcasts.c.id).where(t.broadcasts.c.template_id == row.id)
                if (await conn.execute(used.limit(1))).first() is not None:
                    await conn.execute(
                        update(tp).where(tp.c.id == row.id).values(status="deleted", updated_at=now)
                    )
                    counts.kept_deleted += 1
                else:
                    await conn.execute(delete(tp).where(tp.c.id == row.id))
                    counts.removed += 1
        return counts
