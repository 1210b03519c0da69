"""`bastion analytics query` prints every value as what it is: a false boolean as `false` (not blank,
not Python's `False`), NULL as `NULL` (not an empty string), in the table as in JSON lines."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from cli.analytics import cell, print_answer
from libs.common.analytics.queries import AnalyticsAnswer

pytestmark = pytest.mark.unit

ROW = [False, True, None, "", 0, 1.5, ["a", None, False], {"k": True}]
COLUMNS = ["f", "t", "n", "empty", "zero", "x", "arr", "map"]


def _through_the_wire(rows: list[list[object]]) -> AnalyticsAnswer:
    """The answer as the CLI receives it from the audit service (JSON over NATS)."""
    answer = AnalyticsAnswer(columns=COLUMNS, types=["Bool"] * len(COLUMNS), rows=rows)
    return AnalyticsAnswer.model_validate_json(answer.model_dump_json())


def test_each_value_has_its_own_cell_text() -> None:
    assert [cell(value) for value in ROW] == [
        "false",
        "true",
        "NULL",
        "",
        "0",
        "1.5",
        '["a", null, false]',
        '{"k": true}',
    ]


def test_the_table_shows_a_false_boolean_and_null_apart_from_empty() -> None:
    out = io.StringIO()
    print_answer(_through_the_wire([ROW]), "table", Console(file=out, width=200), out)
    cells = [part.strip() for part in out.getvalue().splitlines()[3].split("│")[1:-1]]
    assert cells[:5] == ["false", "true", "NULL", "", "0"]


def test_json_lines_keep_json_values() -> None:
    out = io.StringIO()
    print_answer(_through_the_wire([ROW]), "jsonl", Console(file=io.StringIO()), out)
    assert json.loads(out.getvalue()) == dict(zip(COLUMNS, ROW, strict=True))
