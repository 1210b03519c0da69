"""`metrics.child`: a labelled child looked up once records the same samples as `labels()` each time."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from libs.common.runtime import metrics

pytestmark = pytest.mark.unit


def _counter() -> tuple[Counter, CollectorRegistry]:
    registry = CollectorRegistry()
    return Counter("children_test", "A counter of this test.", ["a", "b"], registry=registry), registry


def _samples(registry: CollectorRegistry) -> list[bytes]:
    """The exposition's lines, less the `_created` timestamps (when each series began)."""
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def test_a_cached_child_writes_the_series_labels_would() -> None:
    cached, cached_registry = _counter()
    plain, plain_registry = _counter()
    for a, b in [("x", "1"), ("y", "2"), ("x", "1")]:
        metrics.child(cached, a, b).inc()
        plain.labels(a, b).inc()
    assert _samples(cached_registry) == _samples(plain_registry)
    assert metrics.child(cached, "x", "1") is metrics.child(cached, "x", "1")


def test_past_its_bound_the_cache_stops_growing_and_every_sample_still_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter, registry = _counter()
    monkeypatch.setattr(metrics, "CHILDREN", {})
    monkeypatch.setattr(metrics, "_MOST_CHILDREN", 2)
    for i in range(5):
        metrics.child(counter, str(i), "z").inc()
        metrics.child(counter, str(i), "z").inc()
    assert len(metrics.CHILDREN) == 2
    assert [counter.labels(str(i), "z")._value.get() for i in range(5)] == [2.0] * 5
    assert b'children_test_total{a="4",b="z"} 2.0' in generate_latest(registry)


def test_each_observed_request_is_counted_once_as_a_counter_with_its_start() -> None:
    from prometheus_client import REGISTRY

    labels = {"service": "children-test", "method": "tools/call", "outcome": "ok"}
    for seconds in (0.0004, 0.2, 3.0):
        metrics.observe(labels["service"], labels["method"], labels["outcome"], seconds)
    assert REGISTRY.get_sample_value("bastion_requests_total", labels) == 3
    assert REGISTRY.get_sample_value("bastion_request_seconds_count", labels) == 3
    created = REGISTRY.get_sample_value("bastion_requests_created", labels)
    assert created is not None and created == REGISTRY.get_sample_value("bastion_request_seconds_created", labels)
    exposition = generate_latest(REGISTRY).decode()
    assert "# TYPE bastion_requests_total counter" in exposition
