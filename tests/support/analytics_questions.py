"""The ten questions of docs/analytics.md and what each must answer, computed in Python from the events
the audit service was fed: `doc_queries` reads the questions' SQL from the doc, `CHECKS[n]` checks the
rows question n got against the events."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from libs.common.contracts.messages import AuditEvent
from tests.support.analytics_data import percentile

__all__ = ["CHECKS", "Seeded", "doc_queries", "hour", "utc"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"


class Seeded(Protocol):
    """What the answers are computed from: the events the audit service holds, and the `now` they lead up to."""

    @property
    def events(self) -> list[AuditEvent]: ...

    @property
    def now(self) -> float: ...


def doc_queries() -> dict[int, str]:
    text = DOC.read_text()
    found = re.findall(r"^### (\d+)\. .*?\n```sql\n(.*?)```", text, flags=re.S | re.M)
    return {int(number): sql for number, sql in found}


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def hour(ts: float) -> datetime:
    return utc(ts).replace(minute=0, second=0, microsecond=0)


def _since(stack: Seeded, **delta: float) -> list[AuditEvent]:
    start = stack.now - timedelta(**delta).total_seconds()
    return [e for e in stack.events if e.ts >= start]


def _as_datetime(value: Any) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _as_date(value: Any) -> date:
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value


def q1(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    start = hour(stack.now - 24 * 3600)
    want: dict[datetime, Counter[str]] = defaultdict(Counter)
    for e in stack.events:
        if hour(e.ts) >= start:
            bucket = want[hour(e.ts)]
            bucket["calls"] += 1
            bucket["errors"] += e.status in ("error", "tool_error")
            bucket["denied"] += e.status == "denied"
    got = {_as_datetime(r["hour"]): Counter(calls=r["calls"], errors=r["errors"], denied=r["denied"]) for r in rows}
    assert got == dict(want)
    assert [_as_datetime(r["hour"]) for r in rows] == sorted(want)


def q2(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    chosen = _since(stack, days=7)
    calls = Counter((e.server, e.tool) for e in chosen)
    spend: dict[tuple[str, str], float] = defaultdict(float)
    for e in chosen:
        spend[(e.server, e.tool)] += e.cost_usd or 0.0
    want = sorted(calls, key=lambda tool: (-round(spend[tool], 6), -calls[tool], tool))[:10]
    assert [(r["server"], r["tool"]) for r in rows] == want
    for r in rows:
        assert r["operations"] == calls[(r["server"], r["tool"])]
        assert r["spend_usd"] == pytest.approx(spend[(r["server"], r["tool"])], abs=1e-6)
    assert rows[0]["tool"] == "web_search" and rows[0]["spend_usd"] > 0  # the dearest tool in the dataset


def q3(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    by_server: dict[str, list[AuditEvent]] = defaultdict(list)
    for e in _since(stack, days=7):
        by_server[e.server].append(e)
    for r in rows:
        events = by_server.pop(r["server"])
        assert r["operations"] == len(events)
        assert r["error_rate"] == pytest.approx(sum(e.status == "error" for e in events) / len(events), abs=1e-4)
        assert r["tool_error_rate"] == pytest.approx(
            sum(e.status == "tool_error" for e in events) / len(events), abs=1e-4
        )
        assert r["denied_rate"] == pytest.approx(sum(e.status == "denied" for e in events) / len(events), abs=1e-4)
    assert not by_server
    assert rows[0]["server"] == "search"  # the only server with upstream errors in the dataset


def q4(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in _since(stack, days=7):
        latencies[(e.server, e.tool)].append(e.latency_ms)
    assert len(rows) == len(latencies)
    for r in rows:
        values = latencies[(r["server"], r["tool"])]
        for column, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            assert r[column] == pytest.approx(percentile(values, q), abs=0.01)
    assert [r["p95_ms"] for r in rows] == sorted((r["p95_ms"] for r in rows), reverse=True)
    assert rows[0]["tool"] == "web_search"


def q5(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    day = utc(stack.now).date() - timedelta(days=1)
    chosen = [e for e in stack.events if e.name == "github__create_issue" and utc(e.ts).date() == day]
    assert chosen, "the dataset covers yesterday"
    per_key: dict[str, list[AuditEvent]] = defaultdict(list)
    for e in chosen:
        per_key[e.key_name].append(e)
    want = sorted(per_key.items(), key=lambda item: (-len(item[1]), item[0]))
    assert [r["key_name"] for r in rows] == [key for key, _ in want]
    for r, (_, events) in zip(rows, want, strict=True):
        assert r["calls"] == len(events)
        assert r["failed"] == sum(e.status != "ok" for e in events)
        assert _as_datetime(r["first"]).timestamp() == pytest.approx(min(e.ts for e in events), abs=1e-3)
        assert _as_datetime(r["last"]).timestamp() == pytest.approx(max(e.ts for e in events), abs=1e-3)


def q6(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    month = utc(stack.now).date().replace(day=1)
    chosen = [e for e in stack.events if utc(e.ts).date() >= month]
    calls = Counter((e.team_id, e.customer_id) for e in chosen)
    refused = Counter((e.team_id, e.customer_id) for e in chosen if e.status == "denied")
    spend: dict[tuple[str | None, str | None], float] = defaultdict(float)
    for e in chosen:
        spend[(e.team_id, e.customer_id)] += e.cost_usd or 0.0
    got = {(r["team"], r["customer"]): (r["operations"], r["refused"], r["spend_usd"]) for r in rows}
    assert set(got) == set(calls)
    for group, (operations, denied, spend_usd) in got.items():
        assert (operations, denied) == (calls[group], refused[group])
        assert spend_usd == pytest.approx(spend[group], abs=1e-6)
    assert [r["spend_usd"] for r in rows] == sorted((r["spend_usd"] for r in rows), reverse=True)


def q7(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    denied = Counter((e.key_name, e.server, e.tool) for e in _since(stack, days=7) if e.status == "denied")
    want = sorted(denied.items(), key=lambda item: (-item[1], item[0]))
    assert [((r["key_name"], r["server"], r["tool"]), r["denied"]) for r in rows] == want
    assert want and all(key == "ci-bot" for (key, _, _), _ in want)


def q8(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    errors = Counter((e.server, e.error_kind) for e in _since(stack, days=7) if e.status == "error")
    want = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    assert [((r["server"], r["error_kind"]), r["errors"]) for r in rows] == want
    assert all(r["example"] == "upstream took too long" for r in rows)


def q9(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    start = utc(stack.now).date() - timedelta(days=30)
    groups: dict[tuple[date, str], list[AuditEvent]] = defaultdict(list)
    for e in stack.events:
        if utc(e.ts).date() >= start:
            groups[(utc(e.ts).date(), e.server)].append(e)
    assert [(_as_date(r["day"]), r["server"]) for r in rows] == sorted(groups)
    for r in rows:
        events = groups[(_as_date(r["day"]), r["server"])]
        assert r["operations"] == len(events)
        assert r["failures"] == sum(e.status == "error" for e in events)
        assert r["avg_latency_ms"] == pytest.approx(sum(e.latency_ms for e in events) / len(events), abs=0.01)


def q10(stack: Seeded, rows: list[dict[str, Any]]) -> None:
    failed = sorted(
        (e for e in stack.events if e.key_name == "bob" and e.status != "ok"),
        key=lambda e: (e.ts, e.event_id),
        reverse=True,
    )[:20]
    assert rows and len(rows) == len(failed)
    for r, e in zip(rows, failed, strict=True):
        assert (r["name"], r["status"], r["error_kind"], r["error"]) == (e.name, e.status, e.error_kind, e.error)
        assert r["latency_ms"] == pytest.approx(e.latency_ms)
        assert _as_datetime(r["ts"]).timestamp() == pytest.approx(e.ts, abs=1e-6)


CHECKS: dict[int, Callable[[Seeded, list[dict[str, Any]]], None]] = {
    1: q1,
    2: q2,
    3: q3,
    4: q4,
    5: q5,
    6: q6,
    7: q7,
    8: q8,
    9: q9,
    10: q10,
}
