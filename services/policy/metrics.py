"""The policy service's own metrics.

The requests it refused, by reason, and the chat completions it relayed again while an executor rejoined.
Served with the shared ones (`libs.common.runtime.metrics`: requests, latency, NATS lag) on its
`/metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["POLICY_COMPLETIONS_SENT_AGAIN", "POLICY_REFUSALS"]

POLICY_REFUSALS = Counter(
    "bastion_policy_refusals",
    "Requests policy refused, by reason (budget_exceeded, rate_limited, forbidden, ...).",
    ["reason"],
)
POLICY_COMPLETIONS_SENT_AGAIN = Counter(
    "bastion_policy_completions_sent_again",
    "Chat completions relayed again because no executor was subscribed while one rejoined (`libs.common.bus.rejoin`).",
)
