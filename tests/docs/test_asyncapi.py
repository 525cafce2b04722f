"""docs/asyncapi.yaml, the machine-readable description of the WebSocket endpoints, agrees
with the code: its channels are the app's WebSocket routes, its agent frames are exactly the
protocol's (in each direction, with payloads from the generated JSON Schema), every reference
resolves, and the widget's frames are the ones docs/webchat.md describes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import WebSocketRoute

from chatbridge.api.app import create_app
from chatbridge.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def protocol() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DOCS / "agent-protocol.schema.json").read_text())
    return schema


def pointer(document: Any, path: str) -> Any:
    """The value at JSON pointer ``path`` (``/a/b``) of ``document``; KeyError if none."""
    node = document
    for part in path.lstrip("/").split("/") if path.strip("/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(spec: dict[str, Any], protocol: dict[str, Any], ref: str) -> Any:
    target, _, path = ref.partition("#")
    if target == "":
        return pointer(spec, path)
    assert target == "agent-protocol.schema.json", f"unexpected external reference {ref}"
    return pointer(protocol, path)


def frame_types(protocol: dict[str, Any], direction: str) -> set[str]:
    """The ``type`` of every message of ``BridgeToAgent`` or ``AgentToBridge``."""
    union = protocol["$defs"][direction]
    members = union.get("oneOf") or union.get("anyOf")
    return {
        pointer(protocol, m["$ref"].partition("#")[2])["properties"]["type"]["const"]
        for m in members
    }


def operation_types(spec: dict[str, Any], name: str) -> set[str]:
    operation = spec["operations"][name]
    return {resolve(spec, {}, m["$ref"])["$ref"].rpartition("/")[2] for m in operation["messages"]}


def test_it_is_an_asyncapi_3_document(spec: dict[str, Any]) -> None:
    assert spec["asyncapi"] == "3.0.0"
    assert {"info", "channels", "operations", "components"} <= set(spec)
    for name, operation in spec["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel = operation["channel"]["$ref"]
        assert channel.startswith("#/channels/"), name
        for message in operation["messages"]:
            # an operation's messages are its channel's
            assert message["$ref"].startswith(channel + "/messages/"), (name, message)


def test_every_reference_resolves(spec: dict[str, Any], protocol: dict[str, Any]) -> None:
    found = refs(spec)
    assert len(found) > 100
    for ref in found:
        try:
            resolve(spec, protocol, ref)
        except (KeyError, IndexError, ValueError):
            pytest.fail(f"{ref} does not resolve")


def test_agent_frames_are_the_protocols(spec: dict[str, Any], protocol: dict[str, Any]) -> None:
    """Each direction of the agent channels lists exactly the protocol's frames of that
    direction (dial-out without the hello exchange), named by their ``type``."""
    to_agent, from_agent = (frame_types(protocol, d) for d in ("BridgeToAgent", "AgentToBridge"))
    assert operation_types(spec, "sendToDialInAgent") == to_agent
    assert operation_types(spec, "receiveFromDialInAgent") == from_agent
    assert operation_types(spec, "sendToDialedAgent") == to_agent - {"hello_ok", "hello_error"}
    assert operation_types(spec, "receiveFromDialedAgent") == from_agent - {"hello"}
    for key, message in spec["channels"]["agentDialIn"]["messages"].items():
        resolved = resolve(spec, protocol, message["$ref"])
        payload = resolve(spec, protocol, resolved["payload"]["$ref"])
        assert key == resolved["name"] == payload["properties"]["type"]["const"]


def test_channels_are_the_apps_websocket_routes(spec: dict[str, Any], tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"))
    routes = {r.path for r in app.routes if isinstance(r, WebSocketRoute)}
    addresses = {
        channel["address"]
        for channel in spec["channels"].values()
        if channel["servers"] == [{"$ref": "#/servers/bridge"}]
    }
    assert addresses == {"/api/ws/agent", "/api/ws/chat/{session_id}"}
    assert addresses <= routes


def test_widget_frames_are_the_documented_ones(spec: dict[str, Any]) -> None:
    """The widget socket's frames are those docs/webchat.md names, and each payload's
    ``type`` is its name."""
    prose = (DOCS / "webchat.md").read_text(encoding="utf-8")
    documented = set(re.findall(r'\{"type":"([a-z_]+)"', prose)) | set(
        re.findall(r'"type":"[a-z_]+"(?: \\\| "([a-z_]+)")', prose)
    )
    messages = spec["channels"]["webchatSession"]["messages"]
    names = set(messages)
    assert names == documented | {"session_created", "session_updated", "session_expired"} | {
        "file_complete",
        "file_error",
    }
    for key, message in messages.items():
        resolved = resolve(spec, {}, message["$ref"])
        assert resolved["name"] == key
        payload = resolved["payload"]
        if "$ref" in payload:
            payload = resolve(spec, {}, payload["$ref"])
        kind = payload["properties"]["type"]
        assert kind.get("const") == key or key in kind.get("enum", []), key


def test_valid_by_the_asyncapi_3_schema(spec: dict[str, Any]) -> None:
    """The document is valid by the official AsyncAPI 3.0.0 JSON Schema (kept beside this
    test, so the check runs offline); a broken one is not."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    official = json.loads(
        (Path(__file__).parent / "asyncapi-spec" / "asyncapi-3.0.0.schema.json").read_text()
    )
    registry: Registry[Any] = Registry().with_resources(
        (part["$id"], Resource.from_contents(part, default_specification=DRAFT7))
        for part in official["definitions"].values()
        if isinstance(part, dict) and "$id" in part
    )
    validator = jsonschema.Draft7Validator(official, registry=registry)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(spec)]
    assert not errors, "\n".join(errors)
    broken = {**spec, "operations": {"x": {"action": "publish", "channel": {}}}}
    assert list(validator.iter_errors(broken))
