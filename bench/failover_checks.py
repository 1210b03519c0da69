"""The failover benchmark's figures and checks (`bench/failover.py`): per fault, its calls, errors,
p99 and recovery; after the run, every call answered, no tool executed twice, one audit row per handled
request, in words when one fails."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from bench.failover_load import Call, digest
from bench.fault_kinds import Fault, after
from bench.replicated_stack import p99
from libs.common.contracts.messages import AuditEvent


def fault_figures(fault: Fault, results: list[Call]) -> dict:
    """A fault's calls are those sent while it was the latest; its errors, those that ended while it
    was (a call cut by the next fault is that fault's); recovery, until its last error ended."""
    phase = [c for c in results if fault.injected <= c.started < fault.ended]
    bad = [c for c in results if c.outcome != "ok" and fault.injected <= c.ended < fault.ended]
    recovery = max((c.ended for c in bad), default=fault.injected) - fault.injected
    window = fault.injected + max(recovery, (fault.back or fault.ended) - fault.injected, 5.0)
    during = [c.latency for c in phase if c.started <= window]
    gaps: dict[str, float | int] = {"longest_gap_s": longest_gap(fault, results)}
    if fault.replica is not None:  # a slow member shows in its replica's latency, hardly in gaps
        its = [c for c in results if c.replica == fault.replica]
        lasting = [c for c in its if fault.injected <= c.started < (fault.back or fault.ended)]
        gaps["longest_gap_its_replica_s"] = longest_gap(fault, its)
        gaps["its_replica_calls"] = len(lasting)
        gaps["its_replica_p50_ms"] = round(1000 * statistics.median([c.latency for c in lasting]), 1) if lasting else 0
    return {
        "fault": fault.name,
        "calls": len(phase),
        "errors": len(bad),
        "errors_by_kind": dict(Counter(c.detail.split(" (")[0][:70] for c in bad).most_common(6)),
        "failed": sum(c.outcome in ("failed", "hung") for c in bad),
        "p99_during_ms": round(1000 * p99(during), 1),
        "recovery_s": round(recovery, 2),
        "back_after_s": after(fault, fault.back),
        **gaps,
        **fault.detail,
    }


def longest_gap(fault: Fault, calls: list[Call]) -> float:
    """The longest time, while the fault was the latest, without a successful call sent after it began."""
    done = sorted(c.ended for c in calls if c.outcome == "ok" and fault.injected <= c.started and c.ended < fault.ended)
    return round(max(b - a for a, b in itertools.pairwise([fault.injected, *done, fault.ended])), 2)


async def audit_settled(
    read: Callable[[], Awaitable[list[AuditEvent]]],
    backlog: Callable[[], tuple[int, int] | None],
    want: int,
    within: float,
    pause: float = 5.0,
) -> list[AuditEvent]:
    """The stored rows (`read`) once at least `want` are in, two reads `pause` s apart agree, and the
    audit writer's consumer holds nothing (`backlog`: messages not delivered yet, delivered and not
    acked); or whatever is stored after `within` s.

    Agreeing reads alone prove nothing: what the audit replica that was killed had fetched stays in the
    stream, unacked and invisible, until `ack_wait` (30 s) hands it to the replica that took the store
    over. Two reads 5 s apart agreed while 101 such messages waited (`tests/integration/test_failover_checks.py`)."""
    deadline = time.monotonic() + within
    previous: list[AuditEvent] | None = None
    while True:
        waiting = await asyncio.to_thread(backlog)  # before the read: a batch acked after it is in it
        try:
            rows = await read()
        except Exception as exc:  # the audit service is busy or taking over: try again
            print(f"  audit export: {exc}", flush=True)
            rows = []
        stable = previous is not None and len(rows) >= want and len(rows) == len(previous)
        if stable:
            print(f"  audit: {len(rows)} rows; the writer's consumer holds (new, unacked) {waiting}", flush=True)
        if (stable and waiting == (0, 0)) or time.monotonic() > deadline:
            return rows
        previous = rows
        await asyncio.sleep(pause)


def checks(results: list[Call], ledger: list[str], rows: list[AuditEvent], prefix: str) -> dict:
    """The end-of-run checks (each a count that must be 0, or a verdict)."""
    ran = Counter(ledger)
    handled = [c for c in results if c.kind != "list"]
    by_digest: Counter[str] = Counter()
    anonymous = 0
    for row in rows:
        if row.key_name.startswith(prefix):
            if row.arguments_sha256:
                by_digest[row.arguments_sha256] += 1
            else:
                anonymous += 1  # a call cut by an ingress kill, replayed from its journal without arguments
    expected: dict[str, Call] = {}
    for call in handled:
        expected[digest(call.arguments or {})] = call
        if call.kind == "code":  # the tool call its script made
            expected[digest({"mark": call.token})] = call
    answered = [c for c in handled if not c.detail.startswith("connection lost") and c.outcome != "hung"]
    missing = [c for c in answered if by_digest[digest(c.arguments or {})] != 1]
    inner_missing = [
        c for c in handled if c.kind == "code" and ran[c.token] and not by_digest[digest({"mark": c.token})]
    ]
    cut_ran_unrecorded = [
        c
        for c in handled
        if c.detail.startswith("connection lost") and ran[c.token] and not by_digest[digest(c.arguments or {})]
    ]
    told_failed_but_ran = [c for c in handled if c.outcome == "failed" and ran[c.token]]
    return {
        "calls": len(results),
        "unanswered": sum(c.outcome == "hung" for c in results),
        "failed": sum(c.outcome == "failed" for c in results),
        "retryable": sum(c.outcome == "retryable" for c in results),
        "failed_examples": [c.detail for c in results if c.outcome in ("failed", "hung")][:5],
        "executed_twice": sum(n > 1 for n in ran.values()),
        "executed_unasked": sum(t not in {c.token for c in handled} for t in ran),
        "told_failed_but_ran": len(told_failed_but_ran),
        "rows": sum(by_digest.values()) + anonymous,
        "rows_duplicated": sum(n > 1 for n in by_digest.values()),
        "rows_missing": len(missing),
        "rows_missing_examples": [f"{c.kind} {c.token} {c.outcome} {c.detail}" for c in missing[:5]],
        # a script's tool call that ran has its row even when its codemode replica was killed
        # before the event was published (codemode's audit journal, docs/reliability.md)
        "script_calls_unrecorded": len(inner_missing),
        "script_calls_unrecorded_examples": [
            f"{c.token} run {c.outcome} {c.detail} at {c.ended:.1f}" for c in inner_missing[:5]
        ],
        "rows_unexplained": sum(1 for d in by_digest if d not in expected)
        + max(0, anonymous - sum(c.detail.startswith("connection lost") for c in handled)),
        "rows_anonymous": anonymous,
        "cut_ran_unrecorded": max(0, len(cut_ran_unrecorded) - anonymous),
    }


def verdict(check: dict, chains_ok: bool) -> list[str]:
    """What failed, in words (empty: everything held)."""
    problems = [
        f"{check[name]} {words}"
        for name, words in (
            ("unanswered", "call(s) unanswered within their timeout"),
            ("failed", "call(s) failed with an error that is not retryable"),
            ("executed_twice", "token(s) executed twice"),
            ("executed_unasked", "ledger token(s) no call sent"),
            ("told_failed_but_ran", "call(s) told failed that ran"),
            ("rows_duplicated", "request(s) with two audit rows"),
            ("rows_missing", "handled request(s) without their audit row"),
            ("rows_unexplained", "audit row(s) no request explains"),
            ("cut_ran_unrecorded", "cut call(s) that ran without an audit row"),
            ("script_calls_unrecorded", "tool call(s) of a Code Mode script that ran without an audit row"),
        )
        if check[name]
    ]
    return problems if chains_ok else [*problems, "the hash chains do not verify"]
