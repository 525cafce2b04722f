"""HTTP and WebSocket endpoints (FastAPI routers) and the app factory ``create_app``."""

from chatbridge.api.app import create_app

__all__ = ["create_app"]
