"""A deterministic day-and-a-half of gateway traffic for the analytics tests (docs queries, dashboard,
Grafana panels), and plain-Python answers to compare ClickHouse's with.

Three keys, three servers, a handful of tools, every status, latencies that differ per tool, spread
hour by hour over the last 36 hours so hourly and daily rollups both have several buckets.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import nats

from libs.common.analytics.queries import AnalyticsQuery
from libs.common.audit.audit_chain import producer_id
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.contracts.messages import AuditEvent
from services.audit import AuditService
from tests.support.polling import poll_until

__all__ = ["HOURS", "PRICES", "TEAMS", "TOOLS", "dataset", "percentile", "rate", "stored_through_the_pipeline"]

HOURS = 36
TOOLS: dict[str, tuple[str, float]] = {  # tool -> (server, base latency in ms)
    "search_code": ("github", 40.0),
    "create_issue": ("github", 120.0),
    "read_file": ("files", 2.0),
    "list_dir": ("files", 1.0),
    "web_search": ("search", 300.0),
}
KEYS = ("alice", "bob", "ci-bot")
TEAMS = {"alice": ("platform", "acme"), "bob": ("platform", "globex"), "ci-bot": ("infra", "acme")}
"""key -> (team, customer) the key belongs to."""
PRICES = {"search_code": 0.002, "create_issue": 0.01, "read_file": 0.0005, "list_dir": 0.0, "web_search": 0.025}
"""USD charged per call that reached the upstream (a denied call costs nothing)."""


def dataset(now: float) -> list[AuditEvent]:
    """About 700 events ending a minute before `now`; same `now`, same events (ids included)."""
    events: list[AuditEvent] = []
    end = math.floor(now) - 60
    n = 0
    for hour in range(HOURS):
        for slot, (tool, (server, base)) in enumerate(TOOLS.items()):
            for repeat in range(1 + (hour + slot) % 4):
                n += 1
                key = KEYS[(hour + slot + repeat) % len(KEYS)]
                status = "ok"
                error_kind = None
                if server == "search" and n % 5 == 0:
                    status, error_kind = "error", "upstream_timeout"
                elif tool == "create_issue" and key == "ci-bot":
                    status, error_kind = "denied", "forbidden"
                elif tool == "read_file" and n % 7 == 0:
                    status, error_kind = "tool_error", None
                events.append(
                    AuditEvent(
                        event_id=f"evt-{n:05d}",
                        ts=end - hour * 3600 - slot * 60 - repeat * 7 + 0.125,
                        key_id=f"id-{key}",
                        key_name=key,
                        server=server,
                        tool=tool,
                        name=f"{server}__{tool}",
                        status=status,
                        error_kind=error_kind,
                        error="upstream took too long" if error_kind == "upstream_timeout" else None,
                        latency_ms=base * (1 + (n % 10) / 10),
                        upstream_ms=None if status == "denied" else base * (1 + (n % 10) / 10) * 0.9,
                        request_bytes=100 + n % 50,
                        response_bytes=0 if status == "denied" else 1000 + 10 * (n % 30),
                        team_id=TEAMS[key][0],
                        customer_id=TEAMS[key][1],
                        cost_usd=None if status == "denied" else PRICES[tool],
                    )
                )
    return events


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks: what ClickHouse's `quantile` gives below 8192 values."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(events: Iterable[AuditEvent], failed: Callable[[AuditEvent], bool]) -> float:
    chosen = list(events)
    return sum(1 for e in chosen if failed(e)) / len(chosen)


def day_of(event: AuditEvent) -> str:
    return datetime.fromtimestamp(event.ts, UTC).date().isoformat()


async def stored_through_the_pipeline(nats_url: str, service: AuditService, events: list[AuditEvent]) -> None:
    """Publish `events` as a producer does (linked on a chain, batched into the stream) and return
    once the running audit service has written every one of them."""
    nc = await nats.connect(nats_url)
    try:
        async with AuditPublisher(nc, producer=producer_id("ingress")) as publisher:
            for event in events:
                assert publisher.emit(event)
    finally:
        await nc.close()

    async def landed() -> bool:
        stored = await asyncio.to_thread(service.store.count)
        return stored >= len(events) and await asyncio.to_thread(_rolled_up, service) >= len(events)

    await poll_until(landed, "the dataset in ClickHouse, its rollups too", within=60)


_ROLLED_UP = "SELECT least((SELECT sum(calls) FROM bastion.calls_hourly), (SELECT sum(calls) FROM bastion.calls_daily))"


def _rolled_up(service: AuditService) -> int:
    """Events the rollups count, asked as an analyst's query is (a connection of its own).

    The events' table can hold an insert's rows before the views' tables do: each part becomes
    visible as it is written, the views' after the table's, and a question asked in between found
    the hourly rollup empty (twice in two days of full-suite runs)."""
    answer = service.store.analytics(AnalyticsQuery(sql=_ROLLED_UP), _ROLLED_UP, {}, "seeding")
    return int(answer.rows[0][0] or 0)
