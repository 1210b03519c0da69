"""Tool search: terms, the lexical and hybrid rankings, the vector cache, and search without a model.

The hybrid tests run the real model (all-MiniLM-L6-v2 on ONNX Runtime, a declared dependency) over
real tool dumps; how good the ranking is on the whole graded set is a benchmark
(bench/tool_search.py, docs/benchmarks.md), not a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from libs.common.settings import CodeModeSettings
from services.codemode import embedding
from services.codemode.search import SearchIndex
from services.codemode.searcher import Searcher
from services.codemode.terms import Terms
from services.codemode.toolset import Toolset
from services.codemode.vectors import ToolVectors, VectorStore, definition_key

pytestmark = pytest.mark.unit

DUMPS = Path(__file__).resolve().parents[1] / "data" / "tool-schemas"
SOME = ("git", "github-legacy", "gitlab-zereight", "google-maps", "kubernetes", "time", "slack-legacy")


def _pairs(servers: tuple[str, ...] | None = None) -> list[tuple[str, dict]]:
    paths = sorted(DUMPS.glob("*.json")) if servers is None else [DUMPS / f"{s}.json" for s in servers]
    return [(path.stem, tool) for path in paths for tool in json.loads(path.read_text())["tools"]]


def _names(found) -> list[str]:
    return [f"{spec.server}__{spec.tool}" for spec in found]


@pytest.fixture(scope="module")
def everything() -> Toolset:
    return Toolset(_pairs())


@pytest.fixture(scope="module")
def some(embedder) -> tuple[Toolset, VectorStore]:
    toolset = Toolset(_pairs(SOME))
    store = VectorStore(embedder)
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    store.compute(specs, store.keys_for(specs))
    return toolset, store


def _hybrid(toolset: Toolset, store: VectorStore, queries: embedding.Embedder | None = None) -> SearchIndex:
    """The view's index as the service builds it; `queries`: another embedder for the queries."""
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    vectors = store.matrix(store.keys_for(specs))
    assert vectors is not None
    encoder = queries or store.embedder
    return SearchIndex(toolset, vectors, lambda text: encoder.encode_queries([text])[0])


# terms


def test_products_are_one_term_and_names_split_where_they_are_written_apart():
    terms = Terms(["digitalocean"])
    assert terms("GitHub") == ["github"] == terms("github")
    assert "github" in terms("Git Hub")
    assert terms("Digital Ocean droplets")[-2:] == ["ocean", "droplet"] and "digitalocean" in terms("Digital Ocean")
    assert terms("listMergeRequests") == terms("list_merge_requests") == terms("list-merge-requests")
    assert terms("merging") == terms("merged") == terms("merges")
    assert terms("PRs and URLs") == ["pr", "url"]


# lexical


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("post a message to a slack channel", "slack-legacy__slack_post_message"),
        ("create pull request", "github-legacy__create_pull_request"),
        ("current time in a timezone", "time__get_current_time"),
        ("take a screenshot of the page with playwright", "playwright__browser_take_screenshot"),
        ("list the commits of a GitHub repository", "github-legacy__list_commits"),
    ],
)
def test_lexical_ranks_the_obvious_tool_first(everything, query, best):
    assert _names(SearchIndex(everything).search(query, 3))[0] == best


def test_github_is_not_git_plus_hub(everything):
    """Split as git + hub, "GitHub" made a local git tool outrank GitHub's own."""
    found = _names(SearchIndex(everything).search("GitHub commit history", 5))
    assert found[0].startswith("github-legacy__"), found


def test_lexical_search_is_deterministic_and_bounded(everything):
    index = SearchIndex(everything)
    first = _names(index.search("issue", 10))
    assert len(first) == 10
    reversed_input = Toolset([(spec.server, spec.definition) for spec in reversed(list(everything.by_name.values()))])
    assert _names(SearchIndex(reversed_input).search("issue", 10)) == first
    assert index.search("zzzz qqqq", 10) == []
    assert index.engine == "lexical"


# hybrid


def test_hybrid_finds_tools_by_meaning_where_words_do_not_match(some):
    toolset, _ = some
    hybrid, lexical = _hybrid(*some), SearchIndex(toolset)
    assert hybrid.engine == "hybrid"
    query = "how high above sea level is this trailhead"
    assert _names(hybrid.search(query, 1)) == ["google-maps__maps_elevation"]
    assert "google-maps__maps_elevation" not in _names(lexical.search(query, 10))
    assert "kubernetes__kubectl_rollout" in _names(hybrid.search("revert the deployment to its previous version", 5))


def test_a_named_product_brings_its_servers_tools_forward(some):
    found = _names(_hybrid(*some).search("commit history on GitHub", 3))
    assert found[0] == "github-legacy__list_commits", found


def test_an_index_only_ever_returns_the_tools_of_its_view(some):
    """Search respects governance: a view of two time tools never offers a GitLab tool, however
    exactly the query names it, even with every catalog vector in the store."""
    toolset, store = some
    view = Toolset([(spec.server, spec.definition) for spec in toolset.by_name.values() if spec.server == "time"])
    index = _hybrid(view, store)
    for query in ("create a merge request on GitLab", "approve_merge_request", "gitlab-zereight"):
        assert all(name.startswith("time__") for name in _names(index.search(query, 50)))
    assert index.search("approve_merge_request", 50) == []


def test_hybrid_search_is_deterministic(some):
    index = _hybrid(*some)
    first = _names(index.search("create a new issue in the repository", 10))
    assert _names(index.search("create a new issue in the repository", 10)) == first and len(first) == 10


def test_an_index_refuses_vectors_that_do_not_match_its_tools(some):
    toolset, _ = some
    with pytest.raises(ValueError, match="needs a vector for every tool"):
        vectors = ToolVectors(np.zeros((3, embedding.DIMENSIONS), dtype=np.float32), np.zeros(3, dtype=np.float32))
        SearchIndex(toolset, vectors, lambda _: None, engine="hybrid")  # type: ignore[arg-type,return-value]


# the vector cache


def test_each_definition_is_embedded_once_and_kept_across_restarts(embedder, tmp_path):
    toolset = Toolset(_pairs(("time", "git")))
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    path = tmp_path / "vectors.npz"
    store = VectorStore(embedder, path)
    keys = store.keys_for(specs)
    assert store.compute(specs, keys) == len(specs) == 14
    assert store.compute(specs, keys) == 0
    store.save()
    again = VectorStore(embedder, path)
    assert len(again) == 14 and again.computed == 0
    assert np.allclose(again.matrix(keys).vectors, store.matrix(keys).vectors, atol=1e-3)  # float16 in the file


def test_a_changed_definition_gets_a_new_vector(embedder):
    store = VectorStore(embedder)
    tool = {"name": "get_forecast", "description": "Weather forecast for a city", "inputSchema": {"type": "object"}}
    first = Toolset([("weather", tool)])
    specs = list(first.by_name.values())
    store.compute(specs, store.keys_for(specs))
    changed = Toolset([("weather", {**tool, "description": "Tide tables for a harbour"})])
    specs2 = list(changed.by_name.values())
    assert store.keys_for(specs2) != store.keys_for(specs)
    assert store.missing(store.keys_for(specs2)) == [0]
    assert store.compute(specs2, store.keys_for(specs2)) == 1
    assert definition_key(specs[0], ("what will the weather be",)) != store.keys_for(specs)[0]  # needs count too


def test_the_cache_is_bounded_least_recently_used_first(embedder, tmp_path):
    toolset = Toolset(_pairs(("git", "time", "slack-legacy")))
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    store = VectorStore(embedder, tmp_path / "v.npz", max_entries=10)
    keys = store.keys_for(specs)
    store.compute(specs[:10], keys[:10])
    assert store.matrix(keys[:1]) is not None  # used: the first is now the most recent
    store.compute(specs[10:15], keys[10:15])
    assert len(store) == 10
    assert store.missing(keys[:15]) == [1, 2, 3, 4, 5]
    store.save()
    assert len(VectorStore(embedder, tmp_path / "v.npz", max_entries=10)) == 10


def test_a_damaged_or_foreign_cache_file_is_ignored_and_replaced(embedder, tmp_path, caplog):
    toolset = Toolset(_pairs(("time",)))
    specs = list(toolset.by_name.values())
    path = tmp_path / "vectors.npz"
    path.write_bytes(b"not a numpy file at all")
    store = VectorStore(embedder, path)
    assert len(store) == 0 and "ignoring the unreadable vector cache" in caplog.text
    store.compute(specs, store.keys_for(specs))
    store.save()
    assert len(VectorStore(embedder, path)) == 2
    np.savez(path, keys=np.array([b"x" * 64]), vectors=np.zeros((1, 384)), model=np.array("another-model/1"))
    assert len(VectorStore(embedder, path)) == 0


def test_an_unwritable_cache_file_leaves_search_in_memory(embedder, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    store = VectorStore(embedder, blocker / "vectors.npz")
    specs = list(Toolset(_pairs(("time",))).by_name.values())
    store.compute(specs, store.keys_for(specs))
    store.save()
    assert "could not write the vector cache" in caplog.text and len(store) == 2


# without a model


def test_a_missing_runtime_is_a_reason_not_a_crash():
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from services.codemode import embedding\n"
        "print(embedding.load())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "the embedding model is not installed (onnxruntime is missing)"


async def test_search_without_embeddings_is_lexical_and_says_why(everything):
    searcher = Searcher(CodeModeSettings(search_embeddings=False))
    await searcher.start()
    index = await searcher.index(everything, None)
    found = await searcher.search(index, "post a message to a slack channel", 3)
    assert found.lexical_only == "embeddings are turned off (BASTION_SEARCH_EMBEDDINGS=false)"
    assert _names(found.tools)[0] == "slack-legacy__slack_post_message"
    await searcher.close()


def test_a_repeated_query_skips_the_model_and_the_query_cache_is_bounded(embedder):
    queries = embedding.QueryVectors(embedder, entries=2)
    first = queries("List open pull requests")
    assert np.array_equal(queries("list  open PULL requests "), first)  # the model is uncased
    assert queries.encoded == 1
    np.testing.assert_allclose(first, embedder.encode_queries(["list open pull requests"])[0], atol=1e-6)
    queries("what time is it")
    queries("List open pull requests")  # used again: the most recent
    queries("rollback a deployment")  # evicts "what time is it"
    assert len(queries) == 2
    queries("list open pull requests")
    assert queries.encoded == 3
    queries("what time is it")
    assert queries.encoded == 4
    off = embedding.QueryVectors(embedder, entries=0)
    off("what time is it")
    off("what time is it")
    assert (off.encoded, len(off)) == (2, 0)


def test_search_threads_default_to_two_at_most_and_are_settable(monkeypatch):
    assert CodeModeSettings().search_threads == min(2, os.cpu_count() or 1)
    monkeypatch.setenv("BASTION_SEARCH_THREADS", "1")
    assert CodeModeSettings().search_threads == 1
    loaded = embedding.load(2)
    assert not isinstance(loaded, str) and loaded.threads == (2, False)  # sleeping, not spinning
    monkeypatch.setenv("BASTION_SEARCH_THREADS", "0")
    with pytest.raises(ValueError, match="search_threads"):
        CodeModeSettings()


async def test_the_searcher_embeds_queries_on_its_threads_and_remembers_them():
    searcher = Searcher(CodeModeSettings(search_threads=1, search_query_cache=8))
    await searcher.start()
    assert searcher.embedder is not None and searcher.queries is not None
    assert searcher.embedder.threads == (1, False)
    assert searcher.embedder.query_model_id.startswith("minilm-tool-queries")  # the default: tuned
    index = await searcher.index(Toolset(_pairs(("time",))), None)
    for _ in range(3):
        found = await searcher.search(index, "what hour is it in Tokyo", 1)
        assert _names(found.tools) == ["time__get_current_time"]
    assert searcher.queries.encoded == 1
    await searcher.close()


async def test_a_view_becomes_hybrid_once_its_tools_are_embedded(tmp_path):
    searcher = Searcher(CodeModeSettings(search_cache_file=str(tmp_path / "v.npz")))
    await searcher.start()
    assert searcher.embedder is not None
    # descriptions of our own, so the shipped vectors do not cover them
    small = Toolset(
        (server, {**tool, "description": tool["description"] + " Ours."}) for server, tool in _pairs(("time",))
    )
    index = await searcher.index(small, None)  # two tools missing: embedded on the spot
    assert index.engine == "hybrid"
    assert (await searcher.search(index, "what hour is it in Tokyo", 1)).lexical_only is None
    assert await searcher.index(small, index) is index
    await searcher.close()
    assert (tmp_path / "v.npz").is_file()


# the query model


def test_queries_are_embedded_by_the_fine_tuned_model_into_the_tools_space(embedder):
    assert embedder.query_fallback is None
    assert embedder.query_model_id.startswith("minilm-tool-queries.int8@")
    assert embedder.query_model_id != embedder.model_id
    text = "roll the api deployment back to the previous revision"
    query, tool = embedder.encode_queries([text])[0], embedder.encode([text])[0]
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < float(query @ tool) < 0.99  # the same space, moved


@pytest.mark.parametrize(
    ("need", "tool"),
    [
        ("let the team know in a channel that the deploy is done", "slack-legacy__slack_post_message"),
        ("what did the crashed container write to stdout before it died", "kubernetes__kubectl_logs"),
    ],
)
def test_the_fine_tuned_query_model_puts_first_what_the_published_one_ranks_lower(some, need, tool):
    """Needs written for this test (in neither the training set nor the graded one): search with the
    service's query model finds the tool first; with the published model's query vector, not."""
    base = embedding.load(1, "base")
    assert not isinstance(base, str)
    assert _names(_hybrid(*some).search(need, 1)) == [tool]
    assert _names(_hybrid(*some, queries=base).search(need, 1)) != [tool]


def test_the_base_query_model_embeds_queries_as_it_embeds_tools():
    base = embedding.load(1, "base")
    assert not isinstance(base, str)
    assert (base.query_model_id, base.query_fallback) == (base.model_id, None)
    texts = ["list open pull requests", "what time is it in Tokyo"]
    np.testing.assert_array_equal(base.encode_queries(texts), base.encode(texts))


@pytest.mark.parametrize("damage", ["flipped", "missing"])
def test_a_damaged_query_model_leaves_queries_on_the_tools_model_and_says_why(damage, tmp_path, monkeypatch, caplog):
    copy = tmp_path / "queries.onnx"
    if damage == "flipped":
        data = bytearray(embedding.QUERY_MODEL.read_bytes())
        data[len(data) // 2] ^= 0xFF
        copy.write_bytes(bytes(data))
    monkeypatch.setattr(embedding, "QUERY_MODEL", copy)
    loaded = embedding.load(1)
    assert not isinstance(loaded, str), "search stays hybrid"
    reason = "is damaged (sha256" if damage == "flipped" else "cannot be read"
    assert loaded.query_fallback is not None and reason in loaded.query_fallback
    assert loaded.query_model_id == loaded.model_id
    assert any("queries are embedded by the tools' model" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(loaded.encode_queries(["what time is it"]), loaded.encode(["what time is it"]))


def test_the_query_model_is_a_setting(monkeypatch):
    assert CodeModeSettings().search_query_model == "tuned"
    monkeypatch.setenv("BASTION_SEARCH_QUERY_MODEL", "base")
    assert CodeModeSettings().search_query_model == "base"
    monkeypatch.setenv("BASTION_SEARCH_QUERY_MODEL", "large")
    with pytest.raises(ValueError, match="search_query_model"):
        CodeModeSettings()
