"""Tamper evidence on the store: sign chain heads periodically, and check everything on request.

Checkpoints sign each chain's head as stored when they are taken, so a change made before a
checkpoint is caught by the chain walk (a plain edit) or by the checkpoint (an edit whose author
recomputed the hashes after it). Rows appended after the newest checkpoint are protected by the
chain only: deleting the very last rows of a chain before the next checkpoint leaves no trace.
"""

from __future__ import annotations

import logging
import time

from libs.common.audit.audit_chain import checkpoint_signature
from libs.common.contracts.messages import AuditVerdict

from .store import ClickHouseStore
from .verify import Checkpoint, verify_chain, verify_checkpoints

__all__ = ["Auditor"]

log = logging.getLogger(__name__)


class Auditor:
    def __init__(self, store: ClickHouseStore, key: bytes) -> None:
        self.store = store
        self.key = key
        """HMAC key of the checkpoints; empty: none are written or checked."""

    def checkpoint(self, now: float | None = None) -> int:
        """Sign the head of every chain that grew since its last checkpoint; how many were signed."""
        if not self.key:
            return 0
        signed: dict[str, int] = {}
        for point in self.store.checkpoints():
            signed[point.producer] = max(point.seq, signed.get(point.producer, 0))
        # whole microseconds: what the DateTime64(6) column gives back, so the signature still holds
        ts = round((time.time() if now is None else now) * 1_000_000) / 1_000_000
        points = [
            Checkpoint(producer, seq, head, ts, checkpoint_signature(self.key, producer, seq, head, ts))
            for producer, (seq, head) in self.store.heads().items()
            if seq > signed.get(producer, 0)
        ]
        self.store.add_checkpoints(points)
        return len(points)

    def verify(self, since: float | None = None) -> AuditVerdict:
        """OK, or the first modified, deleted, inserted or reordered row (chain by chain).

        Or else the events the writer flagged or refused; with the role vouching for each chain."""
        flagged, total = self.store.flagged(since)
        accounts = {"vouchers": self.store.vouchers(since), "flagged": flagged, "flagged_total": total}
        verdict = self._tamper(since)
        if verdict.ok and total:
            first = flagged[0] if flagged else None
            detail = f"{total} event(s) flagged or refused by the writer" + (
                f"; newest: event {first.event_id} (chain {first.producer or '-'}, sent as {first.role or '-'}): "
                f"{first.reason}"
                if first
                else ""
            )
            verdict = verdict.model_copy(update={"ok": False, "problem": "flagged", "detail": detail})
        return verdict.model_copy(update=accounts)

    def _tamper(self, since: float | None) -> AuditVerdict:
        points = self.store.checkpoints() if self.key else []
        by_producer: dict[str, list[Checkpoint]] = {}
        for point in points:
            by_producer.setdefault(point.producer, []).append(point)
        chains = events = checked = 0
        for producer in self.store.chains(since):
            rows = self.store.chain(producer, since)
            chains += bool(producer)
            events += len(rows)
            finding = verify_chain(rows, anchored=since is None)
            if finding is None and self.key:
                first = rows[0].seq if rows else 0
                due = [p for p in by_producer.pop(producer, []) if p.seq >= first]
                wanted = {p.seq for p in due}
                heads = {(producer, row.seq): row for row in rows if row.seq in wanted}
                finding, count = verify_checkpoints(self.key, due, heads)
                checked += count
            if finding is not None:
                log.warning("audit verify: %s", finding.detail)
                return finding.model_copy(update={"chains": chains, "events": events, "checkpoints": checked})
        # chains with checkpoints and no rows left at all (with --since, older rows are out of sight)
        for left in by_producer.values() if since is None else ():
            finding, count = verify_checkpoints(self.key, left, {})
            checked += count
            if finding is not None:
                return finding.model_copy(update={"chains": chains, "events": events, "checkpoints": checked})
        return AuditVerdict(ok=True, chains=chains, events=events, checkpoints=checked)
