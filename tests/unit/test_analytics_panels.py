"""The dashboard's panels are fixed, read-only SQL whose filters travel as parameters; and the CLI's
time arguments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cli.analytics import CliFailure, parse_time
from libs.common.analytics.queries import read_only
from services.admin.analytics.panels import PANELS, Filters, panel_query

pytestmark = pytest.mark.unit

HOSTILE = "x' OR 1 = 1; DROP TABLE bastion.audit_events --"


@pytest.mark.parametrize("name", sorted(PANELS))
def test_every_panel_is_read_only_and_keeps_filter_values_out_of_the_sql(name: str) -> None:
    filters = Filters(1000.0, 2000.0, key=HOSTILE, server=HOSTILE, status="error", team=HOSTILE)
    sql, params = panel_query(name, filters)
    checked = read_only(sql, parameters=params)  # what the audit service runs: the allow-list admits every panel
    assert HOSTILE not in sql and HOSTILE not in checked
    assert all(f"{{{name}: " in checked for name in params)  # every filter still a parameter
    if name != "choices":  # the drop-downs list every key, server and team of the range
        assert params["key"] == HOSTILE and params["server"] == HOSTILE and params["team"] == HOSTILE
    assert params["since_us"] == 1_000_000_000 and params["until_us"] == 2_000_000_000


def test_status_narrows_the_events_table_only() -> None:
    _, events = panel_query("events", Filters(0.0, 1.0, status="denied"))
    _, timeline = panel_query("timeline", Filters(0.0, 1.0, status="denied"))
    assert events["status"] == "denied"
    assert "status" not in timeline  # the rollups count every status in their own columns


def test_an_unknown_panel_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        panel_query("secrets", Filters(0.0, 1.0))


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", datetime(2026, 11, 23, 11, 30, tzinfo=UTC)),
        ("24h", datetime(2026, 11, 22, 12, 0, tzinfo=UTC)),
        ("7d", datetime(2026, 11, 16, 12, 0, tzinfo=UTC)),
        ("0s", NOW),
        ("2026-11-20T08:00", datetime(2026, 11, 20, 8, 0, tzinfo=UTC)),  # UTC unless it says otherwise
        ("2026-11-20T08:00+02:00", datetime(2026, 11, 20, 6, 0, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
    ],
)
def test_times_are_iso_or_a_duration_ago(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected.timestamp()


@pytest.mark.parametrize("text", ["yesterday", "24 hours", "-1h", "2026-13-01"])
def test_other_times_are_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(CliFailure, match="ISO 8601"):
        parse_time(text, now=NOW)
