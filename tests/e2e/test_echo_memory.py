"""The bridge's memory of what it just sent: the second guard against its own replies.

Chatwoot echoes each reply back as a ``message_created`` webhook; with a *user* token the
echo looks like a human's reply. Its ``source_id`` (our delivery's key) is the first guard
(``test_core_guards.py``). Where the echo comes without it — a Chatwoot or a proxy that drops
the field — the bridge still knows the text it just sent to that conversation.

The same echo (or Chatwoot's conversation, where the bot token may read it) is the receipt
of a reply whose send got no answer: a send that timed out after Chatwoot took the request
is looked for there before it is sent again.
"""

from __future__ import annotations

from chatbridge.testing.mock_chatwoot import Faults
from tests.e2e.harness import FAST, Stack, running_stack, wait_until


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


def _found_at_chatwoot(s: Stack) -> float:
    """Replies finished because Chatwoot was found to have them already (a receipt)."""
    counter = s.bridge.metrics.deliveries.labels("chatwoot", "message", "already_sent")
    return float(counter._value.get())


async def test_a_reply_stored_before_its_answer_timed_out_is_not_posted_twice(
    sqlite_url: str,
) -> None:
    """Chatwoot stores the reply, then answers after the bridge's timeout; its echo is lost.
    The retry reads the conversation (``already_sent``), finds the reply and posts nothing."""
    async with running_stack(
        sqlite_url,
        mock_options={"faults": Faults(slow_answers=[2500]), "emit_message_webhooks": False},
        chatwoot_timeout_seconds=1.0,
        **FAST,
    ) as s:
        await s.say("hello")
        await wait_until(lambda: _found_at_chatwoot(s) == 1)
        await s.idle()
        assert s.replies() == ["Echo: hello"]
        assert s.mock.faults.slow_answers == []  # the fault was used


async def test_a_reply_chatwoot_stores_after_the_timeout_waits_for_its_echo(
    sqlite_url: str,
) -> None:
    """A slow Chatwoot stores the reply only after the bridge gave up on the request: the
    retry finds nothing yet, waits for the receipt, and the echo of the late message ends
    it — one reply, not a second post racing the first."""
    async with running_stack(
        sqlite_url,
        mock_options={"faults": Faults(slow_messages=[2500])},
        chatwoot_timeout_seconds=1.0,
        **FAST,
    ) as s:
        await s.say("hello")
        await wait_until(lambda: _found_at_chatwoot(s) == 1)
        await s.idle()
        # the slow request has been carried out: every post Chatwoot will store is stored
        await wait_until(lambda: not s.mock.faults.slow_messages and s.mock.creating == 0)
        assert s.replies() == ["Echo: hello"]
        uncertain = s.bridge.metrics.delivery_uncertain.labels("chatwoot")._value.get()
        assert uncertain == 0  # the receipt came within the wait: nothing was sent blind
