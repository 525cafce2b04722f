"""The live status without a server: the widget's frame shapes, the console's board (merging,
expiry, the turn's end, late frames, its bound) and the working notice's timer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatbridge.pipeline.live_status import LiveBoard, WorkingNotices, widget_frame
from tests.e2e.harness import wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            {"type": "status_update", "message_id": "t_1", "content": "Searching…"},
            {"type": "status_update", "turn_id": "t_1", "content": "Searching…"},
        ),
        (
            {"type": "progress_update", "progress": 0.4, "content": "Reading"},
            {"type": "progress_update", "turn_id": "t_1", "progress": 0.4, "content": "Reading"},
        ),
        (
            {"type": "progress_update", "progress": 1},
            {"type": "progress_update", "turn_id": "t_1", "progress": 1.0},
        ),
        (
            {"type": "file_error", "file_id": "f1", "error": "unreadable", "content": None},
            {"type": "file_error", "file_id": "f1", "error": "unreadable"},
        ),
        (
            {"type": "file_complete", "file_id": "f1", "content": "3 pages"},
            {"type": "file_complete", "file_id": "f1", "content": "3 pages"},
        ),
    ],
)
def test_widget_frames_have_the_specs_shape(frame: dict[str, Any], expected: Any) -> None:
    assert widget_frame(frame, "t_1") == expected


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "status_update", "content": "  "},
        {"type": "progress_update", "progress": "half"},
        {"type": "progress_update", "progress": True},
        {"type": "file_processing"},
        {"type": "agent_message", "content": "hi"},
    ],
)
def test_what_is_not_a_live_frame_shows_nothing(frame: dict[str, Any]) -> None:
    assert widget_frame(frame, None) is None


def status(kind: str, turn: str | None = "t_1", **kw: Any) -> dict[str, Any]:
    return {"type": kind, "turn_id": turn, **kw}


def test_progress_keeps_the_line_of_the_status_before_it() -> None:
    board = LiveBoard(now=Clock())
    board.update("c1", "a1", status("status_update", content="Searching your orders…"))
    board.update("c1", "a1", status("progress_update", progress=0.4))
    view = board.get("c1")
    assert view is not None
    assert (view.content, view.progress, view.agent_id) == ("Searching your orders…", 0.4, "a1")
    board.update("c1", "a1", status("status_update", content="Writing"))
    assert (board.get("c1").content, board.get("c1").progress) == ("Writing", 0.4)  # type: ignore[union-attr]
    # the next turn starts afresh
    board.update("c1", "a1", status("progress_update", turn="t_2", progress=0.1))
    assert (board.get("c1").content, board.get("c1").progress) == (None, 0.1)  # type: ignore[union-attr]


def test_a_status_expires_after_its_ttl() -> None:
    clock = Clock()
    board = LiveBoard(ttl=120, now=clock)
    board.update("c1", "a1", status("status_update", content="Searching"))
    clock.t += 119
    assert board.get("c1") is not None
    clock.t += 2
    assert board.get("c1") is None


def test_the_turns_end_clears_it_and_a_late_frame_is_not_shown_again() -> None:
    board = LiveBoard(now=Clock())
    board.update("c1", "a1", status("status_update", content="Searching"))
    assert board.end_turn("c1", "t_2") is None  # another turn: nothing of it showed
    assert board.get("c1") is not None
    ended = board.end_turn("c1", "t_1")
    assert ended is not None and ended.content == "Searching"
    assert board.get("c1") is None
    assert board.update("c1", "a1", status("progress_update", progress=0.9)) is None
    assert board.get("c1") is None and board.ended("t_1")


def test_file_events_other_than_processing_leave_the_status() -> None:
    board = LiveBoard(now=Clock())
    board.update("c1", "a1", {"type": "file_processing", "file_id": "f", "content": "Reading"})
    board.update("c1", "a1", {"type": "file_complete", "file_id": "f", "content": "Done"})
    assert board.get("c1").content == "Reading"  # type: ignore[union-attr]


def test_the_board_is_bounded() -> None:
    board = LiveBoard(limit=3, now=Clock())
    for n in range(5):
        board.update(f"c{n}", "a1", status("status_update", content="x"))
    assert [c for c in ("c0", "c1", "c2", "c3", "c4") if board.get(c)] == ["c2", "c3", "c4"]


def test_another_replicas_change_is_applied() -> None:
    board = LiveBoard(now=Clock())
    frame = status("status_update", content="Searching")
    board.apply({"conversation_id": "c1", "agent_id": "a1", "frame": frame})
    assert board.get("c1").content == "Searching"  # type: ignore[union-attr]
    board.apply({"conversation_id": "c1", "end": "t_1"})
    assert board.get("c1") is None
    board.apply({"end": "t_1"})  # malformed: ignored


async def test_a_working_notice_fires_once_unless_cancelled_first() -> None:
    fired: list[int] = []
    done = asyncio.Event()

    async def write(turn_id: int) -> None:
        fired.append(turn_id)
        done.set()

    notices = WorkingNotices(write)
    notices.start(1, 0.0)
    notices.start(2, 0.0)
    notices.cancel(2)
    await asyncio.wait_for(done.wait(), 5)
    await notices.stop()
    assert fired == [1] and notices.waiting == 0


async def test_a_failed_notice_write_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def write(turn_id: int) -> None:
        raise RuntimeError("store away")

    notices = WorkingNotices(write)
    notices.start(7, 0.0)
    await wait_until(lambda: "working notice not written" in caplog.text, 5)
    await notices.stop()
