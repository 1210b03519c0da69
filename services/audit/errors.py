"""The audit service's two failure kinds, after getsentry/arroyo: retry later vs. never retry.

- `StoreUnavailable`: ClickHouse could not be reached or refused a write. The batch is nak'd with a
  delay and stays in the stream; nothing is lost.
- `BadEvent`: a message that will never become a row (not JSON, not an `AuditEvent`, a value the
  column types cannot hold). It is dead-lettered and terminated, so it never blocks the others.
"""

from __future__ import annotations

__all__ = ["BadEvent", "StoreUnavailable"]


class StoreUnavailable(Exception):
    pass


class BadEvent(ValueError):
    pass
