"""What a turn tells its agent of the files in its messages (``user_message.files``): every
ready stored file — a web chat upload (``media:<id>``) or downloaded media (``media_id``) — and
nothing else, each a valid ``FileRef`` once signed, with its attachment at the same URL; and
the session frames the bridge sends are valid protocol frames."""

from __future__ import annotations

from typing import Any

from chatbridge.config import Settings
from chatbridge.media.signing import sign_frame_media
from chatbridge.pipeline.turn_runner import build_user_message
from chatbridge.pipeline.webchat_sessions import CREATED, EXPIRED, UPDATED, session_frame
from chatbridge.protocol import parse_bridge_frame
from chatbridge.protocol.bridge_frames import (
    SessionCreated,
    SessionExpired,
    SessionUpdated,
    UserMessage,
)
from chatbridge.store.records import ClaimedTurn, ConversationRecord, MessageRecord
from chatbridge.store.webchat import WebchatSession

SETTINGS = Settings(
    media_signing_key="k" * 32, public_url="https://bridge.example", media_url_ttl_seconds=900
)


def turn(*attachments: list[dict[str, Any]]) -> ClaimedTurn:
    conversation = ConversationRecord(
        id="c_1",
        channel="webchat",
        channel_key="0123456789abcdef",
        inbox_id=1,
        contact_id=None,
        owner="bot",
        status="open",
        external_status=None,
        meta={},
    )
    messages = [
        MessageRecord(
            id=f"m_{i}",
            conversation_id="c_1",
            direction="in",
            author="contact",
            text=f"message {i}",
            content_type="text",
            attachments=items,
            external_id=None,
            created_at=1_800_000_000.0 + i,
            meta={},
        )
        for i, items in enumerate(attachments)
    ]
    return ClaimedTurn(
        id=5,
        conversation_id="c_1",
        agent_id="agent1",
        route_id=1,
        kind="message",
        attempts=0,
        response_mode="async",
        created_at=1_800_000_000.0,
        conversation=conversation,
        messages=messages,
        contact=None,
    )


def test_every_ready_stored_file_of_the_turn_is_a_signed_file_ref() -> None:
    claimed = turn(
        [{"url": "media:md_A", "mime": "image/png", "size": 10, "name": "a.png"}],
        [
            {"url": "https://cdn.example/x.pdf", "mime": "application/pdf"},  # a link: no file
            {
                "media_id": "md_B",
                "status": "ready",
                "kind": "image",
                "mime": "image/jpeg",
                "size": 7,
                "name": None,
            },
            {"media_id": "md_C", "status": "pending", "kind": "image"},  # not downloaded yet
        ],
    )
    frame = sign_frame_media(build_user_message(claimed, 1_800_000_100.0), SETTINGS)
    parsed = parse_bridge_frame(frame)
    assert isinstance(parsed, UserMessage)
    assert [(f.file_id, f.file_name, f.mime, f.size) for f in parsed.files] == [
        ("md_A", "a.png", "image/png", 10),
        ("md_B", "md_B", "image/jpeg", 7),
    ]
    for ref in frame["files"]:
        assert ref["file_url"].startswith(f"https://bridge.example/media/{ref['file_id']}?exp=")
    first, second = frame["messages"]
    assert first["attachments"][0]["url"] == frame["files"][0]["file_url"]
    assert second["attachments"][0]["url"] == "https://cdn.example/x.pdf"
    assert second["attachments"][1]["url"] == frame["files"][1]["file_url"]
    assert "url" not in second["attachments"][2]


def test_a_turn_without_stored_files_has_no_files_field() -> None:
    frame = build_user_message(turn([], [{"url": "https://cdn.example/x.png"}]), 0.0)
    assert "files" not in frame


def test_a_file_of_unknown_type_or_size_is_still_a_valid_ref() -> None:
    frame = build_user_message(turn([{"media_id": "md_D", "status": "ready"}]), 0.0)
    parsed = parse_bridge_frame(sign_frame_media(frame, SETTINGS))
    assert isinstance(parsed, UserMessage)
    [ref] = parsed.files
    assert (ref.mime, ref.size) == ("application/octet-stream", 0)


def test_session_frames_are_valid_protocol_frames() -> None:
    session = WebchatSession(
        id="ws_1",
        uid="0123456789abcdef",
        inbox_id=1,
        created_at=1.0,
        last_active=2.0,
        meta={"name": "Ann"},
    )
    for kind in (CREATED, UPDATED, EXPIRED):
        frame = session_frame(kind, session, conversation_id="c_1", reason="idle")
        parsed = parse_bridge_frame(frame)
        assert isinstance(parsed, SessionCreated | SessionUpdated | SessionExpired)
        assert parsed.type == kind and parsed.reason == "idle"
        assert parsed.session_id == "ws_1" and parsed.data["metadata"] == {"name": "Ann"}
