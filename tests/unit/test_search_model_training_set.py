"""The fine-tuned query model's training queries (tools/search_model/training_queries.jsonl) never
hold the graded set it is judged on, and name only tools the catalog has."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "tools" / "search_model" / "training_queries.jsonl"
JUDGED = ROOT / "tests" / "data" / "tool_search" / "queries.jsonl"
DUMPS = ROOT / "tests" / "data" / "tool-schemas"
TOO_CLOSE = 0.4
"""Word overlap (Jaccard) with a judged query from which a training query counts as a copy of it."""


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9]+", text.lower()))


@pytest.fixture(scope="module")
def training() -> list[dict]:
    return [json.loads(line) for line in TRAINING.read_text().splitlines()]


def test_each_line_is_a_query_for_one_tool_of_the_catalog(training):
    tools = {
        f"{path.stem}__{tool['name']}"
        for path in DUMPS.glob("*.json")
        for tool in json.loads(path.read_text())["tools"]
    }
    assert len(training) >= 4000
    for row in training:
        assert set(row) == {"tool", "query"}, row
        assert row["tool"] in tools, row
        assert 3 <= len(row["query"].split()) <= 30, row
    per_tool = Counter(row["tool"] for row in training)
    assert len(per_tool) / len(tools) >= 0.95, "most tools have training queries"


def test_no_training_query_is_a_judged_query_or_close_to_one(training):
    judged = [_words(json.loads(line)["query"]) for line in JUDGED.read_text().splitlines()]
    close = []
    for row in training:
        words = _words(row["query"])
        overlap = max(len(words & other) / len(words | other) for other in judged)
        if overlap >= TOO_CLOSE:
            close.append((round(overlap, 2), row["query"]))
    assert not close, f"{len(close)} training queries overlap judged ones: {sorted(close, reverse=True)[:5]}"


def test_the_overlap_measure_catches_a_reworded_copy():
    copy, judged = (
        _words("evict workloads from a worker before maintenance"),
        _words("evict workloads from a worker machine before maintenance"),
    )
    assert len(copy & judged) / len(copy | judged) >= TOO_CLOSE
