"""The analytics routes of the admin service as the audit service's limits need them (issue 26 items 3-4,
issue 24 item 7): each query names its principal (so a principal's allowance of concurrent queries
is its own: beyond it, 503 with `Retry-After`), payload columns only for a role holding
`audit:payloads` (the auditor, not the analyst), and a query whose HTTP caller hangs up is stopped in
the engine instead of running to its time limit. Against a real nats-server, the audit service on
chdb and the admin service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.audit import AuditService
from tests.support.admin_api import seeded_token
from tests.support.analytics_stack import analytics_stack
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ENDLESS = "SELECT count() FROM numbers(1000000000000) WHERE cityHash64(number) = 0"
"""A query that would run for hours: only its time limit or a kill stops it."""
QUERY = "/admin/v1/analytics/query"


@dataclass
class Run:
    base: str
    audit: AuditService
    analyst: str
    auditor: str


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    tmp = tmp_path_factory.mktemp("admin-analytics")
    async with analytics_stack(tmp, analytics_queries=3, analytics_queries_per_principal=1) as stack:
        analyst = await seeded_token(stack.nats_url, "ann@example.com", {"role": "analyst"}, kind="person")
        auditor = await seeded_token(stack.nats_url, "audra@example.com", {"role": "auditor"}, kind="person")
        yield Run(stack.admin_url, stack.audit, analyst, auditor)


def _client(run: Run, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=run.base, headers={"Authorization": f"Bearer {token}"}, timeout=90)


def _running(run: Run) -> int:
    assert run.audit.runner is not None
    return len(run.audit.runner.running)


async def test_payload_columns_are_the_auditors_not_the_analysts(run: Run) -> None:
    sql = {"sql": "SELECT count(arguments) AS n, max(result) AS r FROM bastion.audit_events"}
    async with _client(run, run.analyst) as analyst, _client(run, run.auditor) as auditor:
        refused = await analyst.post(QUERY, json=sql)
        star = await analyst.post(QUERY, json={"sql": "SELECT * FROM bastion.audit_events LIMIT 1"})
        metadata = await analyst.post(QUERY, json={"sql": "SELECT count() FROM bastion.audit_events"})
        allowed = await auditor.post(QUERY, json=sql)
    assert refused.status_code == 422 and refused.json()["error"] == "not_read_only", refused.text
    assert "arguments" in refused.json()["message"]
    assert star.status_code == 422 and "name the columns" in star.json()["message"], star.text
    assert metadata.status_code == 200, metadata.text
    assert allowed.status_code == 200 and allowed.json()["columns"] == ["n", "r"], allowed.text


async def test_a_principal_beyond_its_allowance_is_told_when_to_retry_and_others_still_run(run: Run) -> None:
    """The analyst's one slot is taken by a long query: its second gets 503 and `Retry-After`, naming
    it; the auditor (another principal) still runs, so the principal is the analyst's own name."""
    async with _client(run, run.analyst) as analyst, _client(run, run.auditor) as auditor:
        long = asyncio.create_task(analyst.post(QUERY, json={"sql": ENDLESS, "timeout": 60}))
        try:
            await poll_until(lambda: _running(run) == 1, "the analyst's long query running")
            again = await analyst.post(QUERY, json={"sql": "SELECT 1"})
            other = await auditor.post(QUERY, json={"sql": "SELECT 1"})
        finally:
            long.cancel()
            await asyncio.gather(long, return_exceptions=True)
    assert again.status_code == 503, again.text
    assert again.json()["error"] == "busy" and "ann@example.com has 1" in again.json()["message"]
    assert int(again.headers["Retry-After"]) >= 1
    assert other.status_code == 200 and other.json()["rows"] == [[1]], other.text
    await poll_until(lambda: _running(run) == 0, "the long query stopped", within=30)


async def test_a_query_whose_http_caller_hangs_up_is_stopped_in_the_engine(run: Run) -> None:
    """Without the cancel the query would hold the analyst's slot (and a core) for its 60 s."""
    for _ in range(2):  # a second time: the slot was given back, not leaked
        async with _client(run, run.analyst) as analyst:
            caller = asyncio.create_task(analyst.post(QUERY, json={"sql": ENDLESS, "timeout": 60}))
            await poll_until(lambda: _running(run) == 1, "the query running in the engine")
            caller.cancel()  # the client goes away: its connection closes
            await asyncio.gather(caller, return_exceptions=True)
        await poll_until(lambda: _running(run) == 0, "the engine let go of the query", within=30)
    async with _client(run, run.analyst) as analyst:
        assert (await analyst.post(QUERY, json={"sql": "SELECT 1"})).json()["rows"] == [[1]]
