"""Prometheus histograms and counters for values recorded on a service's event-loop thread.

prometheus-client's `Histogram.observe` makes six Python calls per sample (the observability check,
then a lock taken once for the sum and once for the bucket) and `Counter.inc` four; the gateway
records five samples per `tools/call`. These subclasses keep the same names, labels, buckets and
exposition (they reuse prometheus-client's own sample layout: `_child_samples` yields what the
parent's would) and record a sample in one Python call: a `bisect` for the bucket and two adds.

Why no lock: every sample is recorded on the event loop's thread, and a scrape (the metrics server's
thread) only reads: a float read is atomic under the GIL, so a scrape sees each bucket either before
or after an add, never a torn value. Multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`) is not supported
by these; Bastion does not use it (one process per service replica, each with its own `/metrics`).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["LoopCounter", "LoopHistogram"]


def _use_created() -> bool:
    # read at each scrape: `disable_created_metrics()` flips it at run time
    return bool(_prometheus_metrics._use_created)


class LoopHistogram(Histogram):
    """A `Histogram` whose labelled children record a sample in one call, on the loop's thread only."""

    def _metric_init(self) -> None:
        self._counts = [0.0] * len(self._upper_bounds)
        self._total = 0.0
        self._created = time.time()

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """Add `amount` to its bucket and to the sum (exemplars are refused: Bastion sends none)."""
        try:
            counts = self._counts
        except AttributeError:  # a parent with label names: the library's own clear error
            self._raise_if_not_observable()  # type: ignore[no-untyped-call]
            raise
        if exemplar:
            raise ValueError(f"{self._name}: exemplars are not recorded")
        if amount == amount:  # a NaN lands in no bucket, as with prometheus-client
            # bisect_left: the first bound >= amount, the bucket prometheus-client's `amount <= bound` loop picks
            counts[bisect_left(self._upper_bounds, amount)] += 1.0
        self._total += amount

    def _child_samples(self) -> Iterable[Sample]:
        samples = []
        running = 0.0
        for bound, count in zip(self._upper_bounds, self._counts, strict=True):
            running += count
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            samples.append(Sample("_bucket", {"le": le}, running, None, None))
        samples.append(Sample("_count", {}, running, None, None))
        if self._upper_bounds[0] >= 0:
            samples.append(Sample("_sum", {}, self._total, None, None))
        if _use_created():
            samples.append(Sample("_created", {}, self._created, None, None))
        return tuple(samples)


class LoopCounter(Counter):
    """A `Counter` whose labelled children count in one call, on the loop's thread only."""

    def _metric_init(self) -> None:
        self._count = 0.0
        self._created = time.time()

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        """Add `amount` (not negative; exemplars are refused: Bastion sends none)."""
        try:
            count = self._count
        except AttributeError:  # a parent with label names: the library's own clear error
            self._raise_if_not_observable()  # type: ignore[no-untyped-call]
            raise
        if amount < 0 or exemplar:
            raise ValueError(f"{self._name}: counters only go up, and exemplars are not recorded")
        self._count = count + amount

    def reset(self) -> None:
        """Back to zero, as prometheus-client's `reset` (its created time restarts too)."""
        self._count = 0.0
        self._created = time.time()

    def _child_samples(self) -> Iterable[Sample]:
        total = Sample("_total", {}, self._count, None, None)
        if _use_created():
            return (total, Sample("_created", {}, self._created, None, None))
        return (total,)
