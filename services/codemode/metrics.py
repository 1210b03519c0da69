"""The Code Mode service's metrics.

Runs by outcome, sandbox limits hit, and tool search (which engine ranked, whether the embedding model is
loaded, definitions embedded, needs written), and scripts' calls sent again while a replica rejoined.
Served with the shared ones (`libs.common.runtime.metrics`) on its `/metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "CODEMODE_CALLS_SENT_AGAIN",
    "CODEMODE_LIMITS_HIT",
    "CODEMODE_NEEDS_REQUESTS",
    "CODEMODE_RUNS",
    "CODEMODE_SEARCHES",
    "CODEMODE_SEARCH_MODEL",
    "CODEMODE_SEARCH_VECTORS",
]

CODEMODE_RUNS = Counter("bastion_codemode_runs", "Code Mode runs, by outcome.", ["outcome"])
CODEMODE_LIMITS_HIT = Counter(
    "bastion_codemode_limits_hit", "Code Mode runs stopped by a sandbox limit, by limit.", ["limit"]
)
CODEMODE_SEARCHES = Counter(
    "bastion_codemode_searches", "Tool searches, by the engine that ranked them (hybrid, lexical).", ["engine"]
)
CODEMODE_SEARCH_MODEL = Gauge(
    "bastion_codemode_search_model_loaded", "1 when tool search has its embedding model, 0 when it is lexical only."
)
CODEMODE_NEEDS_REQUESTS = Counter(
    "bastion_codemode_search_needs_requests",
    "Requests to the LLM that writes tools' needs, by outcome: written, error (an error answer), unreachable.",
    ["outcome"],
)
CODEMODE_SEARCH_VECTORS = Counter(
    "bastion_codemode_search_vectors_computed", "Tool definitions embedded for search (not found in the cache)."
)
CODEMODE_CALLS_SENT_AGAIN = Counter(
    "bastion_codemode_calls_sent_again",
    "Scripts' tool calls sent again because no policy or executor replica was subscribed while one rejoined "
    "(`libs.common.bus.rejoin`).",
)
