"""Analytics parameters are values, never SQL, and a name on the right of IN is no way out of the
database: the reported attacks, replayed through the admin API as an analyst (no payload
permission) against the audit service on the embedded engine, and a fuzz of parameter values
watched where the driver hands the query to the engine (chdb's `Connection.query`).

The attack: `{"sql": "SELECT '%(x)s' AS a", "parameters": {"x": ", file($$<data>/stack.json$$) AS b, "}}`.
clickhouse-connect pastes the parameters of a query without a `{name:Type}` placeholder into its
text with Python `%` formatting, after the allow-list had checked that text; the value closed the
string literal and read the owner's token (or, with `INTO OUTFILE`, wrote files).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from chdb.state.sqlitelike import Connection
from clickhouse_connect.driver.binding import format_bind_value
from hypothesis import given
from hypothesis import strategies as st

from libs.common.analytics.queries import AnalyticsQuery, NotReadOnly, engine_limits, read_only
from services.audit import AuditService
from services.audit.store import ClickHouseStore
from tests.support.analytics_stack import analytics_stack
from tests.support.hostile_sql import NAMES_RIGHT_OF_IN
from tests.support.replayable import replayable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

QUERY = "/admin/v1/analytics/query"
MARKER = "bastion-analytics:fuzz"


@dataclass
class Target:
    base: str
    audit: AuditService
    analyst: str
    data: Path
    stack_json: Path
    secret: str


@pytest.fixture(scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    """The audit and admin services with `stack.json` in their data directory, holding an owner
    token as `bastion up` writes it, and an analyst's token."""
    data = tmp_path_factory.mktemp("analytics-parameters")
    secret = f"bst_owner_{secrets.token_hex(16)}"
    stack_json = data / "stack.json"
    stack_json.write_text(json.dumps({"admin_token": secret}))
    async with analytics_stack(data) as stack:
        analyst = await stack.person_token("ann@example.com", "analyst")
        yield Target(stack.admin_url, stack.audit, analyst, data, stack_json, secret)


async def _ask(target: Target, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {target.analyst}"}
    async with httpx.AsyncClient(base_url=target.base, headers=headers, timeout=60) as client:
        return await client.post(QUERY, json=body)


def _refused(answer: httpx.Response, target: Target, *named: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "not_read_only", answer.text
    assert all(part in answer.json()["message"] for part in named), answer.text
    assert target.secret not in answer.text


@pytest.mark.parametrize(
    "value",
    [
        ", file($${stack_json}$$) AS b, ",
        ", file($${stack_json}$$, 'RawBLOB') AS b, ",
        ", (SELECT groupArray(name) FROM system.tables) AS b, ",
        "' AS z, file($${stack_json}$$) AS b, '",
    ],
)
async def test_the_reported_file_read_is_refused_naming_the_parameter(target: Target, value: str) -> None:
    body = {"sql": "SELECT '%(x)s' AS a", "parameters": {"x": value.replace("{stack_json}", str(target.stack_json))}}
    _refused(await _ask(target, body), target, "parameter x", "typed placeholder")


@pytest.mark.parametrize("mode", ["", " APPEND", " TRUNCATE"])
async def test_the_reported_file_write_is_refused_and_touches_no_file(target: Target, mode: str) -> None:
    fresh = target.data / f"written{mode.strip().lower()}.pth"
    kept = target.data / f"kept{mode.strip().lower()}.pth"
    kept.write_text("import sys  # the file as it was\n")
    for path in (fresh, kept):
        value = f" AS p INTO OUTFILE $${path}$${mode} --"
        _refused(await _ask(target, {"sql": "SELECT '%(x)s' AS a", "parameters": {"x": value}}), target, "parameter x")
    assert not fresh.exists()
    assert kept.read_text() == "import sys  # the file as it was\n"


@pytest.mark.parametrize(
    "sql",
    [
        *NAMES_RIGHT_OF_IN,
        "SELECT (key_name, ts) IN bastion.audit_events FROM bastion.audit_events",
        "SELECT count() FROM bastion.calls_hourly WHERE server IN audit_events",
    ],
)
async def test_a_name_on_the_right_of_in_is_refused(target: Target, sql: str) -> None:
    """ClickHouse reads it as a table (`5 IN system.numbers` reads an endless one); sqlglot saw a column."""
    _refused(await _ask(target, {"sql": sql}), target, "IN", "table")


async def test_typed_parameters_bind_as_values_and_percent_stays_text(target: Target) -> None:
    value = "x' , file('{stack_json}') -- %(v)s %s $$ \\".replace("{stack_json}", str(target.stack_json))
    sql = "SELECT {v:String} AS v, '%(v)s' AS literal, 'a%b' LIKE '%b' AS liked, length({v:String}) AS n"
    bound = await _ask(target, {"sql": sql, "parameters": {"v": value}})
    assert bound.status_code == 200, bound.text
    assert bound.json()["rows"] == [[value, "%(v)s", 1, len(value.encode())]]
    plain = await _ask(target, {"sql": "SELECT 'a%b' LIKE '%b' AS liked, '%(x)s %s' AS t"})
    assert plain.status_code == 200 and plain.json()["rows"] == [[1, "%(x)s %s"]], plain.text


_PASTED = (
    "SELECT '%(v)s' AS a",
    "SELECT %(v)s AS a",
    "SELECT '%s' AS a",
    "SELECT :v AS a",
    "SELECT ? AS a",
    "SELECT $1 AS a",
    "SELECT {v} AS a",
    "SELECT '{v:String}' AS a",
    "SELECT 1 AS a -- {v:String}",
    "SELECT 1 AS a /* {v:String} */",
    "SELECT {w:String} AS a",
)
"""Every other way of marking where a value goes: none is a typed placeholder, so a parameter
`v` beside it is refused and nothing reaches the engine."""
_PAST_THE_CHECK = ("SELECT '%(v)s' AS a", "SELECT '%s' AS a", "SELECT 1 AS a")
"""Checked SQL without a placeholder for `v`: the driver would paste `v` into the text (or drop it)."""
_PIECES = (
    "'",
    '"',
    "`",
    "%",
    "%(v)s",
    "%s",
    "$$",
    "\\",
    "--",
    "/*",
    "*/",
    "\n",
    "\r",
    "\t",
    "\x00",
    "{",
    "}",
    "(",
    ")",
)
_VALUES = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=3)), max_size=12).map("".join),
    st.sampled_from([", file($$/etc/passwd$$) AS b, ", " AS p INTO OUTFILE $$/tmp/x$$ --", "\\'", "\\N", "\x00'"]),
)
"""Parameter values: any text, and text built of what closes, opens or escapes SQL."""


def _limits(query: AnalyticsQuery) -> dict[str, int | float | str]:
    return engine_limits(query, max_bytes=16 * 1024 * 1024, memory=256 * 1024 * 1024, threads=1)


def _fuzz(store: ClickHouseStore, received: list[tuple[str, dict[str, Any]]]) -> int:
    """Runs the fuzz; returns the examples run through the engine."""
    ran = 0

    @replayable(200)
    @given(value=_VALUES, pasted=st.sampled_from(_PASTED))
    def one(value: str, pasted: str) -> None:
        nonlocal ran
        received.clear()
        query = AnalyticsQuery(sql="SELECT {v:String} AS v, 'a%b' LIKE '%b' AS liked", parameters={"v": value})
        sql = read_only(query.sql, parameters=query.parameters)
        answer = store.analytics(query, sql, _limits(query), MARKER)
        assert answer.rows == [[value, 1]]
        assert received == [(f"/* {MARKER} */ {sql}\n FORMAT Native", {"v": format_bind_value(value)})]
        ran += 1

        received.clear()
        with pytest.raises(NotReadOnly, match=r"parameter|not valid SQL"):
            read_only(pasted, parameters={"v": value})
        for unused in _PAST_THE_CHECK:  # as if the allow-list had missed it: the driver's wall refuses it
            unchecked = AnalyticsQuery(sql=unused, parameters={"v": value})
            with pytest.raises(NotReadOnly, match="parameters would"):
                store.analytics(unchecked, read_only(unused), _limits(unchecked), MARKER)
        assert received == []

    one()
    return ran


@pytest.fixture
def engine_inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """What chdb's connection receives for queries marked `MARKER`: the text and the parameters."""
    received: list[tuple[str, dict[str, Any]]] = []
    original = Connection.query

    def recording(self: Connection, query: str, format: str = "CSV", params: Any = None) -> Any:
        if isinstance(query, str) and MARKER in query:
            received.append((query, dict(params or {})))
        return original(self, query, format, params=params)

    monkeypatch.setattr(Connection, "query", recording)
    yield received


async def test_the_engine_receives_the_checked_text_and_the_values_apart(
    target: Target, engine_inbox: list[tuple[str, dict[str, Any]]]
) -> None:
    ran = await asyncio.to_thread(_fuzz, target.audit.store, engine_inbox)
    assert ran >= 100
    print(f"parameter fuzz: {ran} values bound by the engine, the checked text unchanged")  # for the report
