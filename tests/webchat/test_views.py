"""What the widget is shown of a stored message (``message_view``): stored files by signed URL,
links elsewhere as they are, a notice's kind and an agent's rich data."""

from __future__ import annotations

from typing import Any

from chatbridge.media.signing import MediaSigner
from chatbridge.store.records import MessageRecord
from chatbridge.webchat.service import message_view

SIGNER = MediaSigner(b"k" * 32, "https://bridge.example", 900)


def record(**kw: Any) -> MessageRecord:
    values: dict[str, Any] = {
        "id": "m_1",
        "conversation_id": "c_1",
        "direction": "out",
        "author": "agent",
        "text": "hi",
        "content_type": "text",
        "attachments": [],
        "external_id": None,
        "created_at": 1_800_000_000.0,
        "meta": {},
        "turn_id": 7,
    }
    return MessageRecord(**{**values, **kw})


def test_stored_files_get_signed_urls_and_links_stay() -> None:
    m = record(
        attachments=[
            {"url": "media:md_01", "mime": "image/png", "size": 3, "name": "a.png"},
            {"url": "https://cdn.example/x.pdf", "mime": "application/pdf"},
            {"media_id": "md_02", "status": "pending", "kind": "image"},
        ]
    )
    stored, link, pending = message_view(m, SIGNER)["attachments"]
    exp = stored["url"].split("exp=")[1].split("&")[0]
    assert stored["url"] == (
        f"https://bridge.example/media/md_01?exp={exp}&sig={SIGNER.signature('md_01', int(exp))}"
    )
    assert (stored["media_id"], stored["name"], stored["mime"]) == ("md_01", "a.png", "image/png")
    assert link == {"url": "https://cdn.example/x.pdf", "mime": "application/pdf"}
    assert "url" not in pending  # not downloaded yet: nothing to show
    # never the bridge-internal form
    assert all(not str(a.get("url", "")).startswith("media:") for a in (stored, link, pending))


def test_a_notice_and_rich_data_reach_the_widget() -> None:
    notice = message_view(record(author="system", meta={"notice": "warning", "agent_id": "a"}))
    assert (notice["role"], notice["notice"]) == ("system", "warning")
    assert "agent_id" not in notice
    cards = {"kind": "cards", "cards": [{"title": "A"}]}
    assert message_view(record(meta={"data": cards}))["data"] == cards
    plain = message_view(record(meta={"notice": "other", "data": "not an object"}))
    assert "notice" not in plain and "data" not in plain
