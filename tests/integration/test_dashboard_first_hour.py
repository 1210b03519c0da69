"""The dashboard a new user sees first: one hour of data, Code Mode runs, a chat completion, an admin
change and only free calls. Every operation is labelled for what it is (no `/ execute_code`, no blank
server row, no LLM provider among the servers), the latency chart shows its one hour, and the spend
charts say the calls were free instead of "no calls"."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from libs.common.contracts.messages import AuditEvent
from tests.integration.test_dashboard import _Dom
from tests.support.analytics_data import stored_through_the_pipeline
from tests.support.analytics_stack import analytics_stack
from tests.support.chromium import dump_dom

pytestmark = pytest.mark.integration


@dataclass
class Run:
    base: str
    events: list[AuditEvent]
    analyst: str


def _events(now: float) -> list[AuditEvent]:
    def event(n: int, **fields: object) -> AuditEvent:
        return AuditEvent.model_validate(
            {"event_id": f"first-{n}", "ts": now - 50 + n, "status": "ok", "latency_ms": 5.0 + n} | fields
        )

    return [
        event(1, key_id="k1", key_name="alice", server="echo", tool="echo", name="echo__echo"),
        event(2, key_id="k1", key_name="alice", server="echo", tool="echo", name="echo__echo"),
        event(3, key_id="k1", key_name="alice", kind="code_run", tool="execute_code", name="execute_code"),
        event(4, key_id="k1", key_name="alice", kind="code_mode", tool="search_tools", name="search_tools"),
        event(5, key_id="k1", key_name="alice", kind="llm_request", server="openai", tool="gpt-4o", name="gpt-4o"),
        event(6, kind="admin", tool="key.create", name="key.create", actor="alice@example.com"),
    ]


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    tmp = tmp_path_factory.mktemp("first-hour")
    events = _events(time.time())
    async with analytics_stack(tmp, batch_size=50, flush_interval=0.05) as stack:
        # made in KV directly: the admin service's own events (principals made through it) would count
        analyst = await stack.person_token("ann@example.com", "analyst")
        await stored_through_the_pipeline(stack.nats_url, stack.audit, events)
        yield Run(stack.admin_url, events, analyst)


async def test_operations_without_a_server_are_labelled_and_providers_are_not_servers(run: Run) -> None:
    headers = {"Authorization": f"Bearer {run.analyst}"}
    async with httpx.AsyncClient(base_url=run.base, headers=headers, timeout=30) as http:
        servers = (await http.get("/admin/v1/analytics/panels/servers")).json()["rows"]
        providers = (await http.get("/admin/v1/analytics/panels/providers")).json()["rows"]
        keys = (await http.get("/admin/v1/analytics/panels/keys")).json()["rows"]
        choices = (await http.get("/admin/v1/analytics/panels/choices")).json()["rows"]
    assert [row[0] for row in servers] == ["echo"]
    assert [(row[0], row[1]) for row in providers] == [("openai", 1)]
    assert {row[0]: row[1] for row in keys} == {"alice": 5, "(admin API)": 1}
    assert sorted(choices[0][0]) == ["alice"] and sorted(choices[0][1]) == ["echo", "openai"]  # no '' option


async def test_the_first_hour_renders_with_labels_a_latency_point_and_free_spend(run: Run, tmp_path: Path) -> None:
    html = await dump_dom(f"{run.base}/dashboard#token={run.analyst}", tmp_path / "profile")
    dom = _Dom()
    dom.feed(html)
    assert dom.body.get("data-state") == "ready", dom.by_id.get("status")
    hours = {datetime.fromtimestamp(e.ts, UTC).replace(minute=0, second=0, microsecond=0) for e in run.events}
    points = re.findall(r'<circle class="point"[^>]*data-series="(p\d+)"', html)
    assert sorted(points) == sorted(["p50", "p95", "p99"] * len(hours))  # a dot per hour: one hour shows
    tools = {str(m["data-label"]) for m in dom.marks if m.get("data-chart") == "chart-tools"}
    assert tools == {
        "echo / echo",
        "Code Mode / execute_code",
        "Code Mode / search_tools",
        "LLM openai / gpt-4o",
        "admin API / key.create",
    }
    assert not [label for label in tools if label.startswith("/") or label.startswith(" ")]
    keys = {str(m["data-label"]) for m in dom.marks if m.get("data-chart") == "chart-keys"}
    assert keys == {"alice", "(admin API)"}
    assert dom.table_rows["table-servers"] == 1 + 1 and "echo" in dom.cells["table-servers"]
    assert dom.table_rows["table-providers"] == 1 + 1 and "openai" in dom.cells["table-providers"]
    empty_states = re.findall(r'class="empty">([^<]*)<', html)
    assert empty_states == [f"no spend in this range: {len(run.events)} calls, all free"] * 3
    assert "stack.json" in html  # the login says where the admin token is
