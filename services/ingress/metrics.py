"""Ingress's own metric: how it routed each request that reaches an upstream.

Served with the shared ones (`libs.common.runtime.metrics`) on ingress's `/metrics`.
"""

from __future__ import annotations

from libs.common.runtime.loop_metrics import LoopCounter

__all__ = ["ROUTED_SENDS"]

ROUTED_SENDS = LoopCounter(
    "bastion_ingress_routed_sends",
    "Routed requests (tool calls, prompts, resources) ingress sent, by route: policy (decided there), "
    "granted (straight to an executor on policy's grant), stale (a grant the executor found expired), "
    "again (sent again: no replica was subscribed while one rejoined, `libs.common.bus.rejoin`).",
    ["route"],
)
