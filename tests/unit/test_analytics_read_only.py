"""The analytics allow-list: one SELECT over the bastion database with listed functions passes,
every hostile query is refused with a message naming the part refused, payload columns need the
auditor's flag, and docs/analytics.md lists exactly the functions the code allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.analytics.analytics_sql import PAYLOAD_COLUMNS, allowed_function, functions_markdown
from libs.common.analytics.queries import MAX_SQL_CHARS, AnalyticsQuery, NotReadOnly, engine_limits, limited, read_only
from tests.support.hostile_sql import ALLOW_LIST, HOSTILE, PAYLOAD_PEEKS

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select count() from bastion.audit_events final",
        "SELECT count() FROM audit_events",  # unqualified: the analytics connection's database is bastion
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
        "WITH audit_events AS (SELECT 1 AS x) SELECT * FROM audit_events",  # a WITH name, not the table
        "SELECT 1 UNION ALL SELECT 2",
        "SELECT quantilesMerge(0.5, 0.95, 0.99)(latency) FROM bastion.calls_hourly",
        "SELECT sumIfOrNull(calls, server = 'x'), uniqExactIf(key_name, 1) FROM bastion.calls_hourly",
        "SELECT arrayMap(x -> toString(x), range(3)), if(1, 'a', 'b'), multiIf(1, 2, 3)",
        "SELECT CAST(latency_ms AS Nullable(Float64)), toStartOfHour(ts) FROM bastion.audit_events",
        "SELECT JSONExtractString('{\"a\": \"b\"}', 'a'), count() AS result",  # naming an output `result` is fine
        "SELECT key_name, row_number() OVER (PARTITION BY server ORDER BY ts) FROM bastion.audit_events",
        "SELECT * FROM bastion.calls_daily",  # a * over a table without payloads
        "SELECT count(*) FROM bastion.audit_events",
        "SELECT 1;",
        # a function's format string is a value, not a FORMAT clause (sqlglot: TimeToStr(format=...))
        "SELECT formatDateTime(ts, '%Y-%m-%d') AS day, count() FROM bastion.audit_events GROUP BY day",
        "SELECT * FROM (SELECT formatDateTime(now(), '%F %T') AS format) WHERE format != ''",
    ],
)
def test_a_select_over_the_bastion_database_with_listed_functions_passes(sql: str) -> None:
    read_only(sql)


def test_what_runs_is_the_checked_text_without_comments() -> None:
    text = read_only("SELECT /* why */ count() -- because\nFROM bastion.audit_events")
    assert text == "SELECT count() FROM bastion.audit_events"


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("", "empty"),
        ("  ;  ", "empty"),
        ("DROP TABLE bastion.audit_events", "not DROP"),
        ("TRUNCATE TABLE bastion.audit_events", "not TRUNCATE"),
        ("INSERT INTO t SELECT 1", "not INSERT"),
        ("ALTER TABLE t UPDATE a = 1 WHERE 1", "not ALTER"),
        ("SET readonly = 0", "not SET"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT file('/etc/passwd')", "function file()"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file()"),
        ("SELECT * FROM url('http://example.com/x', CSV)", "table function url()"),
        ("SELECT * FROM (SELECT * FROM s3('https://bucket/x'))", "table function s3()"),
        ("SELECT * FROM system.one", "database system"),
        ("SELECT * FROM information_schema.tables", "database information_schema"),
        ("SELECT getSetting('readonly')", "function getSetting()"),
        ("SELECT currentUser()", "function currentUser()"),
        ("SELECT * FROM {t:Identifier}", "parameter"),
        ("SELECT {t:Identifier}", "parameter t"),
        ("SELECT 1 SETTINGS max_result_rows = 0", "SETTINGS"),
        ("SELECT 1 FORMAT CSV", "FORMAT"),
        ("SELECT formatDateTime(now(), '%F') FORMAT CSV", "a FORMAT clause"),
        ("SELECT 1 UNION ALL SELECT 2 FORMAT TSV", "a FORMAT clause"),
        ("SELECT * FROM (SELECT formatDateTime(now(), '%F') FORMAT Native)", "a FORMAT clause"),
        ("WITH d AS (SELECT 1 FORMAT CSV) SELECT * FROM d", "a FORMAT clause"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "not valid SQL"),
        ("SELEC 1", "not"),
        ('>\xad"V/', "not valid SQL"),  # the tokenizer fails (found by the admin API's schema-driven test)
        ("SELECT 'unterminated", "not valid SQL"),
        ("SELECT " + "(" * 5000 + "1" + ")" * 5000, "not valid SQL"),
    ],
)
def test_anything_else_is_refused_naming_the_part(sql: str, reason: str) -> None:
    with pytest.raises(NotReadOnly, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_only(sql)


@pytest.mark.parametrize(
    ("sql", "params"), [(sql, params) for sql, params, wall in HOSTILE if wall == ALLOW_LIST], ids=str
)
def test_every_hostile_query_is_refused_before_the_engine(sql: str, params: dict[str, str]) -> None:
    values = {name: value.replace("{canary}", "/tmp/canary") for name, value in params.items()}
    with pytest.raises(NotReadOnly):  # the auditor's flag opens no more
        read_only(sql.replace("{canary}", "/tmp/canary"), payloads=True, parameters=values)


def test_the_hostile_list_is_long_and_the_engine_wall_holds_a_few() -> None:
    assert len(HOSTILE) >= 60
    assert len([sql for sql, _, wall in HOSTILE if wall != ALLOW_LIST]) < 10


@pytest.mark.parametrize("sql", PAYLOAD_PEEKS)
def test_payload_columns_need_the_auditors_flag(sql: str) -> None:
    with pytest.raises(NotReadOnly) as refused:
        read_only(sql)
    message = str(refused.value)
    assert any(column in message for column in PAYLOAD_COLUMNS) or "COLUMNS()" in message, message
    if "COLUMNS(" not in sql:
        read_only(sql, payloads=True)


def test_combinators_make_aggregates_only() -> None:
    assert allowed_function("countIf") and allowed_function("sumIfOrNull") and allowed_function("quantilesMerge")
    assert not allowed_function("fileIf") and not allowed_function("merge") and not allowed_function("getSettingState")


def test_long_sql_is_refused() -> None:
    with pytest.raises(NotReadOnly, match="longer than"):
        read_only("SELECT 1" + " " * MAX_SQL_CHARS + "+ 1")


def test_limits_follow_a_trailing_comment_and_readonly_comes_last() -> None:
    query = AnalyticsQuery(sql="SELECT 1 -- why", max_rows=5, timeout=2.5)
    settings = engine_limits(query, max_bytes=1024 * 1024, memory=256 * 1024 * 1024, threads=1)
    first, clause = limited(query.sql, settings).split("\n")
    assert first == "SELECT 1 -- why"
    assert clause.startswith("SETTINGS max_result_rows = 5, ")
    assert "max_execution_time = 2.5" in clause and "max_memory_usage = 268435456" in clause
    assert "max_result_bytes = 1048576" in clause  # the smaller of the query's and what a reply carries
    assert clause.endswith("readonly = 1")


def test_the_doc_lists_exactly_the_allowed_functions() -> None:
    assert functions_markdown() in DOC.read_text(), "docs/analytics.md: paste analytics_sql.functions_markdown()"
