"""Checking stored events against their hash chains and signed checkpoints: pure, no I/O.

A chain's rows are walked in `seq` order. The first row that does not fit names the tamper:

- `deleted`: a `seq` is missing (or a signed checkpoint's row is gone);
- `inserted`: a second row holds a `seq` already taken, or a row is on no chain at all;
- `reordered`: a row links to an event other than the one before it on the chain, that event
  being elsewhere on it (rows that swapped places);
- `modified`: a row's content no longer gives its `hash` (or its `hash` no longer matches a
  checkpoint's, when the chain was recomputed after the change);
- `checkpoint`: a checkpoint's signature does not hold (forged, or signed with another key).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from libs.common.audit.audit_chain import checkpoint_signature, event_hash
from libs.common.contracts.messages import AuditEvent, AuditVerdict, TamperKind

__all__ = ["Checkpoint", "verify_chain", "verify_checkpoints"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    producer: str
    seq: int
    head: str
    ts: float
    signature: str


def _finding(problem: TamperKind, event: AuditEvent, detail: str, seq: int | None = None) -> AuditVerdict:
    return AuditVerdict(
        ok=False,
        problem=problem,
        detail=detail,
        event_id=event.event_id,
        producer=event.producer,
        seq=event.seq if seq is None else seq,
    )


def _checkpoint_finding(problem: TamperKind, point: Checkpoint, detail: str) -> AuditVerdict:
    """A finding at a checkpoint's place, where no stored row can be named."""
    return AuditVerdict(ok=False, problem=problem, detail=detail, producer=point.producer, seq=point.seq)


def _where(event: AuditEvent) -> str:
    return f"event {event.event_id} (producer {event.producer or '-'}, seq {event.seq})"


def verify_chain(rows: Sequence[AuditEvent], *, anchored: bool) -> AuditVerdict | None:
    """The first problem on one producer's chain, or None.

    `rows` are sorted by (seq, event_id); `anchored`: the chain is checked from its start (seq 1), not
    from a `--since` cut."""
    if not rows:
        return None
    if not rows[0].producer:
        return _finding("inserted", rows[0], f"{_where(rows[0])} is on no hash chain")
    by_hash = {row.hash: row for row in rows}
    first = rows[0]
    if anchored and first.seq != 1:
        return _finding("deleted", first, f"seq 1..{first.seq - 1} missing before {_where(first)}", seq=1)
    if anchored and first.prev_hash:
        return _finding("inserted", first, f"{_where(first)} claims a predecessor but starts the chain")
    previous: AuditEvent | None = None
    for index, row in enumerate(rows):
        if previous is not None:
            if row.seq == previous.seq:
                intruder = _intruder(previous, row, rows[index + 1] if index + 1 < len(rows) else None)
                return _finding("inserted", intruder, f"{_where(intruder)} holds a seq another row already has")
            if row.seq != previous.seq + 1:
                return _finding(
                    "deleted",
                    row,
                    f"seq {previous.seq + 1}..{row.seq - 1} missing between {_where(previous)} and {_where(row)}",
                    seq=previous.seq + 1,
                )
            if row.prev_hash != previous.hash:
                linked = by_hash.get(row.prev_hash)
                if linked is not None and linked is not row:
                    return _finding(
                        "reordered", row, f"{_where(row)} belongs after event {linked.event_id} (seq {linked.seq})"
                    )
                if event_hash(row) != row.hash:
                    return _finding("modified", row, f"{_where(row)} no longer matches its hash")
                return _finding(
                    "modified",
                    previous,
                    f"{_where(previous)} was changed and rehashed: the next event links to other content",
                )
        if event_hash(row) != row.hash:
            return _finding("modified", row, f"{_where(row)} no longer matches its hash")
        previous = row
    return None


def _intruder(accepted: AuditEvent, row: AuditEvent, following: AuditEvent | None) -> AuditEvent:
    """Of two rows at one seq (`accepted` already checked out), the one that was not written by the producer.

    `row` unless it alone is intact and what the next row links to."""
    if event_hash(row) != row.hash or row.prev_hash != accepted.prev_hash:
        return row
    if following is not None and following.prev_hash == row.hash != accepted.hash:
        return accepted
    return row


def verify_checkpoints(
    key: bytes, checkpoints: Iterable[Checkpoint], heads: dict[tuple[str, int], AuditEvent]
) -> tuple[AuditVerdict | None, int]:
    """The first checkpoint that fails (bad signature, row gone, row rehashed) and how many were checked.

    `heads` maps (producer, seq) to the stored row at that place."""
    checked = 0
    for point in checkpoints:
        checked += 1
        expected = checkpoint_signature(key, point.producer, point.seq, point.head, point.ts)
        if not hmac.compare_digest(expected, point.signature):
            detail = f"the checkpoint of producer {point.producer} at seq {point.seq} has a bad signature"
            return _checkpoint_finding("checkpoint", point, detail), checked
        row = heads.get((point.producer, point.seq))
        if row is None:
            detail = f"seq {point.seq} of producer {point.producer}, signed by a checkpoint, is gone"
            return _checkpoint_finding("deleted", point, detail), checked
        if row.hash != point.head:
            return _finding(
                "modified", row, f"{_where(row)} differs from the signed checkpoint: the chain was rewritten"
            ), checked
    return None, checked
