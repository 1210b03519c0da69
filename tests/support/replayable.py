"""Hypothesis settings for the property runs against a live stack: the same examples on every run and
machine (derandomized, no example database), no deadline (a live call's time is not the property), and
no health check (generating against a server is slow by nature).

Hypothesis derives a derandomized run's examples from the test's source, its decorators included:
moving a test onto this helper changes which examples it runs, so run it before and after."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings


def replayable(examples: int, **more: Any) -> settings:
    """`examples` examples, the same ones every run; `more` are further `settings` (e.g. `phases`)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        **more,
    )
