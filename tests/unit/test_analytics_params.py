"""The allow-list's parameters and hidden tables: a parameter is the value of a typed placeholder of
the checked query or it is refused, naming it; a name on the right of IN (a table to ClickHouse)
is refused; a WITH name is taken for the table wherever ClickHouse would read the table."""

from __future__ import annotations

import pytest

from libs.common.analytics.queries import NotReadOnly, read_only
from tests.support.hostile_sql import NAMES_RIGHT_OF_IN

pytestmark = pytest.mark.unit

_ATTACK = ", file($$/data/stack.json$$) AS b, "


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT '%(x)s' AS a",  # the reported attack: the driver pasted the value into the literal
        "SELECT '%s' AS a",
        "SELECT 'a' AS a -- %(x)s",
        "SELECT '{x:String}' AS a",  # a placeholder in a string literal is text
        "SELECT 1 AS a /* {x:String} */",  # ... and in a comment
        "SELECT {x} AS a",  # a map literal to the parser, no placeholder
        "SELECT {y:String} AS a",
        "SELECT count() FROM bastion.audit_events WHERE key_name LIKE '%x%'",
    ],
)
def test_a_parameter_no_typed_placeholder_uses_is_refused_naming_it(sql: str) -> None:
    parameters = {"x": _ATTACK, "y": "v"} if "{y:" in sql else {"x": _ATTACK}
    with pytest.raises(NotReadOnly, match="query parameter x is not used by a typed placeholder"):
        read_only(sql, parameters=parameters)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT %(x)s AS a", "not valid SQL"),
        ("SELECT %s AS a", "not valid SQL"),
        ("SELECT :x AS a", "query parameter x must have a value type"),
        ("SELECT ? AS a", "query parameter ? must have a value type"),
        ("SELECT $1 AS a", "not valid SQL"),
        ("SELECT {x:Identifier} AS a", "query parameter x must have a value type"),
    ],
)
def test_other_placeholder_styles_are_refused(sql: str, reason: str) -> None:
    with pytest.raises(NotReadOnly, match=reason.replace("?", r"\?")):
        read_only(sql, parameters={"x": "1"})


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        ({"x:String}": "v"}, "query parameter name 'x:String}' is not allowed"),
        ({"$x$": "v"}, r"query parameter name '\$x\$' is not allowed"),
        ({"": "v"}, "query parameter name '' is not allowed"),
        ({"x": ["a"]}, "query parameter x must be a string or a number, not list"),
        ({"x": True}, "query parameter x must be a string or a number, not bool"),
        ({"x": None}, "query parameter x must be a string or a number, not NoneType"),
        ({}, "query parameter x has no value"),
        ({f"p{i}": i for i in range(65)}, "at most 64 query parameters"),
    ],
)
def test_parameter_names_and_values_are_checked(parameters: dict[str, object], reason: str) -> None:
    with pytest.raises(NotReadOnly, match=reason.replace("(", r"\(")):
        read_only("SELECT {x:String} AS a", parameters=parameters)


def test_typed_placeholders_with_values_pass_unchanged() -> None:
    sql = (
        "SELECT count() FROM bastion.audit_events WHERE key_name = {k:String} AND server LIKE '%git%' "
        "AND latency_ms > {n:Float64} AND tool IN {tools:Array(String)}"
    )
    text = read_only(sql, parameters={"k": "bob' --", "n": 1.5, "tools": "['a']"})
    assert "{k: String}" in text and "'%git%'" in text and "bob" not in text
    assert read_only("SELECT 'a%b' LIKE '%b'") == "SELECT 'a%b' LIKE '%b'"  # no parameters: `%` is text


@pytest.mark.parametrize(
    "sql",
    [
        *NAMES_RIGHT_OF_IN,
        "SELECT 0 IN system.one AS z",
        "SELECT NOTIN(0, (system.one))",
        "SELECT 1 IN bastion.calls_hourly",  # a table of the database: as a set it would test whole rows
        "SELECT count() FROM bastion.audit_events WHERE (key_name, ts) IN audit_events",
        "WITH s AS (SELECT 1) SELECT 1 IN s",
        "SELECT arrayFilter(x -> x IN system.one, [0])",
        "SELECT (SELECT 1 IN system.one)",
        "SELECT 1 FROM bastion.calls_hourly AS c JOIN bastion.calls_daily AS d ON c.server IN system.one",
    ],
)
def test_a_name_on_the_right_of_in_is_refused(sql: str) -> None:
    with pytest.raises(NotReadOnly, match="ClickHouse reads a name on the right of IN as a table"):
        read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 IN (1, 2)",
        "SELECT 'a' IN ('a')",
        "SELECT 1 IN [1, 2]",
        "SELECT 1 NOT IN (SELECT 1)",
        "SELECT server IN (SELECT server FROM bastion.calls_hourly) FROM bastion.calls_daily",
        "WITH s AS (SELECT 1 AS x) SELECT 1 IN (SELECT x FROM s)",
        "SELECT (1, 2) IN ((1, 2), (3, 4))",
        "SELECT key_name IN (server, tool) FROM bastion.calls_hourly",  # two names: a tuple of columns
    ],
)
def test_values_and_subqueries_on_the_right_of_in_pass(sql: str) -> None:
    read_only(sql)


def test_a_typed_parameter_on_the_right_of_in_passes() -> None:
    read_only("SELECT count() FROM bastion.calls_hourly WHERE server IN {s:Array(String)}", parameters={"s": "['a']"})


@pytest.mark.parametrize(
    "sql",
    [
        "WITH 1 AS audit_events SELECT * FROM audit_events",  # a WITH value, not a query: the table
        "WITH (SELECT 1) AS audit_events SELECT * FROM audit_events",
        "WITH audit_events AS (SELECT * FROM audit_events) SELECT * FROM audit_events",  # its own body
        "SELECT * FROM audit_events WHERE 1 IN (WITH audit_events AS (SELECT 1) SELECT * FROM audit_events)",
        "SELECT * FROM (WITH audit_events AS (SELECT 1 AS q) SELECT * FROM audit_events) AS x, audit_events",
        "WITH a AS (SELECT * FROM audit_events), audit_events AS (SELECT 1 AS q) SELECT * FROM a",
    ],
)
def test_a_with_name_where_clickhouse_reads_the_table_is_the_table(sql: str) -> None:
    with pytest.raises(NotReadOnly, match=r"\* over bastion.audit_events"):
        read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "WITH audit_events AS (SELECT 1 AS x) SELECT * FROM audit_events",
        "WITH audit_events AS (SELECT 1 AS x) SELECT * FROM (SELECT * FROM audit_events)",
        "WITH audit_events AS (SELECT 1 AS x), a AS (SELECT * FROM audit_events) SELECT * FROM a",
    ],
)
def test_a_with_query_in_scope_is_the_with_query(sql: str) -> None:
    read_only(sql)


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM system.numbers(5)", "SELECT * FROM other.numbers(5)", "SELECT * FROM x.y.numbers(1)"]
)
def test_a_table_function_with_a_database_is_refused(sql: str) -> None:
    """`db.name(...)` is a parameterized view of `db` to ClickHouse, not the table function."""
    with pytest.raises(NotReadOnly, match="a table function is written without a database"):
        read_only(sql)
