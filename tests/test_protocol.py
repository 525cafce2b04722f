"""Protocol v1 models: parsing both directions, the seed format, bad input, the JSON Schema."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbridge.errors import ChatbridgeError
from chatbridge.protocol import (
    AGENT_TYPES,
    BRIDGE_TYPES,
    HANDOFF_SUMMARY_MAX,
    PROTOCOL,
    PROTOCOL_REVISION,
    Ack,
    AgentComplete,
    AgentHandoff,
    AgentMessage,
    AgentStreaming,
    Cancel,
    ConversationEvent,
    ErrorMessage,
    FileComplete,
    FileError,
    FileProcessing,
    Handoff,
    Hello,
    HelloError,
    HelloOk,
    NoReply,
    Ping,
    Pong,
    ProgressUpdate,
    ProtocolError,
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    StatusUpdate,
    SystemMessage,
    Typing,
    UserMessage,
    WarningMessage,
    parse_agent_frame,
    parse_bridge_frame,
    protocol_json_schema,
    reconnect_delay,
)

AGENT_SAMPLES: list[tuple[dict[str, Any], type]] = [
    (
        {"type": "agent_message", "message_id": "t_1", "conversation_id": "c_1",
         "content": "I can help!", "attachments": [],
         "metadata": {"agent_id": "agent1", "processing_time_ms": 1500, "confidence": 0.95}},
        AgentMessage,
    ),
    ({"type": "agent_streaming", "message_id": "t_1", "stream_index": 0, "content": "I can"},
     AgentStreaming),
    ({"type": "agent_complete", "message_id": "t_1", "content": "I can help"}, AgentComplete),
    ({"type": "agent_complete", "message_id": "t_1"}, AgentComplete),
    ({"type": "typing", "conversation_id": "c_1", "on": True}, Typing),
    ({"type": "handoff", "conversation_id": "c_1", "message_id": "t_1", "reason": "angry"},
     Handoff),
    ({"type": "handoff", "conversation_id": "c_1", "message_id": "t_1", "reason": "billing",
      "summary": "Wants a refund for order 42; already checked the tracking number."},
     Handoff),
    ({"type": "no_reply", "message_id": "t_1"}, NoReply),
    ({"type": "error_message", "message_id": "t_1", "error_code": "boom", "error_details": {}},
     ErrorMessage),
    ({"type": "ack", "seq": 1042}, Ack),
    ({"type": "ping"}, Ping),
    ({"type": "pong", "timestamp": "2025-01-01T00:00:00Z"}, Pong),
    ({"type": "hello", "agent_id": "agent1", "token": "s", "protocol": "chatbridge/1",
      "capabilities": ["streaming"], "resume_from": 1041}, Hello),
    ({"type": "hello", "agent_id": "agent1", "version": "1.3",
      "features": ["status", "sessions", "notices"]}, Hello),
    ({"type": "agent_message", "message_id": "t_1", "content": "Pick one",
      "data": {"kind": "quick_replies", "options": [{"title": "Yes"}, {"title": "No"}]}},
     AgentMessage),
    ({"type": "agent_complete", "message_id": "t_1",
      "data": {"kind": "map", "lat": 52.5, "lng": 13.4}}, AgentComplete),
    ({"type": "agent_handoff", "message_id": "t_1", "conversation_id": "c_1",
      "to_role": "billing", "reason": "refund", "content": "A colleague takes over."},
     AgentHandoff),
    ({"type": "status_update", "message_id": "t_1", "content": "Searching your orders…"},
     StatusUpdate),
    ({"type": "progress_update", "message_id": "t_1", "progress": 0.4, "content": "Reading"},
     ProgressUpdate),
    ({"type": "system_message", "conversation_id": "c_1", "content": "Order system is slow"},
     SystemMessage),
    ({"type": "warning_message", "conversation_id": "c_1", "message_id": "t_1",
      "content": "Prices may have changed"}, WarningMessage),
    ({"type": "file_processing", "message_id": "t_1", "file_id": "f_1",
      "content": "Reading invoice.pdf"}, FileProcessing),
    ({"type": "file_complete", "conversation_id": "c_1", "file_id": "f_1",
      "content": "3 pages, total 42 EUR"}, FileComplete),
    ({"type": "file_error", "message_id": "t_1", "file_id": "f_1", "error": "encrypted"},
     FileError),
]  # fmt: skip

BRIDGE_SAMPLES: list[tuple[dict[str, Any], type]] = [
    (
        {"type": "user_message", "protocol": "chatbridge/1", "message_id": "t_1", "seq": 1042,
         "conversation_id": "c_1", "inbox_id": 1, "channel": "chatwoot",
         "content": "Hello, I need help",
         "messages": [{"id": "m_1", "content": "Hello", "created_at": "2025-01-01T00:00:00Z",
                       "attachments": []}],
         "sender": {"id": "789", "name": "John Doe", "email": "john@example.com", "phone": None},
         "context": {"channel": "web_widget", "created_at": "2025-01-01T00:00:00Z",
                     "external_conversation_id": "456", "additional_attributes": {}},
         "response_mode": "sync", "deadline": "2025-01-01T00:00:30Z",
         "timestamp": "2025-01-01T00:00:00Z"},
        UserMessage,
    ),
    ({"type": "user_message", "message_id": "t_2", "conversation_id": "c_1",
      "content": "hi\nI have a question\nabout my order", "fresh": True,
      "messages": [{"id": "m_1", "content": "hi"}, {"id": "m_2", "content": "I have a question"},
                   {"id": "m_3", "content": "about my order"}]},
     UserMessage),
    ({"type": "cancel", "message_id": "t_1", "conversation_id": "c_1", "reason": "superseded"},
     Cancel),
    ({"type": "ping"}, Ping),
    ({"type": "pong"}, Pong),
    ({"type": "hello_ok", "agent_id": "a", "protocol": "chatbridge/1", "heartbeat_interval": 20},
     HelloOk),
    ({"type": "hello_error", "error_code": "unauthorized", "message": "no"}, HelloError),
    ({"type": "error_message", "error_code": "invalid_json"}, ErrorMessage),
    ({"type": "conversation_event", "conversation_id": "c_1", "event": "closed"},
     ConversationEvent),
    ({"type": "user_message", "message_id": "t_3", "conversation_id": "c_1", "content": "see",
      "agent": "billing-bot", "role": "billing",
      "files": [{"file_id": "f_1", "file_name": "invoice.pdf", "mime": "application/pdf",
                 "size": 1234, "file_url": "https://bridge/api/files/f_1?exp=1&sig=abc"}]},
     UserMessage),
    ({"type": "hello_ok", "agent_id": "a", "heartbeat_interval": 20, "version": "1.3",
      "features": ["sessions"]}, HelloOk),
    ({"type": "user_message", "message_id": "t_4", "conversation_id": "c_1", "content": "hi",
      "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, UserMessage),
    ({"type": "session_created", "session_id": "s_1", "channel": "webchat",
      "data": {"page": "/pricing"}}, SessionCreated),
    ({"type": "session_updated", "session_id": "s_1", "conversation_id": "c_1",
      "data": {"name": "Ann"}}, SessionUpdated),
    ({"type": "session_expired", "session_id": "s_1", "reason": "idle"}, SessionExpired),
    ({"type": "system_message", "conversation_id": "c_1", "content": "Ann joined"},
     SystemMessage),
    ({"type": "warning_message", "conversation_id": "c_1", "content": "Visitor went offline"},
     WarningMessage),
]  # fmt: skip


def _sample_id(value: Any) -> str:
    return getattr(value, "__name__", "")


@pytest.mark.parametrize(("frame", "model"), AGENT_SAMPLES, ids=_sample_id)
def test_every_agent_type_parses(frame: dict[str, Any], model: type) -> None:
    for data in (frame, json.dumps(frame), json.dumps(frame).encode()):
        parsed = parse_agent_frame(data)
        assert type(parsed) is model
        assert parsed.type == frame["type"]


@pytest.mark.parametrize(("frame", "model"), BRIDGE_SAMPLES, ids=_sample_id)
def test_every_bridge_type_parses(frame: dict[str, Any], model: type) -> None:
    parsed = parse_bridge_frame(json.dumps(frame))
    assert type(parsed) is model


def test_sample_type_lists_cover_the_protocol() -> None:
    assert {f["type"] for f, _ in AGENT_SAMPLES} == AGENT_TYPES
    assert {f["type"] for f, _ in BRIDGE_SAMPLES} == BRIDGE_TYPES


def test_seed_reply_without_type_is_an_agent_message() -> None:
    seed = {
        "message_id": 123,
        "inbox_id": 1,
        "conversation_id": 456,
        "content": "Hi from the old bridge",
        "response_type": "text",
        "metadata": {"agent_id": "agent1"},
    }
    parsed = parse_agent_frame(json.dumps(seed))
    assert isinstance(parsed, AgentMessage)
    assert (parsed.message_id, parsed.conversation_id) == ("123", "456")
    assert parsed.content == "Hi from the old bridge"


def test_unknown_fields_are_ignored() -> None:
    parsed = parse_agent_frame({"type": "no_reply", "message_id": "t", "mood": "grumpy"})
    assert parsed == NoReply(message_id="t")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("not json", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ("42", "invalid_json"),
        ("[" * 100_000, "invalid_json"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": 5}', "unknown_type"),
        ('{"type": "user_message"}', "unknown_type"),  # a bridge → agent type
        ('{"content": "no type, no id"}', "invalid_message"),
        ('{"type": "agent_streaming", "message_id": "t", "content": "x"}', "invalid_message"),
        ('{"type": "agent_streaming", "message_id": "t", "content": "x", "stream_index": -1}',
         "invalid_message"),
        ('{"type": "typing", "conversation_id": "c", "on": "maybe"}', "invalid_message"),
        ('{"type": "ack", "seq": "next"}', "invalid_message"),
        ('{"type": "hello", "agent_id": ""}', "invalid_message"),
    ],
)  # fmt: skip
def test_bad_frames_raise_protocol_error(data: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_agent_frame(data)
    assert info.value.code == code
    assert isinstance(info.value, ChatbridgeError)


def test_invalid_message_details_name_the_fields() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_agent_frame({"type": "no_reply"})
    json.dumps(info.value.details)  # safe to send back in error_details
    assert any("message_id" in err["loc"] for err in info.value.details)


def test_user_message_as_the_pipeline_builds_it() -> None:
    frame = UserMessage(
        message_id="t_1",
        seq=1,
        conversation_id="c_1",
        content="Hello",
        sender={"id": 789, "name": "John", "phone": None},
        deadline=datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC),
        timestamp=datetime(2025, 1, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
    ).model_dump(mode="json", exclude_none=True)
    assert frame["type"] == "user_message"
    assert frame["protocol"] == PROTOCOL
    assert frame["sender"] == {"id": "789", "name": "John"}
    assert frame["deadline"] == "2025-01-01T12:00:30Z"
    assert frame["timestamp"] == "2025-01-01T12:00:00Z"
    assert "inbox_id" not in frame
    assert parse_bridge_frame(json.dumps(frame)) == UserMessage.model_validate(frame)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_only_ever_raises_protocol_error(value: Any) -> None:
    for parse in (parse_agent_frame, parse_bridge_frame):
        try:
            parse(json.dumps(value))
        except ProtocolError:
            pass


@settings(max_examples=200)
@given(
    st.sampled_from(sorted(AGENT_TYPES | BRIDGE_TYPES)),
    st.dictionaries(
        st.sampled_from(["message_id", "content", "seq", "stream_index", "conversation_id",
                         "on", "error_code", "agent_id", "metadata", "attachments", "event",
                         "heartbeat_interval", "resume_from", "capabilities", "messages",
                         "sender", "timestamp", "data", "files", "features", "version",
                         "progress", "file_id", "error", "to_agent", "to_role", "session_id",
                         "agent", "role", "traceparent"]),
        json_values,
        max_size=6,
    ),
)  # fmt: skip
def test_known_types_with_arbitrary_fields_only_raise_protocol_error(
    kind: str, fields: dict[str, Any]
) -> None:
    for parse in (parse_agent_frame, parse_bridge_frame):
        try:
            parse({**fields, "type": kind})
        except ProtocolError:
            pass


@given(st.binary() | st.text())
def test_arbitrary_bytes_and_text_only_raise_protocol_error(data: bytes | str) -> None:
    try:
        parse_agent_frame(data)
    except ProtocolError:
        pass


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_schema_covers_every_message_of_both_directions() -> None:
    schema = protocol_json_schema()
    json.dumps(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    defs = schema["$defs"]
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in defs
    bridge = defs["BridgeToAgent"]["discriminator"]["mapping"]
    agent = defs["AgentToBridge"]["discriminator"]["mapping"]
    assert set(bridge) == BRIDGE_TYPES
    assert set(agent) == AGENT_TYPES
    user = defs["UserMessage"]["properties"]
    for name in ("protocol", "message_id", "seq", "conversation_id", "inbox_id", "channel",
                 "content", "messages", "sender", "context", "response_mode", "deadline",
                 "timestamp", "traceparent"):  # fmt: skip
        assert name in user
    # optional: a frame without it (a bridge that does not trace) is as valid as before
    assert "traceparent" not in defs["UserMessage"].get("required", [])


def test_schema_is_valid_json_schema_and_accepts_real_frames() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = protocol_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for frame, _ in AGENT_SAMPLES + BRIDGE_SAMPLES:
        validator.validate(frame)
    assert not validator.is_valid({"type": "agent_streaming"})


@given(
    st.integers(min_value=-3, max_value=200),
    st.floats(min_value=0.001, max_value=10),
    st.floats(min_value=0.001, max_value=600),
    st.integers(),
)
def test_reconnect_delay_stays_within_the_backoff_ceiling(
    attempt: int, initial: float, maximum: float, seed: int
) -> None:
    delay = reconnect_delay(attempt, initial, maximum, random.Random(seed))
    assert 0 <= delay <= min(maximum, initial * 2 ** max(attempt, 0))


def test_reconnect_delay_grows_then_caps() -> None:
    rng = random.Random(1)
    early = [reconnect_delay(0, 0.5, 30, rng) for _ in range(200)]
    late = [reconnect_delay(20, 0.5, 30, rng) for _ in range(200)]
    assert max(early) <= 0.5
    assert max(late) <= 30 and max(late) > 15  # full jitter over the whole capped range


# ----------------------------------------------------------------------------------------------
# revision 1.1: fresh, cancel, handoff summary


def test_a_1_0_user_message_reads_as_not_fresh_and_a_1_1_one_as_fresh() -> None:
    old = parse_bridge_frame({"type": "user_message", "message_id": "t_1", "conversation_id": "c"})
    assert isinstance(old, UserMessage) and old.fresh is False
    new = parse_bridge_frame(
        {"type": "user_message", "message_id": "t_1", "conversation_id": "c", "fresh": True}
    )
    assert isinstance(new, UserMessage) and new.fresh is True


def test_a_burst_merged_into_one_turn_keeps_its_messages_in_order() -> None:
    frame = dict(BRIDGE_SAMPLES[1][0])
    parsed = parse_bridge_frame(frame)
    assert isinstance(parsed, UserMessage)
    assert [m.content for m in parsed.messages] == ["hi", "I have a question", "about my order"]
    assert parsed.content == "\n".join(m.content or "" for m in parsed.messages)


def test_cancel_names_the_turn_and_defaults_to_superseded() -> None:
    parsed = parse_bridge_frame({"type": "cancel", "message_id": "t_7"})
    assert parsed == Cancel(message_id="t_7", reason="superseded")
    with pytest.raises(ProtocolError) as err:
        parse_bridge_frame({"type": "cancel", "conversation_id": "c_1"})  # which turn?
    assert err.value.code == "invalid_message"


def test_cancel_is_a_bridge_frame_an_agent_cannot_send() -> None:
    with pytest.raises(ProtocolError) as err:
        parse_agent_frame({"type": "cancel", "message_id": "t_1"})
    assert err.value.code == "unknown_type"


def test_handoff_summary_is_optional_and_an_overlong_one_is_cut_not_refused() -> None:
    plain = parse_agent_frame({"type": "handoff", "message_id": "t_1"})
    assert isinstance(plain, Handoff) and plain.summary is None
    long = parse_agent_frame({"type": "handoff", "message_id": "t_1", "summary": "x" * 9000})
    assert isinstance(long, Handoff)
    assert long.summary == "x" * HANDOFF_SUMMARY_MAX


def test_schema_documents_the_1_1_additions() -> None:
    schema = protocol_json_schema()
    defs = schema["$defs"]
    assert schema["version"] == PROTOCOL_REVISION
    assert PROTOCOL == "chatbridge/1"  # additions only: the wire name stays
    fresh = defs["UserMessage"]["properties"]["fresh"]
    assert (fresh["type"], fresh["default"]) == ("boolean", False)
    assert fresh["description"].startswith("Since 1.1")
    assert "newline" in defs["UserMessage"]["properties"]["content"]["description"]
    assert "several" in defs["UserMessage"]["properties"]["messages"]["description"]
    summary = defs["Handoff"]["properties"]["summary"]
    assert summary["description"].startswith("Since 1.1")
    assert {"type": "string", "maxLength": HANDOFF_SUMMARY_MAX} in summary["anyOf"]
    cancel = defs["Cancel"]
    assert "Since 1.1" in cancel["description"]
    assert cancel["required"] == ["message_id"]
    assert defs["BridgeToAgent"]["discriminator"]["mapping"]["cancel"] == "#/$defs/Cancel"
    assert "cancel" not in defs["AgentToBridge"]["discriminator"]["mapping"]


def test_schema_refuses_an_overlong_summary_and_a_cancel_without_its_turn() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(protocol_json_schema())
    assert validator.is_valid({"type": "handoff", "summary": "s" * HANDOFF_SUMMARY_MAX})
    assert not validator.is_valid({"type": "handoff", "summary": "s" * (HANDOFF_SUMMARY_MAX + 1)})
    assert not validator.is_valid({"type": "cancel", "conversation_id": "c_1"})


# ------------------------------------------------------------------------------ 1.2: choices


def _reply(**extra: Any) -> dict[str, Any]:
    return {"type": "agent_message", "message_id": "t_1", "content": "Which?", **extra}


def test_choices_and_template_parse() -> None:
    options = [{"id": f"o{i}", "title": f"Option {i}"} for i in range(10)]
    frame = parse_agent_frame(_reply(interactive={"kind": "list", "options": options}))
    assert isinstance(frame, AgentMessage) and frame.interactive is not None
    assert [o.id for o in frame.interactive.options] == [f"o{i}" for i in range(10)]
    assert frame.interactive.kind == "list"
    template = {"name": "order_update", "parameters": {"1": 42}}
    parsed = parse_agent_frame({"type": "agent_message", "message_id": "t", "template": template})
    assert isinstance(parsed, AgentMessage) and parsed.template is not None
    assert parsed.template.parameters == {"1": "42"}  # numbers read as their text
    complete = parse_agent_frame(
        {"type": "agent_complete", "message_id": "t", "interactive": {"options": options[:2]}}
    )
    assert isinstance(complete, AgentComplete) and complete.interactive is not None
    assert complete.interactive.kind == "buttons"  # the default


@pytest.mark.parametrize(
    "interactive",
    [
        {"options": []},  # nothing to pick
        {"options": [{"id": f"o{i}", "title": "x"} for i in range(11)]},  # more than 10
        {"options": [{"id": "", "title": "x"}]},  # an empty id
        {"options": [{"id": "a", "title": "x"}], "button": "b" * 21},  # a list button over 20
        {"options": [{"id": "a", "title": "x"}], "kind": "carousel"},  # no such kind
        {"options": [{"id": "a", "title": "x", "url": "https://x"}]},  # an unknown field
    ],
)
def test_bad_choices_are_refused(interactive: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_agent_frame(_reply(interactive=interactive))
    assert info.value.code == "invalid_message"


def test_a_pick_reaches_the_agent_in_message_metadata() -> None:
    """``messages[].metadata`` is open (extra allowed): 1.0 agents read it as unknown data."""
    frame = parse_bridge_frame(
        {
            "type": "user_message",
            "message_id": "t_2",
            "conversation_id": "c_1",
            "content": "Yes",
            "messages": [
                {
                    "id": "m_1",
                    "content": "Yes",
                    "metadata": {"interactive": {"id": "y", "title": "Yes"}},
                }
            ],
        }
    )
    assert isinstance(frame, UserMessage)
    dumped = frame.messages[0].model_dump(mode="json")
    assert dumped["metadata"] == {"interactive": {"id": "y", "title": "Yes"}}
