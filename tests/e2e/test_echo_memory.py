"""The bridge's memory of what it just sent: the second guard against its own replies.

Chatwoot echoes each reply back as a ``message_created`` webhook; with a *user* token the
echo looks like a human's reply. Its ``source_id`` (our delivery's key) is the first guard
(``test_core_guards.py``). Where the echo comes without it — a Chatwoot or a proxy that drops
the field — the bridge still knows the text it just sent to that conversation.
"""

from __future__ import annotations

from tests.e2e.harness import FAST, running_stack


async def test_our_reply_echoed_without_its_source_id_is_still_known_as_ours(
    sqlite_url: str,
) -> None:
    async with running_stack(
        sqlite_url,
        mock_options={"token_kind": "user", "emit_message_webhooks": False},
        **FAST,
    ) as s:
        await s.say("first")
        assert await s.wait_replies(1) == ["Echo: first"]
        # the echo of our reply as such a Chatwoot sends it: outgoing, from a user, no source_id
        echo = await s.say(
            "Echo: first", message_type="outgoing", sender_type="user", sender={"id": 5}
        )
        assert echo["response"] == {"status": "ignored", "reason": "own_reply"}, echo
        conv = await s.bridge.store.find_conversation("chatwoot", "1:1")
        assert conv is not None and conv.owner == "bot"
        await s.say("second")
        assert await s.wait_replies(2) == ["Echo: first", "Echo: second"]

        # the memory is of what was sent, once: a human later writing the same words takes over
        again = await s.say(
            "Echo: first", message_type="outgoing", sender_type="user", sender={"id": 5}
        )
        assert again["response"]["reason"] == "owner:human", again
