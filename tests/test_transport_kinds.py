"""The transport kinds: one table, and the names the settings accept are its keys."""

from __future__ import annotations

from typing import get_args

import pytest

from chatbridge.config import AgentConfig
from chatbridge.errors import ConfigError
from chatbridge.transport_kinds import SPECS, Transport, implied_kind, spec
from chatbridge.transports import registry


def test_the_settings_accept_exactly_the_kinds_of_the_table() -> None:
    assert get_args(Transport) == tuple(SPECS)


def test_the_registry_loads_the_class_the_table_names() -> None:
    for kind, entry in SPECS.items():
        cls = registry.load(kind)
        assert f"{cls.__module__}:{cls.__name__}" == entry.target


def test_an_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown agent transport 'carrier-pigeon'"):
        spec("carrier-pigeon")


def test_a_config_picks_the_kind_its_fields_imply() -> None:
    assert implied_kind({"webhook_url"}) == "http-webhook"
    assert implied_kind(set()) == "ws-dial-in"
    agent = AgentConfig(agent_id="a", base_url="http://127.0.0.1:1/v1", model="m")
    assert agent.transport == "openai"
    assert agent.url == "http://127.0.0.1:1/v1"
