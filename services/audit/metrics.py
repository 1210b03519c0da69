"""The audit service's metrics.

What the writer put into ClickHouse, how long it took, what waits and what could never be a row. Served
with the shared ones (`libs.common.runtime.metrics`) on its `/metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from libs.common.runtime.metrics import LATENCY_BUCKETS

__all__ = ["AUDIT_BACKLOG", "AUDIT_DEAD_LETTERS", "AUDIT_INSERTED", "AUDIT_INSERT_SECONDS"]

AUDIT_INSERTED = Counter("bastion_audit_inserted_events", "Audit events written to ClickHouse.")
AUDIT_INSERT_SECONDS = Histogram(
    "bastion_audit_insert_seconds", "Time one ClickHouse insert of a batch took.", buckets=LATENCY_BUCKETS
)
AUDIT_BACKLOG = Gauge(
    "bastion_audit_backlog_events",
    "Audit events in the stream not yet delivered to the audit service (its JetStream consumer's lag), "
    "as of the last fetch.",
)
AUDIT_DEAD_LETTERS = Counter(
    "bastion_audit_dead_letters", "Audit messages that could never be a row, moved to the dead-letter stream."
)
