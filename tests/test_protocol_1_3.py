"""Protocol revision 1.3: the new frames and fields, negotiation, and their JSON Schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbridge.protocol import (
    AGENT_TYPES,
    BRIDGE_TYPES,
    FEATURE_OF,
    FEATURES,
    LEGACY_REVISION,
    LIVE_TYPES,
    NOTICE_TYPES,
    PROTOCOL,
    PROTOCOL_REVISION,
    TURN_ENDING_TYPES,
    AgentComplete,
    AgentHandoff,
    AgentMessage,
    Hello,
    ProtocolError,
    UserMessage,
    agent_may_receive,
    negotiate,
    parse_agent_frame,
    parse_bridge_frame,
    protocol_json_schema,
)
from chatbridge.richdata import Cards, OtherRichData, dump_rich_data
from chatbridge.transports.turns import outcome_of
from tests.test_protocol import AGENT_SAMPLES, BRIDGE_SAMPLES

NEW_AGENT_TYPES = {
    "agent_handoff", "status_update", "progress_update", "system_message", "warning_message",
    "file_processing", "file_complete", "file_error",
}  # fmt: skip
NEW_BRIDGE_TYPES = {
    "session_created", "session_updated", "session_expired", "system_message", "warning_message",
}  # fmt: skip

ONE_SERIES = [{"name": "s", "values": [1]}]


def test_revision_and_wire_name() -> None:
    assert PROTOCOL_REVISION == "1.3"
    assert PROTOCOL == "chatbridge/1"
    assert NEW_AGENT_TYPES <= AGENT_TYPES and NEW_BRIDGE_TYPES <= BRIDGE_TYPES
    assert "agent_handoff" in TURN_ENDING_TYPES
    assert LIVE_TYPES | NOTICE_TYPES | {"agent_handoff"} == NEW_AGENT_TYPES


# ------------------------------------------------------------------------------ negotiation


@pytest.mark.parametrize(
    ("version", "announced", "expected"),
    [
        (None, [], (LEGACY_REVISION, frozenset())),
        (None, ["streaming", "status"], (LEGACY_REVISION, frozenset({"status"}))),
        ("1.3", ["sessions", "notices", "teleport"], ("1.3", frozenset({"sessions", "notices"}))),
        ("1.0", [], ("1.0", frozenset())),
        ("1.2", ["files"], ("1.2", frozenset({"files"}))),
        ("1.9", sorted(FEATURES), ("1.3", FEATURES)),
        ("2.0", [], ("1.3", frozenset())),
        ("1", [], ("1.0", frozenset())),
        ("one point three", ["rich_data"], (LEGACY_REVISION, frozenset({"rich_data"}))),
        ("", [], (LEGACY_REVISION, frozenset())),
    ],
)
def test_negotiate_takes_the_lower_revision_and_the_known_features(
    version: str | None, announced: list[str], expected: tuple[str, frozenset[str]]
) -> None:
    assert negotiate(version, announced) == expected


def test_gated_frames_reach_only_agents_that_announced_their_feature() -> None:
    assert set(FEATURE_OF) == NEW_BRIDGE_TYPES
    assert set(FEATURE_OF.values()) <= FEATURES
    for kind in ("session_created", "session_updated", "session_expired"):
        assert not agent_may_receive(kind, frozenset())
        assert not agent_may_receive(kind, {"notices"})
        assert agent_may_receive(kind, {"sessions"})
    for kind in ("system_message", "warning_message"):
        assert not agent_may_receive(kind, ["sessions"])
        assert agent_may_receive(kind, ["notices"])
    for kind in BRIDGE_TYPES - NEW_BRIDGE_TYPES:  # what a 1.0 agent gets stays ungated
        assert agent_may_receive(kind, frozenset())


def test_a_1_0_hello_still_parses_and_announces_nothing_new() -> None:
    hello = parse_agent_frame({"type": "hello", "agent_id": "a", "capabilities": ["streaming"]})
    assert isinstance(hello, Hello)
    assert (hello.version, hello.features) == (None, [])
    assert negotiate(hello.version, [*hello.features, *hello.capabilities]) == (
        LEGACY_REVISION,
        frozenset(),
    )


# ------------------------------------------------------------------------------ new frames


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "agent_handoff", "message_id": "t"},  # no target
        {"type": "agent_handoff", "message_id": "t", "to_agent": "a", "to_role": "b"},  # two
        {"type": "agent_handoff", "message_id": "t", "to_agent": ""},
        {"type": "status_update", "message_id": "t", "content": ""},
        {"type": "status_update", "message_id": "t", "content": "x" * 201},
        {"type": "status_update", "message_id": "t"},
        {"type": "progress_update", "message_id": "t", "progress": 1.5},
        {"type": "progress_update", "message_id": "t", "progress": -0.1},
        {"type": "progress_update", "message_id": "t", "progress": "half"},
        {"type": "progress_update", "message_id": "t", "progress": 0.5, "content": "x" * 201},
        {"type": "system_message", "content": "no conversation"},
        {"type": "warning_message", "conversation_id": "c", "content": ""},
        {"type": "warning_message", "conversation_id": "c", "content": "x" * 2001},
        {"type": "file_processing", "message_id": "t"},
        {"type": "file_error", "message_id": "t", "file_id": ""},
        {"type": "hello", "agent_id": "a", "features": "status"},
        {"type": "agent_message", "message_id": "t", "data": {"kind": "cards", "cards": []}},
        {"type": "agent_message", "message_id": "t", "data": {"cards": [{"title": "x"}]}},
        {"type": "agent_message", "message_id": "t", "data": ["cards"]},
        {"type": "agent_complete", "message_id": "t",
         "data": {"kind": "table", "columns": ["a", "b"], "rows": [[1]]}},
    ],
)  # fmt: skip
def test_malformed_new_frames_are_invalid_messages_naming_the_field(frame: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_agent_frame(frame)
    assert info.value.code == "invalid_message"
    json.dumps(info.value.details)  # goes back to the agent in error_details


def test_a_malformed_known_kind_names_the_bad_field() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_agent_frame(
            {"type": "agent_message", "message_id": "t", "data": {"kind": "cards", "cards": [{}]}}
        )
    locs = [err["loc"] for err in info.value.details]
    assert ["agent_message", "data", "cards", "cards", "0", "title"] in locs


def test_an_unknown_kind_is_kept_whole() -> None:
    frame = parse_agent_frame(
        {
            "type": "agent_message",
            "message_id": "t",
            "data": {"kind": "map", "lat": 52.5, "pins": [{"n": 1}], "text": "Berlin"},
        }
    )
    assert isinstance(frame, AgentMessage) and isinstance(frame.data, OtherRichData)
    assert dump_rich_data(frame.data) == {
        "kind": "map",
        "lat": 52.5,
        "pins": [{"n": 1}],
        "text": "Berlin",
    }


def test_rich_data_and_agent_handoff_reach_the_outcome() -> None:
    cards = {"kind": "cards", "cards": [{"title": "Blue shirt", "url": "https://shop/1"}]}
    frame = parse_agent_frame({"type": "agent_message", "message_id": "t", "data": cards})
    assert isinstance(frame, AgentMessage) and isinstance(frame.data, Cards)
    reply = outcome_of(frame, {})
    normal = {"kind": "cards", "cards": [{**cards["cards"][0], "buttons": []}]}
    assert reply.kind == "reply" and reply.data == normal
    assert reply.extras() == {"data": normal}
    streamed = outcome_of(AgentComplete(message_id="t", data=cards), {0: "Here ", 1: "you go"})
    assert (streamed.content, streamed.data) == ("Here you go", normal)
    assert outcome_of(AgentMessage(message_id="t", content="plain"), {}).extras() == {}

    handing = parse_agent_frame(
        {"type": "agent_handoff", "message_id": "t", "to_role": "billing", "reason": "refund",
         "content": "A colleague takes over."}
    )  # fmt: skip
    assert isinstance(handing, AgentHandoff)
    outcome = outcome_of(handing, {})
    assert (outcome.kind, outcome.to_agent, outcome.to_role) == ("agent_handoff", None, "billing")
    assert (outcome.reason, outcome.content) == ("refund", "A colleague takes over.")
    assert outcome.extras() == {}


def test_user_message_files_and_addressed_agent_default_to_nothing() -> None:
    old = parse_bridge_frame({"type": "user_message", "message_id": "t", "conversation_id": "c"})
    assert isinstance(old, UserMessage)
    assert (old.files, old.agent, old.role) == ([], None, None)
    dumped = old.model_dump(mode="json", exclude_none=True)
    assert "agent" not in dumped and "role" not in dumped


# ------------------------------------------------------------------------------ the schema


def test_every_new_model_says_since_1_3() -> None:
    defs = protocol_json_schema()["$defs"]
    for name in ("AgentHandoff", "StatusUpdate", "ProgressUpdate", "SystemMessage",
                 "WarningMessage", "FileProcessing", "FileComplete", "FileError",
                 "SessionCreated", "SessionUpdated", "SessionExpired", "FileRef", "Cards",
                 "QuickReplies", "Table", "Chart", "OtherRichData"):  # fmt: skip
        assert defs[name]["description"].startswith("Since 1.3."), name
    for model, fields in (
        ("UserMessage", ("files", "agent", "role")),
        ("Hello", ("version", "features")),
        ("HelloOk", ("version", "features")),
        ("AgentMessage", ("data",)),
        ("AgentComplete", ("data",)),
    ):
        for field in fields:
            assert defs[model]["properties"][field]["description"].startswith("Since 1.3."), (
                model,
                field,
            )


def _direction_validator(direction: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = protocol_json_schema()
    return jsonschema.Draft202012Validator({**schema, "anyOf": [{"$ref": f"#/$defs/{direction}"}]})


def test_every_frame_validates_against_its_direction_in_the_schema() -> None:
    agent = _direction_validator("AgentToBridge")
    bridge = _direction_validator("BridgeToAgent")
    for frame, _ in AGENT_SAMPLES:
        agent.validate(frame)
    for frame, _ in BRIDGE_SAMPLES:
        bridge.validate(frame)
    assert not agent.is_valid({"type": "session_created", "session_id": "s"})
    assert not bridge.is_valid({"type": "status_update", "content": "x"})


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "cards", "cards": [{"title": "A", "buttons": [{"title": "Buy", "url": "u"}]}]},
        {"kind": "quick_replies", "options": [{"title": "Yes", "value": "y"}]},
        {"kind": "table", "columns": ["a", "b"], "rows": [["x", 1.5], [None, 2]], "caption": "c"},
        {"kind": "chart", "chart": "pie", "labels": ["a"], "series": ONE_SERIES},
        {"kind": "anything_else", "whatever": [1, {"x": None}]},
    ],
)  # fmt: skip
def test_the_schema_and_the_models_agree_on_rich_data(data: dict[str, Any]) -> None:
    validator = _direction_validator("AgentToBridge")
    frame = {"type": "agent_message", "message_id": "t", "data": data}
    validator.validate(frame)
    parse_agent_frame(frame)


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "cards", "cards": []},
        {"kind": "quick_replies", "options": [{"value": "no title"}]},
        {"kind": "chart", "chart": "radar", "labels": ["a"], "series": ONE_SERIES},
        {"kind": "table", "rows": []},
        {"no": "kind"},
    ],
)  # fmt: skip
def test_the_schema_and_the_models_agree_on_malformed_rich_data(data: dict[str, Any]) -> None:
    validator = _direction_validator("AgentToBridge")
    frame = {"type": "agent_message", "message_id": "t", "data": data}
    assert not validator.is_valid(frame)
    with pytest.raises(ProtocolError):
        parse_agent_frame(frame)


@settings(max_examples=300)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["kind", "cards", "options", "columns", "rows", "labels", "series",
                             "title", "values", "name", "chart", "buttons"]),
            children,
            max_size=4,
        ),
        max_leaves=15,
    )
)  # fmt: skip
def test_any_data_on_a_reply_is_read_or_refused_as_invalid_message(data: Any) -> None:
    frame = {"type": "agent_message", "message_id": "t", "data": data}
    try:
        parsed = parse_agent_frame(frame)
    except ProtocolError as exc:
        assert exc.code == "invalid_message"
        return
    assert isinstance(parsed, AgentMessage)
    assert parsed.data is None or dump_rich_data(parsed.data)["kind"] == data["kind"]
