"""The policy service's own metric: the requests it refused, by reason. Served with the shared ones
(`libs.common.metrics`: requests, latency, NATS lag) on its `/metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["POLICY_REFUSALS"]

POLICY_REFUSALS = Counter(
    "bastion_policy_refusals",
    "Requests policy refused, by reason (budget_exceeded, rate_limited, forbidden, ...).",
    ["reason"],
)
