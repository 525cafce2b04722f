"""A channel's memory of the texts it is sending or just sent, to know their echoes.

Some channels report our own reply back as if a person had written it: Chatwoot when the
bridge posts with a *user* token (and a proxy dropped the ``source_id`` that would tell),
a WhatsApp gateway whose ``fromMe`` echo arrives before its send call has returned the
message id. Such an echo would look like a human taking over. The channel notes each text
around its send, and its parser drops an echo of one: a text being sent right now, or one
sent recently (once: a person later writing the same words is a person).
"""

from __future__ import annotations

from collections import OrderedDict

from chatbridge.models import OutboundAction


class SentTexts:
    """Texts being sent and recently sent, per conversation (``channel_key``)."""

    __slots__ = ("_recent", "_sending", "limit")

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._sending: dict[str, list[str]] = {}
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()

    def sending(self, action: OutboundAction) -> str | None:
        """Note ``action``'s text as being sent; the text to pass to ``sent`` (or None)."""
        text = action.text
        if action.kind != "message" or not text:
            return None
        self._sending.setdefault(action.conversation.channel_key, []).append(text)
        return text

    def sent(self, channel_key: str, text: str) -> None:
        """The send of ``text`` ended (whatever its outcome): remember it as recent."""
        texts = self._sending.get(channel_key)
        if texts and text in texts:
            texts.remove(text)
            if not texts:
                del self._sending[channel_key]
        self._recent[(channel_key, text)] = None
        while len(self._recent) > self.limit:
            self._recent.popitem(last=False)

    def is_echo(self, channel_key: str, text: str | None) -> bool:
        """Whether ``text`` in this conversation is (most likely) our own send's echo."""
        if text is None:
            return False
        if text in self._sending.get(channel_key, ()):
            return True
        key = (channel_key, text)
        if key in self._recent:
            del self._recent[key]
            return True
        return False
