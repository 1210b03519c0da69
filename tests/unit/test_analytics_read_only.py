"""The read-only check: one SELECT passes, everything else is refused with the reason, and the limits
clause cannot be undone by what the query ends with."""

from __future__ import annotations

import pytest

from libs.common.analytics import MAX_SQL_CHARS, AnalyticsQuery, NotReadOnly, limited, read_only

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select count() from bastion.audit_events final",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
        "SELECT 1 UNION ALL SELECT 2",
        "SELECT * FROM (SELECT number FROM numbers(3)) WHERE number > {n:UInt8}",
        "SELECT quantilesMerge(0.5, 0.95, 0.99)(latency) FROM bastion.calls_hourly",
        "SELECT 1;",
    ],
)
def test_one_select_passes(sql: str) -> None:
    assert read_only(sql) == sql.strip().rstrip(";")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("", "empty"),
        ("  ;  ", "empty"),
        ("DROP TABLE bastion.audit_events", "not DROP"),
        ("TRUNCATE TABLE bastion.audit_events", "not TRUNCATE"),
        ("INSERT INTO t SELECT 1", "not INSERT"),
        ("ALTER TABLE t UPDATE a = 1 WHERE 1", "not ALTER"),
        ("CREATE TABLE t (a Int8) ENGINE = Memory", "not CREATE"),
        ("SET readonly = 0", "not SET"),
        ("SYSTEM DROP DNS CACHE", "not SYSTEM"),
        ("OPTIMIZE TABLE t FINAL", "not OPTIMIZE"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
        ("SELECT * FROM url('http://example.com/x', CSV)", "url()"),
        ("SELECT * FROM remote('db:9000', bastion.audit_events)", "remote()"),
        ("SELECT * FROM (SELECT * FROM s3('https://bucket/x'))", "s3()"),
        ("SELECT 1 SETTINGS max_result_rows = 0", "SETTINGS"),
        ("SELECT 1 FORMAT CSV", "FORMAT"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "not valid SQL"),
        ("SELEC 1", "not"),
        ('>\xad"V/', "not valid SQL"),  # the tokenizer fails (found by the admin API's schema-driven test)
        ("SELECT 'unterminated", "not valid SQL"),
    ],
)
def test_anything_else_is_refused_with_the_reason(sql: str, reason: str) -> None:
    with pytest.raises(NotReadOnly, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_only(sql)


def test_long_sql_is_refused() -> None:
    with pytest.raises(NotReadOnly, match="longer than"):
        read_only("SELECT 1" + " " * MAX_SQL_CHARS + "+ 1")


def test_limits_follow_a_trailing_comment_and_readonly_comes_last() -> None:
    query = AnalyticsQuery(sql="SELECT 1 -- why", max_rows=5, timeout=2.5)
    text = limited(read_only(query.sql), query)
    first, settings = text.split("\n")
    assert first == "SELECT 1 -- why"
    assert settings.startswith("SETTINGS max_result_rows = 5, ")
    assert "max_execution_time = 2.5" in settings
    assert settings.endswith("readonly = 1")
