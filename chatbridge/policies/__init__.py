"""Conversation policies: debounce, in-flight rules, keywords, expiry, paced replies,
business hours, handoff summaries and ignore lists — the model and its pure decisions."""

from chatbridge.policies.model import (
    DEFAULT_POLICIES,
    BusinessHours,
    IgnoreList,
    RoutePolicies,
)

__all__ = ["DEFAULT_POLICIES", "BusinessHours", "IgnoreList", "RoutePolicies"]
