"""The analytics HTTP API and the `/dashboard` page against a real run: nats-server, the audit service
on chdb fed through the real pipeline, and the admin service. The page is loaded in headless Chromium (Debian's),
its charts are checked against the events, and a screenshot is saved (`.artifacts/dashboard.png`).
"""

from __future__ import annotations

import base64
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from libs.common.contracts.messages import AuditEvent
from tests.support.admin_api import seeded_token
from tests.support.analytics_stack import stack_with_dataset
from tests.support.console_chromium import Chromium, TabPage, module_chromium

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".artifacts"
WAIT = 60.0


@dataclass
class Run:
    base: str
    events: list[AuditEvent]
    now: float
    owner: str
    """The first owner's API token."""
    analyst: str
    """An analyst principal's API token."""
    acme_analyst: str
    """An analyst bound to the customer `acme` only."""
    infra_analyst: str
    """An analyst bound to the team `infra` only."""


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    async with stack_with_dataset(tmp_path_factory.mktemp("dashboard")) as (stack, events, now):
        # made in KV directly: the admin service's own events (principals made through it) would count
        owner = await seeded_token(stack.nats_url, "owner", {"role": "owner"})
        analyst = await stack.person_token("ann@example.com", "analyst")
        acme = await seeded_token(stack.nats_url, "acme-ann", {"role": "analyst", "customer_id": "acme"}, kind="person")
        infra = await seeded_token(stack.nats_url, "infra-ian", {"role": "analyst", "team_id": "infra"}, kind="person")
        yield Run(stack.admin_url, events, now, owner, analyst, acme, infra)


chromium = module_chromium  # one browser for the module, a tab per test


async def _settled(page: TabPage, url: str) -> str:
    """The DOM of the dashboard at `url` once it has drawn its panels, or said why it has not."""
    await page.open(url)
    await page.wait(
        "location.pathname === '/dashboard' && document.readyState === 'complete'"
        " && ['ready', 'error', 'login'].includes(document.body.dataset.state)",
        "the dashboard drawn, or its reason not to be",
    )
    return str(await page.evaluate("document.documentElement.outerHTML"))


def _day_before(moment: float) -> datetime:
    """The whole hour the dashboard's default range (the last 24 hours) starts at, seen at `moment`."""
    return datetime.fromtimestamp(moment - 24 * 3600, UTC).replace(minute=0, second=0, microsecond=0)


def _last_day(run: Run) -> list[AuditEvent]:
    return [e for e in run.events if e.ts >= run.now - 24 * 3600]


# ------------------------------------------------------------------ the HTTP API


async def test_panels_answer_an_analyst_and_the_owner_but_nobody_else(run: Run) -> None:
    async with httpx.AsyncClient(base_url=run.base, timeout=30) as http:
        for token in (run.owner, run.analyst):
            got = await http.get("/admin/v1/analytics/panels/tools", headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200, got.text
        anonymous = await http.get("/admin/v1/analytics/panels/tools")
        assert anonymous.status_code == 401
        wrong = await http.get("/admin/v1/analytics/panels/tools", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_a_panel_counts_what_happened(run: Run) -> None:
    headers = {"Authorization": f"Bearer {run.analyst}"}
    async with httpx.AsyncClient(base_url=run.base, headers=headers, timeout=30) as http:
        got = await http.get(
            "/admin/v1/analytics/panels/keys", params={"since": run.now - 7 * 86400, "server": "files"}
        )
    assert got.status_code == 200
    body = got.json()
    calls = {row[0]: row[1] for row in body["rows"]}
    assert calls == Counter(e.key_name for e in run.events if e.server == "files")


async def test_the_teams_panel_sums_spend_and_the_team_filter_narrows_every_panel(run: Run) -> None:
    headers = {"Authorization": f"Bearer {run.analyst}"}
    since = run.now - 7 * 86400
    async with httpx.AsyncClient(base_url=run.base, headers=headers, timeout=30) as http:
        teams = (await http.get("/admin/v1/analytics/panels/teams", params={"since": since})).json()
        infra = await http.get("/admin/v1/analytics/panels/keys", params={"since": since, "team": "infra"})
        events = await http.get("/admin/v1/analytics/panels/events", params={"since": since, "team": "platform"})
    spend: dict[tuple[str | None, str | None], float] = defaultdict(float)
    for e in run.events:
        spend[(e.team_id, e.customer_id)] += e.cost_usd or 0.0
    rows = [dict(zip(teams["columns"], row, strict=True)) for row in teams["rows"]]
    assert {(r["team"], r["customer"]): r["spend_usd"] for r in rows} == pytest.approx(dict(spend), abs=1e-6)
    assert [r["spend_usd"] for r in rows] == sorted((r["spend_usd"] for r in rows), reverse=True)
    assert infra.status_code == 200 and {row[0] for row in infra.json()["rows"]} == {"ci-bot"}
    assert events.status_code == 200
    assert {row[1] for row in events.json()["rows"]} == {"alice", "bob"}  # the platform team's keys


TENANT_ESCAPES = {
    "whole table": "SELECT customer_id, count() FROM bastion.audit_events GROUP BY customer_id",
    "subquery": "SELECT customer_id, count() FROM (SELECT customer_id FROM bastion.audit_events) GROUP BY customer_id",
    "with": "WITH e AS (SELECT customer_id FROM bastion.audit_events) SELECT customer_id, count() FROM e GROUP BY 1",
    "in": "SELECT 'globex', count() FROM bastion.audit_events WHERE key_name IN "
    "(SELECT key_name FROM bastion.audit_events WHERE customer_id = 'globex')",
    "hourly rollup": "SELECT customer, sum(calls) FROM bastion.calls_hourly GROUP BY customer",
    "daily rollup": "SELECT customer, sum(calls) FROM bastion.calls_daily GROUP BY customer",
    "rollup view": "SELECT 'view', count() FROM bastion.calls_hourly_mv",
    "checkpoints": "SELECT 'checkpoints', count() FROM bastion.audit_checkpoints",
}


async def test_a_tenant_scoped_analyst_reads_only_its_tenants_rows_however_it_asks(run: Run) -> None:
    """An analyst bound to customer `acme` (or team `infra`) gets that tenant's rows from every table,
    subquery, WITH, IN and rollup, and from every panel: the engine filters each table of the database
    under whatever SQL arrives, and a table holding no tenant's rows answers none."""
    acme_calls = sum(1 for e in run.events if e.customer_id == "acme")
    assert 0 < acme_calls < len(run.events)
    async with httpx.AsyncClient(base_url=run.base, timeout=30) as http:
        answers = {}
        for name, sql in TENANT_ESCAPES.items():
            got = await http.post(
                "/admin/v1/analytics/query", json={"sql": sql}, headers={"Authorization": f"Bearer {run.acme_analyst}"}
            )
            assert got.status_code == 200, (name, got.text)
            answers[name] = {row[0]: row[1] for row in got.json()["rows"] if row[1]}
        teams = await http.get(
            "/admin/v1/analytics/panels/teams",
            params={"since": run.now - 7 * 86400},
            headers={"Authorization": f"Bearer {run.acme_analyst}"},
        )
        infra = await http.get(
            "/admin/v1/analytics/panels/keys",
            params={"since": run.now - 7 * 86400},
            headers={"Authorization": f"Bearer {run.infra_analyst}"},
        )
        everyone = await http.post(
            "/admin/v1/analytics/query",
            json={"sql": TENANT_ESCAPES["whole table"]},
            headers={"Authorization": f"Bearer {run.analyst}"},
        )
    for name in ("whole table", "subquery", "with"):
        assert answers[name] == {"acme": acme_calls}, name
    for name in ("hourly rollup", "daily rollup"):
        assert answers[name] == {"acme": acme_calls}, name
    for name in ("in", "rollup view", "checkpoints"):
        assert answers[name] == {}, name
    columns = teams.json()["columns"]
    assert {dict(zip(columns, row, strict=True))["customer"] for row in teams.json()["rows"]} == {"acme"}
    assert {row[0] for row in infra.json()["rows"]} == {"ci-bot"}, infra.text  # the infra team's one key
    assert "globex" in {row[0] for row in everyone.json()["rows"]}  # an unscoped analyst reads every tenant


async def test_panel_filters_are_validated(run: Run) -> None:
    headers = {"Authorization": f"Bearer {run.analyst}"}
    async with httpx.AsyncClient(base_url=run.base, headers=headers, timeout=30) as http:
        unknown = await http.get("/admin/v1/analytics/panels/passwords")
        bad_status = await http.get("/admin/v1/analytics/panels/events", params={"status": "weird"})
        backwards = await http.get("/admin/v1/analytics/panels/events", params={"since": 10, "until": 5})
        injected = await http.get("/admin/v1/analytics/panels/events", params={"key": "x' OR 1=1 --"})
    assert unknown.status_code == 422
    assert bad_status.status_code == 422
    assert backwards.status_code == 422 and "since" in backwards.json()["message"]
    assert injected.status_code == 200 and injected.json()["rows"] == []


async def test_the_query_endpoint_is_read_only(run: Run) -> None:
    headers = {"Authorization": f"Bearer {run.analyst}"}
    async with httpx.AsyncClient(base_url=run.base, headers=headers, timeout=30) as http:
        ok = await http.post(
            "/admin/v1/analytics/query",
            json={"sql": "SELECT count() AS n FROM bastion.audit_events FINAL WHERE server = {s:String}",
                  "parameters": {"s": "github"}},
        )  # fmt: skip
        refused = await http.post("/admin/v1/analytics/query", json={"sql": "DROP TABLE bastion.audit_events"})
        failed = await http.post("/admin/v1/analytics/query", json={"sql": "SELECT nope FROM bastion.audit_events"})
        too_many = await http.post(
            "/admin/v1/analytics/query", json={"sql": "SELECT event_id FROM bastion.audit_events", "max_rows": 10}
        )
        unknown_field = await http.post("/admin/v1/analytics/query", json={"sql": "SELECT 1", "readonly": 0})
    assert ok.status_code == 200, ok.text
    assert ok.json()["rows"] == [[sum(e.server == "github" for e in run.events)]]
    assert refused.status_code == 422 and refused.json()["error"] == "not_read_only"
    assert failed.status_code == 400 and "nope" in failed.json()["message"]
    assert too_many.status_code == 400 and "max rows" in too_many.json()["message"].lower()
    assert unknown_field.status_code == 422


# ------------------------------------------------------------------ the page in a real browser


class _Dom(HTMLParser):
    """Elements of interest in the dumped DOM: by id, and every chart mark with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.marks: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}
        self._table: str | None = None
        self.table_rows: Counter[str] = Counter()
        self.cells: dict[str, list[str]] = {}
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "body":
            self.body = values
        if values.get("id"):
            self.by_id[str(values["id"])] = values | {"tag": tag}
        if tag in ("rect", "polyline") and ("data-value" in values or "data-values" in values):
            self.marks.append(values | {"tag": tag})
        if tag == "table":
            self._table = values.get("id")
        if tag == "tr" and self._table:
            self.table_rows[self._table] += 1
        self._in_td = tag == "td"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        if tag == "td":
            self._in_td = False

    def handle_data(self, data: str) -> None:
        if self._in_td and self._table:
            self.cells.setdefault(self._table, []).append(data)


async def test_the_dashboard_renders_the_run_in_chromium(run: Run, chromium: Chromium) -> None:
    url = f"{run.base}/dashboard#token={run.analyst}"
    async with chromium.page(width=1400, height=1700) as page:
        opened = time.time()
        html = await _settled(page, url)
        rendered = time.time()
        # what was checked below is what the picture shows: the same load, its viewport
        shot = await page.send("Page.captureScreenshot", format="png")
    dom = _Dom()
    dom.feed(html)
    assert dom.body.get("data-state") == "ready", dom.by_id.get("status")

    day = _last_day(run)
    hours = Counter(datetime.fromtimestamp(e.ts, UTC).replace(minute=0, second=0, microsecond=0) for e in day)
    # the calls chart: one bar per hour with that hour's count (the range starts at a whole hour)
    calls = {
        datetime.fromtimestamp(int(str(m["data-x"])), UTC): int(str(m["data-value"]))
        for m in dom.marks
        if m.get("data-series") == "calls"
    }
    # the page's last 24 hours end when it rendered, not when the data was made (the module may cross
    # an hour); when the hour turned during the render, the page's first bar says which side it took
    since_hour = _day_before(opened)
    if min(calls) >= _day_before(rendered) > since_hour:
        since_hour = _day_before(rendered)
    shown = [e for e in run.events if datetime.fromtimestamp(e.ts, UTC) >= since_hour]
    all_hours = Counter(datetime.fromtimestamp(e.ts, UTC).replace(minute=0, second=0, microsecond=0) for e in shown)
    assert calls == dict(all_hours)
    assert len(hours) >= 23
    errors = sum(int(str(m["data-value"])) for m in dom.marks if m.get("data-series") == "errors")
    assert errors == sum(1 for e in shown if e.status in ("error", "tool_error"))
    # latency: three lines over the same hours
    lines = {m["data-series"]: str(m["data-values"]).split(",") for m in dom.marks if m["tag"] == "polyline"}
    assert sorted(lines) == ["p50", "p95", "p99"]
    assert all(len(values) == len(all_hours) for values in lines.values())
    assert all(
        float(a) <= float(b) <= float(c) for a, b, c in zip(lines["p50"], lines["p95"], lines["p99"], strict=True)
    )
    # top tools and keys: labelled bars with the counts of the range
    bars: dict[str, dict[str, float]] = defaultdict(dict)
    for m in dom.marks:
        if m.get("class") == "hbar":
            bars[str(m["data-chart"])][str(m["data-label"])] = float(str(m["data-value"]))
    in_range = [e for e in run.events if datetime.fromtimestamp(e.ts, UTC) >= since_hour]
    assert bars["chart-tools"] == dict(Counter(f"{e.server} / {e.tool}" for e in in_range))
    assert bars["chart-keys"] == dict(Counter(e.key_name for e in in_range))
    # spend: per tool, per key, per team and customer, as policy charged it
    spend: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in in_range:
        spend["chart-tools-cost"][f"{e.server} / {e.tool}"] += e.cost_usd or 0.0
        spend["chart-keys-cost"][e.key_name] += e.cost_usd or 0.0
        spend["chart-teams"][f"{e.team_id} / {e.customer_id}"] += e.cost_usd or 0.0
    for chart, want in spend.items():
        assert bars[chart] == pytest.approx({label: v for label, v in want.items() if v > 0}, abs=1e-6), chart
    assert len(bars["chart-teams"]) == 3  # platform/acme, platform/globex, infra/acme
    # server health and recent events
    assert dom.table_rows["table-servers"] == 1 + 3  # header + one row per server
    assert dom.table_rows["table-events"] == 1 + min(200, len(day))
    assert "search" in dom.cells["table-servers"]

    png = base64.b64decode(shot["data"])
    assert len(png) > 20_000  # a blank page is a few KB
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(png)


async def test_the_events_panel_filters_by_key_and_status(run: Run) -> None:
    headers = {"Authorization": f"Bearer {run.owner}"}
    async with httpx.AsyncClient(base_url=run.base, headers=headers, timeout=30) as http:
        got = await http.get(
            "/admin/v1/analytics/panels/events",
            params={"key": "bob", "status": "error", "since": run.now - 48 * 3600},
        )
    rows = got.json()["rows"]
    want = [e for e in run.events if e.key_name == "bob" and e.status == "error"]
    assert len(rows) == len(want) > 0
    assert {tuple(r[1:5]) for r in rows} == {(e.key_name, e.server, e.tool, e.status) for e in want}


async def test_the_page_asks_for_a_token_without_one(run: Run, chromium: Chromium) -> None:
    dom = _Dom()
    async with chromium.page() as page:
        dom.feed(await _settled(page, f"{run.base}/dashboard"))
    assert dom.body.get("data-state") == "login"
    assert not [m for m in dom.marks]


async def test_an_analyst_is_refused_the_rest_of_the_admin_api(run: Run) -> None:
    """Last in the module: the refusal is an audit row of its own (docs/admin-api.md), which the
    tests above, counting exactly the run's events, would otherwise see."""
    async with httpx.AsyncClient(base_url=run.base, timeout=30) as http:
        # an analyst reads analytics only: the rest of the admin API refuses it, naming what it lacks
        keys = await http.get("/admin/v1/keys", headers={"Authorization": f"Bearer {run.analyst}"})
        assert keys.status_code == 403 and keys.json()["permission"] == "keys:read"
