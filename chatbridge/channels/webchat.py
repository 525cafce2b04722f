"""The web chat channel adapter: "sending" is telling the visitor's open widgets.

A reply to a web chat visitor is already in the database when its delivery runs (the
``messages`` row written with the turn's outcome), and the widget reads its history from
there. So ``send`` only wakes the session's live sockets and long-polls; typing and handoff
are live-only events. A widget that is closed at that moment reads the reply from its
history when it comes back — nothing is lost by a send that reached nobody.
"""

from __future__ import annotations

from chatbridge.models import OutboundAction, SendResult
from chatbridge.webchat.live import LiveHub

HANDOFF_NOTICE = "You are being connected to a person. Please wait a moment."


class WebchatChannel:
    name = "webchat"

    def __init__(self, live: LiveHub) -> None:
        self.live = live

    async def send(self, action: OutboundAction) -> SendResult:
        uid = action.conversation.channel_key
        match action.kind:
            case "message":
                self.live.news(uid)
            case "typing_on" | "typing_off":
                self.live.publish(uid, {"type": "typing", "on": action.kind == "typing_on"})
            case "handoff":
                self.live.publish(uid, {"type": "system", "text": HANDOFF_NOTICE})
        return SendResult(external_id=None)

    async def already_sent(self, action: OutboundAction) -> bool | None:
        return False  # "send" again: a repeated wake-up is harmless

    async def aclose(self) -> None:
        return None
