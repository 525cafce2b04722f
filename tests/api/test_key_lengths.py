"""Keys and tokens the bridge checks are at least 16 characters: a short one is refused at
start-up (naming the setting) or when a route is saved (422 naming the field)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chatbridge.config import MIN_SECRET_CHARS, Settings
from tests.e2e.harness import running_stack

ADMIN_KEY = "lengths-admin-key-0123"
SHORT = "x" * (MIN_SECRET_CHARS - 1)
LONG_ENOUGH = "x" * MIN_SECRET_CHARS


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"admin_key": SHORT}, "admin_key"),
        ({"chatwoot_webhook_secret": SHORT}, "chatwoot_webhook_secret"),
        ({"web_chat_api_key": SHORT}, "web_chat_api_key"),
        ({"web_chat_admin_key": SHORT}, "web_chat_admin_key"),
        ({"agent_tokens": {"agent1": SHORT}}, "agent_tokens[agent1]"),
        (
            {
                "inbox_agent_mappings": [
                    {"inbox_id": 1, "agent_config": {"agent_id": "a", "token": SHORT}}
                ]
            },
            "token",
        ),
    ],
)
def test_a_short_key_is_refused_at_start_up(settings: dict[str, Any], name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**settings)
    text = str(refused.value)
    assert name in text and str(MIN_SECRET_CHARS) in text
    assert SHORT not in text.split("input_value")[0]  # the message itself never quotes it


def test_sixteen_characters_and_unset_are_fine() -> None:
    s = Settings(
        admin_key=LONG_ENOUGH,
        chatwoot_webhook_secret=LONG_ENOUGH,
        agent_tokens={"agent1": LONG_ENOUGH},
    )
    assert s.admin_key == LONG_ENOUGH
    assert Settings(admin_key="").admin_key is None  # an empty value means "not set"


async def test_a_short_agent_token_is_refused_on_save(sqlite_url: str) -> None:
    async with running_stack(sqlite_url, admin_key=ADMIN_KEY) as s:
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        mapping = {
            "inbox_id": 5,
            "agent_config": {"agent_id": "puller", "transport": "http-pull", "token": SHORT},
        }
        r = await s.http.post("/config/mappings", json=mapping, headers=auth)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["message"].startswith("agent_config.token:")
        assert str(MIN_SECRET_CHARS) in error["message"]
        assert SHORT not in r.text
        assert s.bridge.route_for("chatwoot", 5) is None
        mapping["agent_config"]["token"] = LONG_ENOUGH  # type: ignore[index]
        r = await s.http.post("/config/mappings", json=mapping, headers=auth)
        assert r.status_code == 201, r.text
