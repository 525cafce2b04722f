"""The CRM part of the store, one module per concern (as ``chatbridge.crm`` is split):

- ``threads``: the bridge's conversations as the console lists them, and their history
- ``links``: which person a thread is linked to (by an operator, or by phone)
- ``people``: the people threads are linked to
- ``notes``: notes and tasks on a thread and its person
- ``calls``: call logs (their transcription queue is ``store.transcriptions``)
- ``settings``: the comms settings stored through the API
- ``rows``: what these tables read back as (``TypedDict`` rows) and the reads they share

``CrmStore`` puts them together for ``Store``.
"""

from chatbridge.store.crm.calls import CallStore
from chatbridge.store.crm.notes import NoteStore
from chatbridge.store.crm.people import PeopleStore, PhoneTaken
from chatbridge.store.crm.settings import CommsSettingsStore
from chatbridge.store.crm.threads import ThreadFilter, ThreadStore


class CrmStore(ThreadStore, PeopleStore, NoteStore, CallStore, CommsSettingsStore):
    """Threads, people, links, notes, tasks, call logs and the stored comms settings."""


__all__ = ["CrmStore", "PhoneTaken", "ThreadFilter"]
