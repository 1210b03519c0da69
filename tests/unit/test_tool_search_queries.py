"""The graded query set of tool search (tests/data/tool_search/queries.jsonl) is what its README says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "data"
QUERIES = DATA / "tool_search" / "queries.jsonl"
FUNCTION_WORDS = frozenset(
    "a an the to of in on for by with from and or my me is are all it this that at as be i we our your its".split()
)


def _words(text: str) -> set[str]:
    """Lower-cased words, split at punctuation and camelCase, without a plural `s`."""
    out = set()
    for word in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text).lower()):
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if word and word not in FUNCTION_WORDS:
            out.add(word)
    return out


@pytest.fixture(scope="module")
def queries() -> list[dict]:
    return [json.loads(line) for line in QUERIES.read_text().splitlines()]


@pytest.fixture(scope="module")
def tools() -> set[str]:
    return {
        f"{path.stem}__{tool['name']}"
        for path in (DATA / "tool-schemas").glob("*.json")
        for tool in json.loads(path.read_text())["tools"]
    }


def test_each_line_is_a_query_with_its_relevant_tools(queries):
    assert len(queries) >= 300
    for query in queries:
        assert set(query) == {"id", "query", "relevant"}, query
        assert isinstance(query["query"], str) and query["query"].strip(), query
        assert isinstance(query["relevant"], list) and query["relevant"], query
        assert len(set(query["relevant"])) == len(query["relevant"]), f"{query['id']} lists a tool twice"


def test_ids_and_queries_are_unique(queries):
    ids = [query["id"] for query in queries]
    assert len(set(ids)) == len(ids)
    texts = [query["query"].lower() for query in queries]
    assert len(set(texts)) == len(texts)


def test_every_relevant_tool_is_in_the_dumps(queries, tools):
    assert len(tools) >= 1000
    unknown = sorted({name for query in queries for name in query["relevant"] if name not in tools})
    assert not unknown, f"relevant tools that no dump lists: {unknown[:10]}"


def test_at_least_half_share_no_word_with_a_relevant_tool_name(queries):
    disjoint = [
        query
        for query in queries
        if not _words(query["query"]) & set().union(*(_words(name.split("__", 1)[1]) for name in query["relevant"]))
    ]
    assert len(disjoint) / len(queries) >= 0.5, f"{len(disjoint)} of {len(queries)}"


def test_word_comparison_sees_through_case_plurals_and_camel_case():
    assert _words("List Issues") == _words("list_issue") == {"list", "issue"}
    assert _words("ForwardGeocodeTool") == {"forward", "geocode", "tool"}
    assert not _words("how high above sea level") & _words("maps_elevation")
