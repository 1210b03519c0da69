"""How long one upstream call may take.

The server's own limit, or what is left of the caller's timeout, whichever is shorter. Pure, so the rule
is unit-tested directly."""

from __future__ import annotations

__all__ = ["REPLY_MARGIN", "call_budget"]

REPLY_MARGIN = 0.1
"""Seconds kept from the caller's timeout so our answer reaches ingress before it gives up."""


def call_budget(call_timeout: float, server_timeout: float, elapsed: float = 0.0) -> float:
    """Seconds the upstream may take.

    The server's own limit, or what is left of the caller's timeout minus a small margin, whichever is
    shorter. `elapsed` is time already spent upstream of the executor (clamped: clocks on different hosts
    may disagree)."""
    elapsed = min(max(elapsed, 0.0), call_timeout)
    margin = min(REPLY_MARGIN, call_timeout * 0.1)
    return max(0.0, min(server_timeout, call_timeout - elapsed - margin))
