"""Tool search from the first search: shipped vectors, and a search that waits for new tools.

A fresh codemode replica (no cache file) must rank the tools the shipped vectors cover exactly as a
warm one, without embedding them; tools they do not cover are embedded while searches wait, at
most `search_warmup_wait` seconds, and an answer given past it says it is lexical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from libs.common.settings import CodeModeSettings
from services.codemode import needs
from services.codemode.searcher import Searcher
from services.codemode.toolset import Toolset
from services.codemode.vectors import SHIPPED_VECTORS, VectorStore

pytestmark = pytest.mark.unit

DUMPS = Path(__file__).resolve().parents[1] / "data" / "tool-schemas"


def _pairs(stems: list[str], snake: bool = False, suffix: str = "") -> list[tuple[str, dict]]:
    """The dumps' tools under their stems' names (in snake_case if `snake`), `suffix` added to each description."""
    pairs = []
    for stem in stems:
        for tool in json.loads((DUMPS / f"{stem}.json").read_text())["tools"]:
            changed = {**tool, "description": (tool.get("description") or "") + suffix} if suffix else tool
            pairs.append((stem.replace("-", "_") if snake else stem, changed))
    return pairs


def _code_mode_set() -> list[str]:
    lines = (DUMPS / "code-mode-set.txt").read_text().splitlines()
    return [stem for line in lines if (stem := line.split("#", 1)[0].strip())]


async def test_a_fresh_start_ranks_the_code_mode_servers_hybrid_without_embedding_a_tool():
    searcher = Searcher(CodeModeSettings(search_warmup_wait=0))  # no cache file: a new replica
    await searcher.start()
    assert searcher.store is not None and searcher.store.shipped >= 1500
    # not the dumps' file names: a name that reads the same (gitlab_zereight) embeds the same text
    toolset = Toolset(_pairs(_code_mode_set(), snake=True))
    index = await searcher.index(toolset, None)
    assert index.engine == "hybrid"
    assert searcher.store.computed == 0
    # the workload's discovery searches that a lexical ranking got wrong on a fresh start
    for query, limit, tool in (
        ("grafana alert groups", 3, "grafana__list_alert_groups"),
        ("jira create issue", 3, "atlassian__jira_create_issue"),
        ("jira search jql", 1, "atlassian__jira_search"),
        ("list merge requests state", 3, "gitlab_zereight__list_merge_requests"),
        ("merge request pipelines", 3, "gitlab_zereight__list_merge_request_pipelines"),
    ):
        found = await searcher.search(index, query, limit)
        assert found.lexical_only is None
        assert tool in [f"{s.server}__{s.tool}" for s in found.tools], query
    await searcher.close()


def test_shipped_vectors_are_the_ones_the_service_computes(embedder):
    toolset = Toolset(_pairs(["gitlab-zereight", "grafana", "time"]))
    # every third tool of three servers: a changed recipe or model moves every vector, and embedding
    # all 199 tools' needs took 30 s of CPU for no more certainty
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)[::3]
    shipped = VectorStore(embedder, needs=needs.load(), shipped=SHIPPED_VECTORS)
    computed = VectorStore(embedder, needs=needs.load())
    keys = computed.keys_for(specs)
    assert shipped.missing(keys) == []
    computed.compute(specs, keys)
    ours, theirs = shipped.matrix(keys), computed.matrix(keys)
    assert ours is not None and theirs is not None
    cosines = np.einsum("ij,ij->i", ours.vectors, theirs.vectors)
    assert cosines.min() > 0.995  # float16 in the file, and another CPU's int8 kernels
    assert np.abs(ours.hubness - theirs.hubness).max() < 0.01


def test_a_changed_definition_is_never_served_a_shipped_vector(embedder):
    store = VectorStore(embedder, needs=needs.load(), shipped=SHIPPED_VECTORS)
    as_shipped = sorted(Toolset(_pairs(["time"])).by_name.values(), key=lambda spec: spec.qualified)
    changed = sorted(Toolset(_pairs(["time"], suffix=" Ours.")).by_name.values(), key=lambda spec: spec.qualified)
    assert store.missing(store.keys_for(as_shipped)) == []
    assert store.missing(store.keys_for(changed)) == [0, 1]


def test_shipped_vectors_of_other_needs_are_not_used(embedder):
    assert VectorStore(embedder, needs=needs.load(), shipped=SHIPPED_VECTORS).shipped > 0
    assert VectorStore(embedder, needs=needs.load(shipped=False), shipped=SHIPPED_VECTORS).shipped == 0


async def test_a_search_over_many_new_tools_waits_for_them_to_be_embedded():
    searcher = Searcher(CodeModeSettings(search_warmup_wait=600))
    await searcher.start()
    ours = Toolset(_pairs(["time", "git", "sqlite", "github-legacy", "kubernetes"], suffix=" (internal build)"))
    assert len(ours) > 64  # more than a search embeds on the spot
    index = await searcher.index(ours, None)
    assert index.engine == "hybrid"
    assert searcher.store is not None and searcher.store.computed == len(ours)
    found = await searcher.search(index, "what hour is it in Tokyo", 1)
    assert found.lexical_only is None
    assert [s.server for s in found.tools] == ["time"]  # by meaning: no word of the query is in a name
    await searcher.close()


async def test_past_the_warmup_wait_a_search_answers_lexically_and_says_why():
    searcher = Searcher(CodeModeSettings(search_warmup_wait=0))
    await searcher.start()
    ours = Toolset(_pairs(["time", "git", "sqlite", "github-legacy", "kubernetes"], suffix=" (internal build)"))
    index = await searcher.index(ours, None)
    assert index.engine == "lexical"
    found = await searcher.search(index, "what hour is it in Tokyo", 3)
    assert found.lexical_only == "the tools are still being embedded for search; ask again in a moment"
    await searcher.close()
