"""Analytics against a real nats-server and the real ClickHouse engine (chdb), fed by the real audit
pipeline: every query in docs/analytics.md answers what the events say (their answers are computed
in tests/support/analytics_questions.py), queries are read-only and limited, and `bastion audit
export` pages through a range exactly once per event.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from cli.analytics import export, query_nats
from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsQuery, NotReadOnly, engine_limits
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent
from services.audit import AuditService
from services.audit.errors import StoreUnavailable
from tests.support.analytics_questions import CHECKS, doc_queries, hour, utc
from tests.support.analytics_stack import stack_with_dataset

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    nats_url: str
    service: AuditService
    events: list[AuditEvent]
    now: float


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One audit service holding the dataset, shared by the module: seeding takes a few seconds."""
    async with stack_with_dataset(tmp_path_factory.mktemp("analytics"), admin=False) as (services, events, now):
        yield Stack(services.nats_url, services.audit, events, now)


async def ask(stack: Stack, sql: str, **fields: Any) -> AnalyticsAnswer:
    answer = await query_nats(stack.nats_url, AnalyticsQuery(sql=sql, **fields))
    assert answer.error is None, answer.error
    return answer


def records(answer: AnalyticsAnswer) -> list[dict[str, Any]]:
    return [dict(zip(answer.columns, row, strict=True)) for row in answer.rows]


# ------------------------------------------------------------------ the ten questions in the doc


def test_the_doc_has_the_ten_questions() -> None:
    assert sorted(doc_queries()) == list(range(1, 11))


@pytest.mark.parametrize("number", sorted(CHECKS))
async def test_doc_query_answers_what_the_events_say(stack: Stack, number: int) -> None:
    answer = await ask(stack, doc_queries()[number])
    assert answer.rows, f"question {number} found nothing; " + await _clocks(stack)
    CHECKS[number](stack, records(answer))


async def _clocks(stack: Stack) -> str:
    """What a question that found nothing had to go on: the dataset's clock, the engine's, and the rows' span."""
    span = await ask(stack, "SELECT now(), min(hour), max(hour), sum(calls) FROM bastion.calls_hourly")
    events = (min(e.ts for e in stack.events), max(e.ts for e in stack.events))
    dataset = f"the dataset's now {utc(stack.now)}, its events {utc(events[0])} .. {utc(events[1])}"
    return f"{dataset}; the engine's (now, first hour, last hour, calls): {span.rows}"


# ------------------------------------------------------------------ read-only and limits


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE bastion.audit_events", "not DROP"),
        ("ALTER TABLE bastion.audit_events DELETE WHERE 1", "not ALTER"),
        ("INSERT INTO bastion.audit_events (event_id) VALUES ('x')", "not INSERT"),
        ("SELECT 1; DROP TABLE bastion.audit_events", "exactly one statement"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
        ("SELECT count() FROM bastion.audit_events SETTINGS readonly = 0", "SETTINGS"),
        ("OPTIMIZE TABLE bastion.audit_events FINAL", "not OPTIMIZE"),
        ("SELECT formatDateTime(ts, '%F') FROM bastion.audit_events FORMAT CSV", "FORMAT clause"),
    ],
)
async def test_anything_but_one_select_is_refused_by_the_service(stack: Stack, sql: str, reason: str) -> None:
    """Sent raw (no CLI check on the way): the audit service refuses it itself, and nothing changed."""
    nc = await nats.connect(stack.nats_url)
    try:
        reply = await nc.request(subjects.ANALYTICS_QUERY, AnalyticsQuery(sql=sql).model_dump_json().encode(), 10)
    finally:
        await nc.close()
    answer = AnalyticsAnswer.model_validate_json(reply.data)
    assert answer.error is not None and reason in answer.error
    assert not answer.rows
    assert await asyncio.to_thread(stack.service.store.count) == len(stack.events)


async def test_format_functions_are_values_not_a_format_clause(stack: Stack) -> None:
    """`formatDateTime(ts, '%F')` parses with a `format` argument of its own: it runs (the rows per
    day are what the events say), while the query's FORMAT clause above is refused."""
    sql = (
        "SELECT formatDateTime(ts, '%F', 'UTC') AS day, count() AS n FROM bastion.audit_events FINAL"
        " GROUP BY day ORDER BY day"
    )
    per_day = Counter(utc(e.ts).date().isoformat() for e in stack.events)
    assert (await ask(stack, sql)).rows == [[day, per_day[day]] for day in sorted(per_day)]


async def test_the_cli_refuses_before_connecting(stack: Stack) -> None:
    with pytest.raises(NotReadOnly, match="not DELETE"):
        await query_nats("nats://127.0.0.1:1", AnalyticsQuery(sql="DELETE FROM bastion.audit_events WHERE 1"))


async def test_the_engine_itself_is_read_only(stack: Stack) -> None:
    """The second wall: a write that got past the allow-list still fails in ClickHouse (`readonly = 1`)."""
    query = AnalyticsQuery(sql="unused")
    limits = engine_limits(query, max_bytes=1 << 20, memory=1 << 28, threads=1)
    with pytest.raises(StoreUnavailable, match="READONLY"):
        await asyncio.to_thread(
            stack.service.store.analytics, query, "CREATE TABLE default.t (a Int8) ENGINE = Memory", limits, "m"
        )
    # and the writer's session is not left read-only
    answer = await ask(stack, "SELECT count() FROM bastion.audit_events FINAL")
    assert answer.rows == [[len(stack.events)]]


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("CREATE TABLE default.t (a Int8) ENGINE = Memory", "READONLY"),
        ("INSERT INTO FUNCTION file('{file}', 'LineAsString') SELECT 'x'", "READONLY"),
        ("SELECT * FROM file('{file}', 'LineAsString')", "READONLY"),
        ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", "READONLY"),
        ("SELECT * FROM executable('cat', 'TSV', 'x String')", "READONLY"),
        ("SELECT 1 SETTINGS max_memory_usage = 0", "Cannot modify 'max_memory_usage' setting in readonly mode"),
        ("SELECT 1 SETTINGS readonly = 0", "Cannot modify 'readonly' setting in readonly mode"),
        ("SET max_execution_time = 0", "Cannot modify 'max_execution_time' setting in readonly mode"),
        ("SYSTEM FLUSH LOGS", "READONLY"),
        # what the embedded engine does not refuse: the allow-list alone keeps these out (docs/analytics.md)
        ("SELECT file('{file}')", None),
        ("SELECT count() > 0 FROM system.tables", None),
        ("SELECT currentUser()", None),
        ("SELECT 'written' INTO OUTFILE '{file}.out'", None),
        ("KILL QUERY WHERE 0", None),
    ],
)
async def test_what_the_embedded_engine_refuses_by_itself(
    stack: Stack, tmp_path: Path, sql: str, refused: str | None
) -> None:
    """The second wall, measured without the first: a query's connection is read-only with its limits
    set before `readonly = 1`. It stops writes, settings and table functions; it does not stop the
    scalar `file()`, the `system` database or the settings functions, which docs/analytics.md says."""
    secret = tmp_path / "secret"
    secret.write_text("not for analysts")
    query = AnalyticsQuery(sql="unused")
    limits = engine_limits(query, max_bytes=1 << 20, memory=1 << 28, threads=1)
    run = stack.service.store.analytics
    if refused is None:
        answer = await asyncio.to_thread(run, query, sql.format(file=secret), limits, "bypass")
        if "OUTFILE" in sql:
            assert b"written" in secret.with_name("secret.out").read_bytes()  # in the Native format asked
        elif not sql.startswith("KILL"):
            assert answer.rows and answer.rows[0][0] in ("not for analysts", True, "default")
        return
    with pytest.raises(StoreUnavailable, match=re.escape(refused)):
        await asyncio.to_thread(run, query, sql.format(file=secret), limits, "bypass")


async def test_a_row_limit_fails_the_query_instead_of_cutting_it(stack: Stack) -> None:
    answer = await query_nats(
        stack.nats_url, AnalyticsQuery(sql="SELECT event_id FROM bastion.audit_events", max_rows=50)
    )
    assert answer.error is not None and "max rows" in answer.error.lower()
    assert not answer.rows


async def test_a_time_limit_stops_a_slow_query(stack: Stack) -> None:
    sql = "SELECT count() FROM numbers(1000000000000) WHERE cityHash64(number) = 0"
    answer = await query_nats(stack.nats_url, AnalyticsQuery(sql=sql, timeout=0.5))
    assert answer.error is not None and "timeout" in answer.error.lower()
    assert answer.error_kind == "limit"


async def test_parameters_are_values_not_sql(stack: Stack) -> None:
    sql = "SELECT count() AS n FROM bastion.audit_events FINAL WHERE key_name = {key:String}"
    assert (await ask(stack, sql, parameters={"key": "bob"})).rows == [[sum(e.key_name == "bob" for e in stack.events)]]
    assert (await ask(stack, sql, parameters={"key": "bob' OR 1 = 1 --"})).rows == [[0]]


async def test_a_bad_query_is_answered_with_the_engine_error(stack: Stack) -> None:
    answer = await query_nats(stack.nats_url, AnalyticsQuery(sql="SELECT no_such_column FROM bastion.audit_events"))
    assert answer.error is not None and "no_such_column" in answer.error
    assert "max_result_rows" not in answer.error  # the limits Bastion appends are not the user's query


# ------------------------------------------------------------------ export


async def test_export_pages_through_a_range_once_per_event(stack: Stack) -> None:
    since, until = stack.now - 20 * 3600, stack.now - 2 * 3600
    want = sorted((e for e in stack.events if since <= e.ts < until), key=lambda e: (e.ts, e.event_id))
    out = io.StringIO()
    pages: list[int] = []
    written = await export(stack.nats_url, since, until, out, page_size=37, on_page=pages.append)
    lines = out.getvalue().splitlines()
    assert written == len(lines) == len(want)
    assert len(pages) > 5  # really paged
    got = [AuditEvent.model_validate_json(line) for line in lines]
    assert [e.event_id for e in got] == [e.event_id for e in want]
    chain = {"ts", "producer", "seq", "prev_hash", "hash"}  # the publisher links each event on its chain
    assert got[0].model_dump(exclude=chain) == want[0].model_dump(exclude=chain)
    assert all(e.producer and e.seq >= 1 and e.hash for e in got)


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The `bastion` command in its own process, while this test's loop keeps serving the audit service."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def test_the_commands_run_end_to_end(stack: Stack, tmp_path: Path) -> None:
    """The installed `bastion` entry point: a query as JSON lines, a refusal's exit code, an export file."""
    env = {"BASTION_NATS_URL": stack.nats_url, "PATH": str(Path(sys.executable).parent)}
    sql = "SELECT server, sum(calls) AS calls FROM bastion.calls_daily GROUP BY server ORDER BY server"
    code, out, err = await run_cli("analytics", "query", "--format", "jsonl", sql, env=env, cwd=tmp_path)
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"server": server, "calls": sum(e.server == server for e in stack.events)}
        for server in sorted({e.server for e in stack.events})
    ]
    code, out, err = await run_cli("analytics", "query", "TRUNCATE TABLE bastion.audit_events", env=env, cwd=tmp_path)
    assert code == 2
    assert "refused" in err
    target = tmp_path / "events.jsonl"
    code, out, err = await run_cli("audit", "export", "--since", "48h", "--output", str(target), env=env, cwd=tmp_path)
    assert code == 0, err
    assert len(target.read_text().splitlines()) == len(stack.events)


async def test_an_export_range_must_not_be_empty(stack: Stack) -> None:
    from cli.analytics import CliFailure

    with pytest.raises(CliFailure, match="after"):
        await export(stack.nats_url, stack.now, stack.now - 1, io.StringIO())


# ------------------------------------------------------------------ the Grafana dashboard

GRAFANA = ROOT / "deploy" / "grafana" / "bastion.json"
PLUGIN = "grafana-clickhouse-datasource"


def grafana_sql(sql: str, since: float, until: float, variables: dict[str, str]) -> str:
    """The SQL as the ClickHouse data source sends it: its macros expanded, dashboard variables filled."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m[1]} >= toDateTime({int(since)}) AND {m[1]} <= toDateTime({int(until)})",
        sql,
    )
    sql = sql.replace("$__fromTime", f"toDateTime({int(since)})").replace("$__toTime", f"toDateTime({int(until)})")
    for name, value in variables.items():
        sql = sql.replace("${" + name + "}", value.replace("'", "\\'"))
    assert "$" not in sql, f"an unexpanded macro or variable is left: {sql}"
    return sql


def test_the_grafana_dashboard_is_a_dashboard_for_the_clickhouse_plugin() -> None:
    board = json.loads(GRAFANA.read_text())
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    (source,) = board["__inputs"]
    assert source["pluginId"] == PLUGIN and source["type"] == "datasource"
    ref = "${" + source["name"] + "}"
    variables = {v["name"] for v in board["templating"]["list"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "table", "bargauge", "stat", "barchart", "piechart"}
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        assert panel["datasource"] == {"type": PLUGIN, "uid": ref}
        for target in panel["targets"]:
            assert target["datasource"] == {"type": PLUGIN, "uid": ref}
            assert target["editorType"] == "sql" and target["rawSql"].strip()
            used = set(re.findall(r"\$\{(\w+)\}", target["rawSql"]))
            assert used <= variables, f"panel {panel['title']!r} uses undefined variables {used - variables}"


@pytest.mark.parametrize(
    "variables",
    [
        {"key": "__all", "server": "__all", "status": "__all", "team": "__all"},
        {"key": "bob", "server": "search", "status": "error", "team": "platform"},
    ],
)
async def test_every_grafana_query_runs_on_the_real_store(stack: Stack, variables: dict[str, str]) -> None:
    board = json.loads(GRAFANA.read_text())
    since, until = stack.now - 24 * 3600, stack.now
    queries = [(p["title"], t["rawSql"]) for p in board["panels"] for t in p["targets"]]
    queries += [(f"variable {v['name']}", v["query"]) for v in board["templating"]["list"] if v["type"] == "query"]
    for title, raw in queries:
        answer = await ask(stack, grafana_sql(raw, since, until, variables))
        assert answer.rows, f"{title}: no rows for {variables}"
    # and one panel's numbers are the events': calls per key for the whole day
    (keys,) = [p for p in board["panels"] if p["title"] == "Calls per key"]
    every = {"key": "__all", "server": "__all", "team": "__all"}
    answer = await ask(stack, grafana_sql(keys["targets"][0]["rawSql"], since, until, every))
    want = Counter(e.key_name for e in stack.events if hour(e.ts).timestamp() >= since)  # whole hours in range
    assert {row[0]: row[1] for row in answer.rows} == want
    # and the spend per team / customer is what policy charged
    (teams,) = [p for p in board["panels"] if p["title"] == "Spend per team / customer (USD)"]
    answer = await ask(stack, grafana_sql(teams["targets"][0]["rawSql"], since, until, every))
    spend: dict[str, float] = defaultdict(float)
    for e in stack.events:
        if hour(e.ts).timestamp() >= since:
            spend[f"{e.team_id} / {e.customer_id}"] += e.cost_usd or 0.0
    assert {row[0]: row[1] for row in answer.rows} == pytest.approx(dict(spend), abs=1e-6)


async def test_a_request_that_is_not_its_contract_is_answered_with_the_reason(stack: Stack) -> None:
    """Every typed handler of the audit service answers a malformed request, naming what is wrong,
    instead of leaving its caller to time out."""
    nc = await nats.connect(stack.nats_url)
    try:
        for subject, payload, field in (
            (subjects.ANALYTICS_QUERY, b'{"sql": ""}', "sql"),
            (subjects.AUDIT_EXPORT, b'{"since": "yesterday", "until": 1}', "since"),
            (subjects.AUDIT_VERIFY, b'{"since": "last week"}', "since"),
            (subjects.AUDIT_QUERY, b"not json at all", ""),
        ):
            reply = await nc.request(subject, payload, timeout=10)
            error = json.loads(reply.data)["error"]
            assert error.startswith(f"invalid request: {field}"), (subject, error)
    finally:
        await nc.close()
