"""Benchmark scenarios, by name, imported only when chosen.

``SCENARIOS`` maps a name to ``"module:Class"`` (a ``Stack``); ``PLANNED`` names scenarios that
come with later issues (none at the moment), so the CLI can say so instead of failing
obscurely.
"""

from __future__ import annotations

import importlib

from chatbridge.bench.scenarios.base import Request, Stack, StackContext

__all__ = [
    "PLANNED",
    "SCENARIOS",
    "Request",
    "ScenarioUnavailable",
    "Stack",
    "StackContext",
    "load_scenario",
]

SCENARIOS: dict[str, str] = {
    "chatwoot": "chatbridge.bench.scenarios.chatwoot:ChatwootStack",
    "webchat": "chatbridge.bench.scenarios.webchat:WebchatStack",
    "pull": "chatbridge.bench.scenarios.pull:PullStack",
    "stream": "chatbridge.bench.scenarios.stream:StreamStack",
    "burst": "chatbridge.bench.scenarios.burst:BurstStack",
    # internal: the reference points every report is compared with
    "baseline": "chatbridge.bench.baseline:BaselineStack",
    "channel-capacity": "chatbridge.bench.scenarios.channel_capacity:ChannelCapacityStack",
}

PLANNED: dict[str, str] = {}
"""Scenario name → what it waits for (e.g. ``"the web chat channel"``)."""


class ScenarioUnavailable(Exception):
    """The scenario is unknown, or planned but not available yet."""


def load_scenario(name: str) -> type[Stack]:
    """The ``Stack`` class of scenario ``name``.

    Raises:
        ScenarioUnavailable: ``name`` is planned for a later issue, or unknown.
    """
    if name in PLANNED:
        raise ScenarioUnavailable(
            f"scenario {name!r} is not available yet: it comes with the issue that adds "
            f"{PLANNED[name]}. Available now: {', '.join(public_scenarios())}"
        )
    target = SCENARIOS.get(name)
    if target is None:
        raise ScenarioUnavailable(
            f"unknown scenario {name!r}; available: {', '.join(public_scenarios())}"
            + (f"; planned: {', '.join(PLANNED)}" if PLANNED else "")
        )
    module_name, _, attr = target.partition(":")
    stack: type[Stack] = getattr(importlib.import_module(module_name), attr)
    return stack


def public_scenarios() -> list[str]:
    """Scenarios a user picks on the command line (the reference points are run for them)."""
    return [name for name in SCENARIOS if name not in ("baseline", "channel-capacity")]
