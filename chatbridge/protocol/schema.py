"""The JSON Schema (draft 2020-12) of every message, generated from the models and published
at ``GET /api/protocol/schema.json``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from chatbridge.models import JsonObject
from chatbridge.protocol.agent_frames import (
    Ack,
    AgentComplete,
    AgentHandoff,
    AgentMessage,
    AgentStreaming,
    FileComplete,
    FileError,
    FileProcessing,
    Handoff,
    Hello,
    NoReply,
    ProgressUpdate,
    StatusUpdate,
    Typing,
)
from chatbridge.protocol.base import (
    PROTOCOL,
    PROTOCOL_REVISION,
    ErrorMessage,
    Ping,
    Pong,
    SystemMessage,
    WarningMessage,
)
from chatbridge.protocol.bridge_frames import (
    Cancel,
    ConversationEvent,
    HelloError,
    HelloOk,
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    UserMessage,
)

_DIRECTIONS: dict[str, tuple[type[BaseModel], ...]] = {
    "BridgeToAgent": (UserMessage, Cancel, Ping, Pong, HelloOk, HelloError, ErrorMessage,
                      ConversationEvent, SessionCreated, SessionUpdated, SessionExpired,
                      SystemMessage, WarningMessage),
    "AgentToBridge": (AgentMessage, AgentStreaming, AgentComplete, Typing, Handoff, NoReply,
                      ErrorMessage, Ack, Ping, Pong, Hello, AgentHandoff, StatusUpdate,
                      ProgressUpdate, SystemMessage, WarningMessage, FileProcessing,
                      FileComplete, FileError),
}  # fmt: skip


def protocol_json_schema() -> JsonObject:
    """One JSON Schema (draft 2020-12) document for every message in both directions.

    ``$defs`` holds one schema per message model; ``BridgeToAgent`` and ``AgentToBridge`` are
    ``oneOf`` unions discriminated by ``type``; the document itself accepts either direction.
    """
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (name, "validation", TypeAdapter[Any](_discriminated(models)))
        for name, models in _DIRECTIONS.items()
    ]
    keys, schema = TypeAdapter.json_schemas(inputs, ref_template="#/$defs/{model}")
    defs: JsonObject = dict(schema.get("$defs", {}))
    for (name, _mode), direction_schema in keys.items():
        defs[name] = {"description": _DIRECTION_DOCS[name], **direction_schema}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://chatbridge.dev/schema/protocol/v1.json",
        "title": f"Chatbridge agent protocol {PROTOCOL}",
        "description": (
            f"Every message of the agent protocol, revision {PROTOCOL_REVISION}. Unknown "
            "fields are ignored by both sides; an unknown type is answered with error_message "
            "(unknown_type). Additions since 1.0 say 'Since 1.x' in their description."
        ),
        "version": PROTOCOL_REVISION,
        "anyOf": [{"$ref": "#/$defs/BridgeToAgent"}, {"$ref": "#/$defs/AgentToBridge"}],
        "$defs": defs,
    }


_DIRECTION_DOCS = {
    "BridgeToAgent": "Messages the bridge sends to an agent.",
    "AgentToBridge": "Messages an agent sends to the bridge.",
}


def _discriminated(models: tuple[type[BaseModel], ...]) -> Any:
    """``Annotated[A | B | …, Field(discriminator="type")]`` built at run time."""
    union: Any = models[0]
    for model in models[1:]:
        union = union | model
    return Annotated[union, Field(discriminator="type")]
