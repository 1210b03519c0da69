"""The shipped needs (services/codemode/models/tool-needs.jsonl), which search ranks with and the
fine-tuned query model was trained on, never hold the graded set they are judged on, and name only
tools the catalog has, by their definitions."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from services.codemode.needs import fingerprint

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "services" / "codemode" / "models" / "tool-needs.jsonl"
JUDGED = ROOT / "tests" / "data" / "tool_search" / "queries.jsonl"
DUMPS = ROOT / "tests" / "data" / "tool-schemas"
TOO_CLOSE = 0.4
"""Word overlap (Jaccard) with a judged query from which a training query counts as a copy of it."""


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9]+", text.lower()))


@pytest.fixture(scope="module")
def lines() -> list[dict]:
    return [json.loads(line) for line in TRAINING.read_text().splitlines()]


@pytest.fixture(scope="module")
def training(lines) -> list[dict]:
    return [{"tool": f"{row['written_for']}__{row['tool']}", "query": need} for row in lines for need in row["needs"]]


def test_each_need_is_for_one_tool_of_the_catalog_by_its_definition(lines, training):
    tools = {
        f"{path.stem}__{tool['name']}": fingerprint(tool.get("description") or "")
        for path in DUMPS.glob("*.json")
        for tool in json.loads(path.read_text())["tools"]
    }
    assert len(training) >= 13_000
    for row in lines:
        assert set(row) == {"tool", "description_sha256", "written_for", "needs"}, row
        assert tools[f"{row['written_for']}__{row['tool']}"] == row["description_sha256"], row
    for row in training:
        assert 3 <= len(row["query"].split()) <= 30, row
    per_tool = Counter(row["tool"] for row in training)
    assert len(per_tool) == len(tools), "every tool of the catalog has needs"
    assert min(per_tool.values()) >= 4


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
