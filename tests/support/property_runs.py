"""Hypothesis settings for the property runs against a live stack: the same examples on every run
(derandomized, no example database), no deadline (a request to a real service takes what it takes),
and no health check (generating requests that a live service refuses is the point)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, settings

__all__ = ["live_settings"]


def live_settings(examples: int, *, generate_only: bool = False) -> Callable[[Any], Any]:
    """`@live_settings(n)` for a `@given` test run against live services; `generate_only` skips
    replaying and shrinking (a campaign counts outcomes, it does not minimise one failure)."""
    live = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    return settings(live, phases=[Phase.generate]) if generate_only else live
