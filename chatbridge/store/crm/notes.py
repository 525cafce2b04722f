"""Notes and tasks on a thread: each is written on the thread and on the person the thread
is linked to at that moment, so the person's view keeps them across all their threads.
"""

from __future__ import annotations

import time

from sqlalchemy import update

from chatbridge.ids import new_id
from chatbridge.store import tables as t
from chatbridge.store.base import StoreBase
from chatbridge.store.crm.rows import Note, Task, TaskChanges, read_tasks, thread_person

TASK_FIELDS = ("title", "due_at", "done")


class NoteStore(StoreBase):
    """Internal notes and tasks (never sent to the customer)."""

    async def add_note(self, conversation_id: str, text: str, author: str | None) -> Note | None:
        """A note on the thread (and on its linked person); None if there is no thread."""
        async with self._tx() as conn:
            exists, person_id = await thread_person(conn, conversation_id)
            if not exists:
                return None
            note: Note = {
                "id": new_id("n"),
                "conversation_id": conversation_id,
                "person_id": person_id,
                "text": text,
                "author": author,
                "created_at": time.time(),
            }
            await conn.execute(t.notes.insert().values(**note))
        return note

    async def add_task(self, conversation_id: str, title: str, due_at: float | None) -> Task | None:
        """A task on the thread (and on its linked person); None if there is no thread."""
        now = time.time()
        async with self._tx() as conn:
            exists, person_id = await thread_person(conn, conversation_id)
            if not exists:
                return None
            task: Task = {
                "id": new_id("tk"),
                "conversation_id": conversation_id,
                "person_id": person_id,
                "title": title,
                "due_at": due_at,
                "done": False,
                "created_at": now,
                "updated_at": now,
            }
            await conn.execute(t.tasks.insert().values(**task))
        return task

    async def update_task(self, task_id: str, changes: TaskChanges) -> Task | None:
        """Change a task's ``title``, ``due_at`` or ``done`` (other keys are ignored); None if
        there is no such task."""
        allowed = {k: v for k, v in changes.items() if k in TASK_FIELDS}
        async with self._tx() as conn:
            done = await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.id == task_id)
                .values(**allowed, updated_at=time.time())
            )
            if done.rowcount == 0:
                return None
            rows = await read_tasks(conn, t.tasks.c.id == task_id)
        return rows[0]
