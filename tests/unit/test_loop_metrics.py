"""`LoopHistogram` and `LoopCounter` expose, byte for byte, what prometheus-client's own would."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from libs.common.runtime.loop_metrics import LoopCounter, LoopHistogram
from libs.common.runtime.metrics import LATENCY_BUCKETS

pytestmark = pytest.mark.unit

EDGES = [0.0, 0.0005, 0.00050001, 1.0, 120.0, 120.5, math.inf, -0.25, 1e-9, float("nan")]
"""Each bound itself (a sample equal to a bound lands in it), just past one, past the last, +Inf, below
zero, and NaN (no bucket, the sum becomes NaN)."""


def _pair(kind: type, lean: type, **options: object) -> tuple[object, CollectorRegistry, object, CollectorRegistry]:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    labels = ["service", "outcome"]
    return (
        kind("loop_test", "A metric of this test.", labels, registry=theirs, **options),
        theirs,
        lean("loop_test", "A metric of this test.", labels, registry=ours, **options),
        ours,
    )


def _same_start(plain: object, lean: object, labels: list[tuple[str, str]]) -> None:
    for values in labels:
        lean.labels(*values)._created = plain.labels(*values)._created  # type: ignore[attr-defined]


def _expositions(registry: CollectorRegistry) -> tuple[bytes, bytes]:
    return generate_latest(registry), generate_openmetrics(registry)


def test_a_histogram_exposes_what_prometheus_clients_does_at_every_edge() -> None:
    plain, theirs, lean, ours = _pair(Histogram, LoopHistogram, buckets=LATENCY_BUCKETS)
    series = [("ingress", "ok"), ("executor", "tool_error")]
    for i, amount in enumerate(EDGES * 3):
        values = series[i % 2]
        plain.labels(*values).observe(amount)  # type: ignore[attr-defined]
        lean.labels(*values).observe(amount)  # type: ignore[attr-defined]
    _same_start(plain, lean, series)
    assert _expositions(ours) == _expositions(theirs)
    assert b'loop_test_bucket{le="0.0005",outcome="ok",service="ingress"}' in generate_latest(ours)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=False, min_value=-1.0, max_value=1e4), max_size=40))
def test_any_samples_land_in_the_buckets_prometheus_client_puts_them_in(amounts: list[float]) -> None:
    plain, theirs, lean, ours = _pair(Histogram, LoopHistogram, buckets=LATENCY_BUCKETS)
    for amount in amounts:
        plain.labels("s", "o").observe(amount)  # type: ignore[attr-defined]
        lean.labels("s", "o").observe(amount)  # type: ignore[attr-defined]
    _same_start(plain, lean, [("s", "o")])
    assert _expositions(ours) == _expositions(theirs)


def test_a_counter_exposes_what_prometheus_clients_does_and_resets_alike() -> None:
    plain, theirs, lean, ours = _pair(Counter, LoopCounter)
    for amount in (1, 2.5, 0, 1e-9):
        plain.labels("ingress", "granted").inc(amount)  # type: ignore[attr-defined]
        lean.labels("ingress", "granted").inc(amount)  # type: ignore[attr-defined]
    lean.labels("ingress", "stale").inc()  # type: ignore[attr-defined]
    plain.labels("ingress", "stale").inc()  # type: ignore[attr-defined]
    _same_start(plain, lean, [("ingress", "granted"), ("ingress", "stale")])
    assert _expositions(ours) == _expositions(theirs)
    lean.labels("ingress", "stale").reset()  # type: ignore[attr-defined]
    assert b'loop_test_total{outcome="stale",service="ingress"} 0.0' in generate_latest(ours)


def test_what_prometheus_client_refuses_is_refused_with_its_message() -> None:
    _, _, lean, _ = _pair(Counter, LoopCounter)
    _, _, histogram_lean, _ = _pair(Histogram, LoopHistogram)
    with pytest.raises(ValueError, match="missing label values"):
        lean.inc()  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="missing label values"):
        histogram_lean.observe(1.0)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="only go up"):
        lean.labels("a", "b").inc(-1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="exemplars"):
        histogram_lean.labels("a", "b").observe(1.0, {"trace_id": "x"})  # type: ignore[attr-defined]
    child = histogram_lean.labels("a", "b")  # type: ignore[attr-defined]
    assert (child._counts, child._total) == ([0.0] * len(child._upper_bounds), 0.0)  # nothing refused counted
    assert lean.labels("a", "b")._count == 0.0  # type: ignore[attr-defined]
