"""The pull client's decisions, without I/O: retry delays, and which pulled turn or inbox
message is new, running or already answered."""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx

from chatbridge.agent.identity import TurnKey
from chatbridge.models import JsonObject

# Jitter from a generator of our own: the global ``random`` state belongs to the application
# (and to test tools such as Hypothesis, which treat a change to it as a bug).
_JITTER = random.Random()

MAX_BACKOFF = 300.0
MAX_RETRY_AFTER = 3600.0


def backoff_delay(
    attempt: int, base: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry ``attempt`` (0: the first retry).

    Exponential with "equal jitter": a uniform draw in ``[d/2, d]`` for ``d = base * 2**attempt``
    (capped at ``MAX_BACKOFF``), so clients that failed together do not retry in lockstep but
    ``base`` keeps its meaning. Never shorter than the server's ``Retry-After``.
    """
    ceiling = min(max(base, MAX_BACKOFF), base * 2 ** min(max(attempt, 0), 30))
    delay = (rng or _JITTER).uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


TurnDecision = Literal["run", "wait", "repost"]


@dataclass(eq=False, slots=True)
class TurnEntry:
    """A native turn this client holds: its newest lease and, once known, its answer."""

    turn_id: str
    conversation_id: str
    lease: str
    fingerprint: str = ""  # what the turn holds (``agent.identity.turn_key``)
    frames: list[JsonObject] | None = None  # None while the handler runs
    posting: bool = False

    @property
    def key(self) -> TurnKey:
        return (self.conversation_id, self.turn_id, self.fingerprint)


class TurnLedger:
    """What a pulled turn means for this client: run it, or it is already in hand.

    - a new turn id: ``run`` (the handler starts);
    - a turn whose handler still runs, or whose answer is being posted: ``wait`` (only the lease
      is updated, so the answer goes out under the newest lease);
    - a turn answered earlier (the bridge offers it again because the answer never landed):
      ``repost`` the kept answer under the new lease, without running the handler again.

    Turns are told apart by their identity across bridges (``agent.identity.turn_key``:
    conversation, turn id and what the turn holds), never by the turn id alone, which counts
    per bridge database. The last ``keep`` answers are remembered.
    """

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self._running: dict[TurnKey, TurnEntry] = {}
        self._answered: OrderedDict[TurnKey, TurnEntry] = OrderedDict()

    def offer(
        self, turn_id: str, conversation_id: str, lease: str, fingerprint: str = ""
    ) -> tuple[TurnDecision, TurnEntry]:
        key = (conversation_id, turn_id, fingerprint)
        entry = self._running.get(key) or self._answered.get(key)
        if entry is None:
            entry = TurnEntry(turn_id, conversation_id, lease, fingerprint)
            self._running[key] = entry
            return "run", entry
        entry.lease = lease
        if entry.frames is None or entry.posting:
            return "wait", entry
        entry.posting = True
        self._answered.move_to_end(key)
        return "repost", entry

    def answered(self, entry: TurnEntry, frames: list[JsonObject]) -> None:
        """The handler is done: keep its answer; the caller posts it (``posting`` is set)."""
        entry.frames, entry.posting = frames, True
        self._running.pop(entry.key, None)
        self._answered[entry.key] = entry
        while len(self._answered) > self.keep:
            self._answered.popitem(last=False)

    def forget(self, entry: TurnEntry) -> None:
        """The handler was cancelled: a later offer runs the turn again."""
        self._running.pop(entry.key, None)

    @property
    def running(self) -> int:
        return len(self._running)


MessageKey = tuple[str, str, str]


def action_message_key(message: Any) -> MessageKey | None:
    """The plugin's dedupe key of an ``inbox`` message, ``(session_id, id, timestamp)``; None
    for a message the plugin would drop (no session id or text, an unparseable timestamp)."""
    if not isinstance(message, dict):
        return None
    session_id, text, stamp = (
        message.get("session_id"),
        message.get("message"),
        message.get("timestamp"),
    )
    if not isinstance(session_id, str) or not session_id or not isinstance(text, str) or not text:
        return None
    if stamp is not None:
        try:
            datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            return None
    return session_id, str(message.get("id")), str(stamp)


class SeenMessages:
    """A bounded set of the action messages already taken (the oldest are forgotten)."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self._keys: OrderedDict[MessageKey, None] = OrderedDict()

    def add(self, key: MessageKey) -> bool:
        """Remember ``key``; False if it was seen already."""
        if key in self._keys:
            return False
        self._keys[key] = None
        while len(self._keys) > self.keep:
            self._keys.popitem(last=False)
        return True


def describe(response: httpx.Response) -> str:
    """A refusal in one line: status, then the error code and message either API sends."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"HTTP {response.status_code} {error.get('code')}: {error.get('message')}"
    if isinstance(error, str):
        return f"HTTP {response.status_code}: {error}"
    return f"HTTP {response.status_code}: {response.text[:200]}"


def error_code(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return str(error.get("code")) if isinstance(error, dict) else None
