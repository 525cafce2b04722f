"""A value the database refuses, raised from any route, is the request's fault: a 400 that
names the problem, never a 500 — even on a route that forgot to say so itself."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chatbridge.api.errors import install_error_handlers


async def test_a_nul_the_database_refuses_is_a_400_naming_it(database_url_pg: str) -> None:
    engine = create_async_engine(database_url_pg)
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        async with engine.begin() as conn:  # the real PostgreSQL refuses the NUL
            value = (await conn.execute(text("SELECT CAST(:v AS text)"), {"v": body["v"]})).scalar()
        return {"v": str(value)}

    @app.post("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug, not the request's fault")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            ok = await http.post("/echo", json={"v": "fine"})
            assert ok.json() == {"v": "fine"}
            r = await http.post("/echo", json={"v": "a\x00b"})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "invalid_request"
            assert "NUL" in r.json()["error"]["message"]
            # anything else is still a 500 that names no internals
            r = await http.post("/boom")
            assert r.status_code == 500
            assert r.json()["error"]["code"] == "internal_error"
            assert "a bug" not in r.text
    finally:
        await engine.dispose()
