"""The audit service's settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.common.settings.base import ServiceSettings

__all__ = ["AuditSettings"]


class AuditSettings(ServiceSettings):
    clickhouse_url: str = "chdb:///tmp/bastion-clickhouse"
    """A `chdb:///abs/path` DSN (embedded engine) or an `http(s)://user:pass@host:8123/db` URL."""
    batch_size: int = 1000
    """Messages (each an event or a batch of events) per ClickHouse insert, at most."""
    flush_interval: float = 2.0
    """Seconds an event may wait for its batch to fill before it is written anyway. Under load the
    writer inserts once per interval, and a ClickHouse insert costs ~30 ms of CPU whatever it holds:
    2 s instead of 1 s takes ~25-30 µs per call off the audit service at 500-1,000 calls/s, for rows
    visible ~0.5 s later at the median (measured in docs/benchmarks.md)."""
    checkpoint_key: SecretStr = SecretStr("")
    """HMAC key signing audit checkpoints (`libs.common.audit.audit_chain`); empty: no checkpoints, and
    `bastion audit verify` checks the hash chains only (a rewritten chain then goes unnoticed).
    `bastion up` keeps one in `<data_dir>/credentials/checkpoint.key`."""
    checkpoint_interval: float = Field(default=60.0, gt=0)
    """Seconds between checkpoints: each signs the head of every chain that grew since the last."""
    clickhouse_analyst_user: str = ""
    """On a ClickHouse server: the restricted user analytics queries run as (`CREATE USER ... SETTINGS
    readonly = 1`, grants on `bastion` only: docs/analytics.md). Empty: they run as the store's user,
    read-only per query. Ignored by the embedded engine, which has no users."""
    clickhouse_analyst_password: SecretStr = SecretStr("")
    analytics_queries: int = Field(default=3, ge=1, le=64)
    """Analytics queries running at once, in all; one more waits a moment for a slot, then is answered
    "busy, retry after"."""
    analytics_queries_per_principal: int = Field(default=2, ge=1, le=64)
    """Analytics queries one principal (an admin person, a token) may run at once."""
    analytics_query_memory_mb: int = Field(default=512, ge=16, le=1024 * 1024)
    """Memory one analytics query may take in the engine (`max_memory_usage`); a principal's queries
    together take at most this times `analytics_queries_per_principal`, all of them this times
    `analytics_queries`. A query that needs more fails with "memory limit"."""
    analytics_query_threads: int = Field(default=1, ge=1, le=64)
    """Cores one analytics query may use (`max_threads`): the rest stay with the audit writer."""
