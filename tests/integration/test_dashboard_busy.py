"""The dashboard asks for its nine panels at once, more than a principal's allowance of analytics
queries: behind a query that holds the one slot longer than the audit service queues the rest, the
panels are answered "busy, retry after", and the page retries them as told instead of showing an
error (it did, on a loaded machine, with the default allowance of two)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.integration.test_dashboard import _Dom
from tests.support.analytics_stack import analytics_stack
from tests.support.chromium import dump_dom
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

HOLD = "SELECT sum(number % 7) FROM numbers(1000000000000)"
"""Endless at one core: runs until its timeout stops it."""


async def test_the_dashboard_retries_panels_answered_busy(tmp_path: Path) -> None:
    async with analytics_stack(tmp_path / "stack", analytics_queries=1, analytics_queries_per_principal=1) as stack:
        analyst = await stack.person_token("ann@example.com", "analyst")
        headers = {"Authorization": f"Bearer {analyst}"}
        async with httpx.AsyncClient(base_url=stack.admin_url, headers=headers, timeout=30) as http:
            holding = asyncio.create_task(http.post("/admin/v1/analytics/query", json={"sql": HOLD, "timeout": 5}))
            await poll_until(lambda: bool(stack.audit.runner.running), "the holding query's slot")
            html = await dump_dom(f"{stack.admin_url}/dashboard#token={analyst}", tmp_path / "profile")
            held = await holding
    assert held.status_code == 400 and held.json()["error"] == "query_limit"  # stopped by its timeout
    dom = _Dom()
    dom.feed(html)
    assert dom.body.get("data-state") == "ready", html[html.find('id="status"') :][:200]
