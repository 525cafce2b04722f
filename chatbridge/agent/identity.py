"""Which turn a ``user_message`` is, across every bridge an agent serves.

The bridge's ``message_id`` (``t_<n>``) counts per database: a second bridge, or the same
bridge after its database was reset or restored, sends ``t_5`` again for a different
customer's turn. Answering a turn "from memory" by ``message_id`` alone would then give one
customer another customer's old answer. So the SDK remembers answers by a ``TurnKey``:

* ``conversation_id`` — a ULID the bridge draws at random (``c_01JD…``): two bridges, or a
  fresh database, never share one;
* ``message_id`` — the turn within that conversation;
* a fingerprint of what the turn holds: the ids of its customer messages (also random ULIDs,
  ``m_01JD…``), or, when the bridge sends no message ids, a hash of the content. A database
  restored from a backup counts turns from an old value again, but its new messages have new
  ids, so a new turn still never matches an old answer.

A genuine repeat (the bridge sending the same turn again after a reconnect, a crash or a
lease expiry) carries the same three values and is answered from memory.
"""

from __future__ import annotations

import hashlib

from chatbridge.protocol import UserMessage

TurnKey = tuple[str, str, str]
"""``(conversation_id, message_id, fingerprint)``; see the module docstring."""


def turn_key(message: UserMessage) -> TurnKey:
    """The identity of the turn ``message`` carries (pure; see the module docstring)."""
    ids = [m.id for m in message.messages]
    if ids and all(ids):
        fingerprint = "ids:" + ",".join(str(i) for i in ids)
    else:
        digest = hashlib.sha256(message.content.encode("utf-8", "surrogatepass")).hexdigest()
        fingerprint = f"sha256:{digest}"
    return (message.conversation_id, message.message_id, fingerprint)
