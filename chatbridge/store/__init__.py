"""The durable store (SQLAlchemy 2 async; SQLite by default, PostgreSQL by URL)."""

from chatbridge.store.store import Store

__all__ = ["Store"]
