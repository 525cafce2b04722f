"""The OpenAPI document says what every operation returns, and its reference pages work
offline: /docs and /redoc load their scripts and styles from the bridge itself."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from chatbridge.api import api_docs
from chatbridge.api.app import create_app
from chatbridge.config import Settings


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}"))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # no lifespan: the pages and the document need no store
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as c:
        yield c


def empty_success_schemas(document: dict[str, Any]) -> list[str]:
    """``METHOD path status`` of every operation whose success (2xx) answer has no schema:
    no 2xx at all, a 2xx without content (other than 204), or a content without a schema or
    with an empty one."""
    found: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            successes = {
                code: answer
                for code, answer in operation.get("responses", {}).items()
                if str(code).startswith("2")
            }
            if not successes:
                found.append(f"{where}: no 2xx answer")
            for code, answer in successes.items():
                if str(code) == "204":
                    continue
                content = answer.get("content") or {}
                if not content:
                    found.append(f"{where} {code}: no content")
                for media_type, body in content.items():
                    schema = body.get("schema") or {}
                    if not set(schema) - {"title", "description"}:
                        found.append(f"{where} {code} {media_type}: empty schema")
    return found


def test_the_check_finds_an_empty_schema() -> None:
    document = {
        "paths": {
            "/a": {"get": {"responses": {"200": {"description": "x"}}}},
            "/b": {"post": {"responses": {"201": {"content": {"application/json": {}}}}}},
            "/c": {"get": {"responses": {"200": {"content": {"text/plain": {"schema": {}}}}}}},
            "/d": {"delete": {"responses": {"204": {"description": "gone"}}}},
            "/e": {"get": {"responses": {"404": {"description": "no"}}}},
            "/f": {
                "get": {"responses": {"200": {"content": {"a/b": {"schema": {"type": "string"}}}}}}
            },
        }
    }
    assert empty_success_schemas(document) == [
        "GET /a 200: no content",
        "POST /b 201 application/json: empty schema",
        "GET /c 200 text/plain: empty schema",
        "GET /e: no 2xx answer",
    ]


def test_every_operation_documents_its_success_answer(app: FastAPI) -> None:
    document = app.openapi()
    assert len(document["paths"]) > 40
    problems = empty_success_schemas(document)
    assert not problems, "operations without a response schema:\n" + "\n".join(problems)


def test_webhook_answers_are_described(app: FastAPI) -> None:
    """The webhook endpoints name the fields of their answer (status, ids, a sync reply)."""
    document = app.openapi()
    answer = document["paths"]["/webhook/chatwoot"]["post"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]
    fields = document["components"]["schemas"][ref]["properties"]
    assert {"status", "conversation_id", "message_id", "turn_id", "reply"} <= set(fields)
    assert "202" in document["paths"]["/webhook/chatwoot"]["post"]["responses"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_reference_pages_load_nothing_from_elsewhere(
    client: httpx.AsyncClient, page: str
) -> None:
    """Every script, style and icon of the page comes from the bridge and is served."""
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "/openapi.json" in html
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert urls, html
    assert re.search(r"https?://", html) is None, "the page names another site"
    for url in urls:
        assert url.startswith(api_docs.ASSETS + "/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500, url
    # the scripts FastAPI's own pages would take from a CDN
    script = "swagger-ui-bundle.js" if page == "/docs" else "redoc.standalone.js"
    assert any(url.endswith(script) for url in urls)


async def test_only_the_vendored_assets_are_served(client: httpx.AsyncClient) -> None:
    for url in ("/swagger-ui/LICENSE", "/../../config.py", "/redoc/../../app.py", "/nope.js"):
        response = await client.get(api_docs.ASSETS + url)
        assert 400 <= response.status_code < 500, url
        assert response.headers["content-type"].startswith("application/json")


def test_the_licences_travel_with_the_assets() -> None:
    static = Path(api_docs.__file__).parent / "static"
    for folder, licence in (("swagger-ui", "Apache License"), ("redoc", "MIT License")):
        assert licence in (static / folder / "LICENSE").read_text(encoding="utf-8")


def test_the_action_api_is_in_the_document(app: FastAPI) -> None:
    """The drop-in action API (one path, the action in ``?action=``) is described: each
    method's ``action`` enum lists the actions that take it, and together they are all of
    the actions the router knows."""
    from chatbridge.api.webchat_compat import ACTIONS

    operations = app.openapi()["paths"]["/api/v1/"]
    assert set(operations) == {"get", "post"}
    named: set[str] = set()
    for method, operation in operations.items():
        action = next(p for p in operation["parameters"] if p["name"] == "action")
        assert action["required"] is True
        for name in action["schema"]["enum"]:
            wanted = ACTIONS[name].method
            assert wanted in (None, method.upper()), f"{name} is not a {method.upper()} action"
            named.add(name)
        assert "ActionSuccess" in str(operation["responses"]["200"])
    assert named == set(ACTIONS)


async def test_served_scripts_ask_no_cdn(client: httpx.AsyncClient) -> None:
    """The scripts as served name no CDN to load from (ReDoc's logo is taken out)."""
    for name in ("swagger-ui/swagger-ui-bundle.js", "redoc/redoc.standalone.js"):
        body = (await client.get(f"{api_docs.ASSETS}/{name}")).text
        assert len(body) > 500_000, name
        for host in ("cdn.redoc.ly", "cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com"):
            assert host not in body, (name, host)


def test_the_assets_are_package_data() -> None:
    """An installed bridge has them: pyproject's package-data globs cover every asset."""
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["chatbridge"]
    static = Path(api_docs.__file__).parent / "static"
    assets = [
        p.relative_to(root / "chatbridge").as_posix() for p in static.rglob("*") if p.is_file()
    ]
    assert len(assets) >= 8
    for asset in assets:
        assert any(fnmatch.fnmatch(asset, g) for g in globs), f"{asset} is not package data"
