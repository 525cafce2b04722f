"""What the CRM tables read back as: JSON-ready rows (the comms API shows them nearly as they
are), and the small reads every CRM part of the store shares.

A row is a ``TypedDict``: a plain dict at run time, so the API serialises it without a copy.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

from sqlalchemy import ColumnElement, Row, select

from chatbridge.store import tables as t
from chatbridge.store.base import Conn

# The columns a person is written with (the rest are the store's own).
PERSON_FIELDS = (
    "name",
    "phone",
    "email",
    "company",
    "external_ref",
    "meta",
    "tags",
    "opted_out_at",
)


class PersonRef(TypedDict):
    """The person a thread is linked to, as the thread list shows them."""

    id: str
    name: str
    phone: str | None


class Person(TypedDict):
    id: str
    name: str
    phone: str | None  # E.164
    email: str | None
    company: str | None
    external_ref: str | None  # the id in the user's own CRM
    meta: dict[str, Any]  # the user's own JSON
    tags: list[str]  # lower case; broadcast segments filter on them
    opted_out_at: float | None  # no broadcasts after this
    created_at: float
    updated_at: float


class Note(TypedDict):
    id: str
    conversation_id: str | None
    person_id: str | None
    text: str
    author: str | None
    created_at: float


class Task(TypedDict):
    id: str
    conversation_id: str | None
    person_id: str | None
    title: str
    due_at: float | None
    done: bool
    created_at: float
    updated_at: float


class Call(TypedDict):
    """A call log with its transcription job's state (the lease stays inside the store)."""

    id: str
    conversation_id: str | None
    person_id: str | None
    phone: str | None
    direction: str  # inbound | outbound
    duration_seconds: float | None
    started_at: float | None
    recording_url: str | None
    recording_path: str | None
    transcript_status: str  # none | queued | running | done | failed
    transcript: str | None
    transcript_error: str | None
    attempts: int
    created_at: float
    updated_at: float


class _PersonOptional(TypedDict, total=False):
    phone: str | None  # E.164
    email: str | None
    company: str | None
    external_ref: str | None
    meta: dict[str, Any]
    tags: list[str]
    opted_out_at: float | None


class NewPerson(_PersonOptional):
    """What a person is created with."""

    name: str


class PersonChanges(_PersonOptional, total=False):
    """What a change to a person may set (only the keys given change)."""

    name: str


class TaskChanges(TypedDict, total=False):
    title: str
    due_at: float | None
    done: bool


class NewCall(TypedDict, total=False):
    """What a call is logged with."""

    direction: Required[str]  # inbound | outbound
    conversation_id: str | None
    person_id: str | None
    phone: str | None  # E.164
    duration_seconds: float | None
    started_at: float | None
    recording_url: str | None
    recording_path: str | None  # an uploaded recording, on local disk


class PersonDetail(Person):
    """A person with everything attached to them (``GET /api/comms/people/{id}``)."""

    threads: list[str]
    notes: list[Note]
    tasks: list[Task]
    calls: list[Call]


def like(q: str) -> str:
    """``q`` as a case-insensitive substring pattern, its wildcards escaped (with ``\\``)."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def person_row(row: Row[Any]) -> Person:
    return {
        "id": row.id,
        "name": row.name,
        "phone": row.phone,
        "email": row.email,
        "company": row.company,
        "external_ref": row.external_ref,
        "meta": row.meta or {},
        "tags": list(row.tags or []),
        "opted_out_at": row.opted_out_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def call_row(row: Row[Any]) -> Call:
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "person_id": row.person_id,
        "phone": row.phone,
        "direction": row.direction,
        "duration_seconds": row.duration_seconds,
        "started_at": row.started_at,
        "recording_url": row.recording_url,
        "recording_path": row.recording_path,
        "transcript_status": row.transcript_status,
        "transcript": row.transcript,
        "transcript_error": row.transcript_error,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def thread_exists(conn: Conn, conversation_id: str) -> bool:
    found = await conn.execute(
        select(t.conversations.c.id).where(t.conversations.c.id == conversation_id)
    )
    return found.first() is not None


async def person_exists(conn: Conn, person_id: str) -> bool:
    found = await conn.execute(select(t.people.c.id).where(t.people.c.id == person_id))
    return found.first() is not None


async def thread_person(conn: Conn, conversation_id: str) -> tuple[bool, str | None]:
    """(the thread exists, the person it is linked to)."""
    if not await thread_exists(conn, conversation_id):
        return False, None
    person = (
        await conn.execute(
            select(t.thread_links.c.person_id).where(
                t.thread_links.c.conversation_id == conversation_id
            )
        )
    ).scalar_one_or_none()
    return True, person


async def person_with_phone(conn: Conn, phone: str) -> str | None:
    """The first person (by creation) whose phone is ``phone``."""
    found: str | None = (
        await conn.execute(
            select(t.people.c.id)
            .where(t.people.c.phone == phone)
            .order_by(t.people.c.created_at, t.people.c.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    return found


async def read_notes(conn: Conn, where: ColumnElement[bool]) -> list[Note]:
    rows = await conn.execute(
        select(t.notes).where(where).order_by(t.notes.c.created_at, t.notes.c.id)
    )
    return [
        {
            "id": r.id,
            "conversation_id": r.conversation_id,
            "person_id": r.person_id,
            "text": r.text,
            "author": r.author,
            "created_at": r.created_at,
        }
        for r in rows.all()
    ]


async def read_tasks(conn: Conn, where: ColumnElement[bool]) -> list[Task]:
    rows = await conn.execute(
        select(t.tasks).where(where).order_by(t.tasks.c.created_at, t.tasks.c.id)
    )
    return [
        {
            "id": r.id,
            "conversation_id": r.conversation_id,
            "person_id": r.person_id,
            "title": r.title,
            "due_at": r.due_at,
            "done": bool(r.done),
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        }
        for r in rows.all()
    ]


async def read_calls(conn: Conn, where: ColumnElement[bool]) -> list[Call]:
    """Calls, newest first."""
    rows = await conn.execute(
        select(t.call_logs).where(where).order_by(t.call_logs.c.created_at.desc(), t.call_logs.c.id)
    )
    return [call_row(r) for r in rows.all()]
