"""The analytics routes of the admin service as the audit service's limits need them:
each query names its principal (so a principal's allowance of concurrent queries
is its own: beyond it, 503 with `Retry-After`), payload columns only for a role holding
`audit:payloads` (the auditor, not the analyst), and a query whose HTTP caller hangs up is stopped in
the engine instead of running to its time limit. Against a real nats-server, the audit service on
chdb and the admin service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.analytics_stack import AnalyticsStack, analytics_stack
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ENDLESS = "SELECT count() FROM numbers(1000000000000) WHERE cityHash64(number) = 0"
"""A query that would run for hours: only its time limit or a kill stops it."""
QUERY = "/admin/v1/analytics/query"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AnalyticsStack]:
    tmp = tmp_path_factory.mktemp("admin-analytics")
    async with analytics_stack(tmp, analytics_queries=3, analytics_queries_per_principal=1) as stack:
        yield stack


@pytest.fixture(scope="module")
async def analyst_token(stack: AnalyticsStack) -> str:
    return await stack.person_token("ann@example.com", "analyst")


@pytest.fixture(scope="module")
async def auditor_token(stack: AnalyticsStack) -> str:
    return await stack.person_token("audra@example.com", "auditor")


def _client(stack: AnalyticsStack, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.admin_url, headers={"Authorization": f"Bearer {token}"}, timeout=90)


def _running(stack: AnalyticsStack) -> int:
    assert stack.audit.runner is not None
    return len(stack.audit.runner.running)


async def test_payload_columns_are_the_auditors_not_the_analysts(
    stack: AnalyticsStack, analyst_token: str, auditor_token: str
) -> None:
    sql = {"sql": "SELECT count(arguments) AS n, max(result) AS r FROM bastion.audit_events"}
    async with _client(stack, analyst_token) as analyst, _client(stack, auditor_token) as auditor:
        refused = await analyst.post(QUERY, json=sql)
        star = await analyst.post(QUERY, json={"sql": "SELECT * FROM bastion.audit_events LIMIT 1"})
        metadata = await analyst.post(QUERY, json={"sql": "SELECT count() FROM bastion.audit_events"})
        allowed = await auditor.post(QUERY, json=sql)
    assert refused.status_code == 422 and refused.json()["error"] == "not_read_only", refused.text
    assert "arguments" in refused.json()["message"]
    assert star.status_code == 422 and "name the columns" in star.json()["message"], star.text
    assert metadata.status_code == 200, metadata.text
    assert allowed.status_code == 200 and allowed.json()["columns"] == ["n", "r"], allowed.text


async def test_a_principal_beyond_its_allowance_is_told_when_to_retry_and_others_still_run(
    stack: AnalyticsStack, analyst_token: str, auditor_token: str
) -> None:
    """The analyst's one slot is taken by a long query: its second gets 503 and `Retry-After`, naming
    it; the auditor (another principal) still runs, so the principal is the analyst's own name."""
    async with _client(stack, analyst_token) as analyst, _client(stack, auditor_token) as auditor:
        long = asyncio.create_task(analyst.post(QUERY, json={"sql": ENDLESS, "timeout": 60}))
        try:
            await poll_until(lambda: _running(stack) == 1, "the analyst's long query running")
            again = await analyst.post(QUERY, json={"sql": "SELECT 1"})
            other = await auditor.post(QUERY, json={"sql": "SELECT 1"})
        finally:
            long.cancel()
            await asyncio.gather(long, return_exceptions=True)
    assert again.status_code == 503, again.text
    assert again.json()["error"] == "busy" and "ann@example.com has 1" in again.json()["message"]
    assert int(again.headers["Retry-After"]) >= 1
    assert other.status_code == 200 and other.json()["rows"] == [[1]], other.text
    await poll_until(lambda: _running(stack) == 0, "the long query stopped", within=30)


async def test_a_query_whose_http_caller_hangs_up_is_stopped_in_the_engine(
    stack: AnalyticsStack, analyst_token: str
) -> None:
    """Without the cancel the query would hold the analyst's slot (and a core) for its 60 s."""
    for _ in range(2):  # a second time: the slot was given back, not leaked
        async with _client(stack, analyst_token) as analyst:
            caller = asyncio.create_task(analyst.post(QUERY, json={"sql": ENDLESS, "timeout": 60}))
            await poll_until(lambda: _running(stack) == 1, "the query running in the engine")
            caller.cancel()  # the client goes away: its connection closes
            await asyncio.gather(caller, return_exceptions=True)
        await poll_until(lambda: _running(stack) == 0, "the engine let go of the query", within=30)
    async with _client(stack, analyst_token) as analyst:
        assert (await analyst.post(QUERY, json={"sql": "SELECT 1"})).json()["rows"] == [[1]]
