"""Needs: what agents ask for when they want a tool, which search ranks with beside its definition.

Files of needs are checked as untrusted input (every way a line can be wrong names its line; size
limits hold), needs attach only to the definitions they were written for, and search with them
still only ever returns the tools of the view. The ranking runs the real model; how much needs
gain on the graded set is a benchmark (bench/tool_search.py --needs shipped|none), not a test.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from libs.common.settings import CodeModeSettings
from services.codemode import embedding, needs
from services.codemode.search import SearchIndex
from services.codemode.searcher import Searcher
from services.codemode.toolset import Toolset
from services.codemode.vectors import NEEDS_HUBNESS, SHIPPED_VECTORS, ToolVectors, VectorStore, shipped_reference

pytestmark = pytest.mark.unit

DUMPS = Path(__file__).resolve().parents[1] / "data" / "tool-schemas"
SOME = ("git", "gitlab-zereight", "kubernetes", "slack-legacy", "time")


def _tools(server: str) -> list[dict]:
    return json.loads((DUMPS / f"{server}.json").read_text())["tools"]


def _tool(server: str, name: str) -> dict:
    return next(tool for tool in _tools(server) if tool["name"] == name)


def _spec(server: str, tool: dict):
    return next(iter(Toolset([(server, tool)]).by_name.values()))


def _names(found) -> list[str]:
    return [f"{spec.server}__{spec.tool}" for spec in found]


def _lines(*rows: dict) -> list[bytes]:
    return [json.dumps(row).encode() for row in rows]


@pytest.fixture(scope="module")
def shipped() -> needs.Needs:
    return needs.load()


@pytest.fixture(scope="module")
def catalog(embedder, shipped) -> tuple[Toolset, VectorStore, VectorStore]:
    """Five real servers' tools, with the shipped needs (their shipped vectors, which
    test_codemode_search_fresh_start.py checks are what the service computes) and without."""
    toolset = Toolset([(server, tool) for server in SOME for tool in _tools(server)])
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    stores = VectorStore(embedder, needs=shipped, shipped=SHIPPED_VECTORS), VectorStore(embedder)
    for store in stores:
        store.compute(specs, store.keys_for(specs))
    assert stores[0].computed == 0  # every one shipped: embedding ~1,300 needs again took 40 s
    return toolset, *stores


def _index(toolset: Toolset, store: VectorStore) -> SearchIndex:
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    return SearchIndex(
        toolset, store.matrix(store.keys_for(specs)), lambda text: store.embedder.encode_queries([text])[0]
    )


# which tools a line is for


def test_shipped_needs_follow_a_definition_whatever_its_server_is_called(shipped):
    tool = _tool("gitlab-zereight", "approve_merge_request")
    assert len(shipped.of(_spec("gitlab-zereight", tool))) >= 4
    assert shipped.of(_spec("our-gitlab", tool)) == shipped.of(_spec("gitlab-zereight", tool))
    changed = {**tool, "description": tool["description"] + " Now also merges."}
    assert shipped.of(_spec("our-gitlab", changed)) == ()  # written for another definition


def test_a_deployments_needs_are_for_its_server_and_add_to_the_shipped_ones(tmp_path):
    tool = _tool("time", "get_current_time")
    mine = tmp_path / "needs.jsonl"
    mine.write_text(json.dumps({"server": "clock", "tool": "get_current_time", "needs": ["hora local ahora"]}))
    known = needs.load(extra=mine)
    assert known.of(_spec("clock", tool))[-1] == "hora local ahora"
    assert len(known.of(_spec("clock", tool))) == len(needs.load().of(_spec("time", tool))) + 1
    assert "hora local ahora" not in known.of(_spec("time", tool))
    assert needs.load(shipped=False, extra=mine).of(_spec("clock", tool)) == ("hora local ahora",)
    assert needs.load(shipped=False).of(_spec("time", tool)) == ()


def test_a_line_giving_server_and_description_applies_only_where_both_match():
    tool = _tool("time", "get_current_time")
    digest = needs.fingerprint(tool["description"])
    row = {"server": "clock", "description_sha256": digest, "tool": "get_current_time", "needs": ["hora"]}
    known = needs.parse(_lines(row), "test")
    assert known.of(_spec("clock", tool)) == ("hora",)
    assert known.of(_spec("time", tool)) == ()  # the same definition on another server
    assert known.of(_spec("clock", {**tool, "description": "Another clock"})) == ()  # another definition


def test_needs_are_kept_once_each_and_at_most_32_per_tool():
    rows = [{"server": "s", "tool": "t", "needs": ["same  need", "same need"] + [f"need {i}" for i in range(40)]}]
    known = needs.parse(_lines(*rows), "test")
    found = known.of(_spec("s", {"name": "t", "inputSchema": {"type": "object"}}))
    assert found[0] == "same need" and found.count("same need") == 1 and len(found) == needs.MAX_NEEDS_PER_TOOL


# a needs file is input: every way it can be wrong says where


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"{not json", "line 2: "),
        (b'["a", "list"]', "expected an object"),
        (b'{"needs": ["x"], "server": "s"}', '"tool" must be a tool name'),
        (b'{"tool": "t", "needs": ["x"]}', 'give "server" or "description_sha256"'),
        (b'{"tool": "t", "needs": ["x"], "description_sha256": "abc"}', "64 hex digits"),
        (b'{"tool": "t", "needs": "x", "server": "s"}', '"needs" must be a list'),
        (b'{"tool": "t", "needs": ["  "], "server": "s"}', "non-empty strings"),
        (b'{"tool": "t", "needs": [1], "server": "s"}', "non-empty strings"),
        (b'{"tool": "t", "needs": ["' + b"x" * 301 + b'"], "server": "s"}', "longer than 300"),
        (b'{"tool": "t", "needs": ["x"], "server": "s", "weight": 9}', "unknown fields ['weight']"),
        (b'{"tool": "t", "needs": ["x"], "server": ""}', '"server" must be a server name'),
    ],
)
def test_a_wrong_line_is_refused_naming_its_file_and_line(line, says):
    good = b'{"tool": "t", "needs": ["x"], "server": "s"}'
    with pytest.raises(needs.NeedsError, match=r"needs\.jsonl line 2: ") as raised:
        needs.parse([good, line], "needs.jsonl")
    assert says in str(raised.value)


def test_a_needs_file_too_large_or_unreadable_is_refused(tmp_path, monkeypatch):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b" " * 2048)
    monkeypatch.setattr(needs, "MAX_FILE_BYTES", 1024)
    with pytest.raises(needs.NeedsError, match="2048 bytes, more than the 1024"):
        needs.load(shipped=False, extra=big)
    with pytest.raises(needs.NeedsError, match="cannot read the needs file"):
        needs.load(shipped=False, extra=tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(needs.NeedsError, match="line 1"):
        needs.load(shipped=False, extra=binary)


async def test_the_service_leaves_out_a_bad_needs_file_and_says_which_line(tmp_path, caplog):
    bad = tmp_path / "needs.jsonl"
    bad.write_text('{"tool": "t", "needs": ["x"], "server": "s"}\n{"tool": 3}\n')
    searcher = Searcher(CodeModeSettings(search_threads=1, search_needs_file=str(bad)))
    with caplog.at_level(logging.ERROR):
        await searcher.start()
    assert f"the needs file is left out: {bad} line 2" in caplog.text
    assert searcher.store is not None and len(searcher.store.needs) == 1587  # the shipped ones stay
    assert "t" not in searcher.store.needs.lines
    await searcher.close()
    with caplog.at_level(logging.INFO):
        index = await searcher.index(Toolset([("time", tool) for tool in _tools("time")]), None)
    # served by the shipped vectors, which are used only while the shipped needs are
    assert index.engine == "hybrid" and searcher.store.shipped > 0 and searcher.store.computed == 0
    off = Searcher(CodeModeSettings(search_threads=1, search_needs=False))
    await off.start()
    assert off.store is not None and len(off.store.needs) == 0
    await off.close()


# ranking with needs


def test_a_tool_with_needs_sits_nearer_what_agents_ask_for_it(catalog, shipped):
    toolset, with_needs, without = catalog
    spec = next(s for s in toolset.by_name.values() if s.tool == "approve_merge_request")
    asked = with_needs.embedder.encode_queries(list(shipped.of(spec)))
    near = with_needs.matrix(with_needs.keys_for([spec]))
    far = without.matrix(without.keys_for([spec]))
    assert near is not None and far is not None
    assert float((asked @ near.vectors[0]).mean()) > float((asked @ far.vectors[0]).mean()) + 0.1
    assert np.linalg.norm(near.vectors[0]) == pytest.approx(1.0, abs=1e-3)  # stored as float16
    # a mean of needs sits near needs at large: that is what hubness measures and search takes off
    assert float(near.hubness[0]) > float(far.hubness[0])


def test_shipped_needs_rank_their_tool_first_far_more_often(catalog, shipped):
    """The first shipped need of every tool, searched among all five servers' tools: these needs
    are inside the vectors, so this checks the wiring (keys, blend, hubness, search), not quality."""
    toolset, with_needs, without = catalog
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    asked = [(shipped.of(spec)[0], f"{spec.server}__{spec.tool}") for spec in specs]
    first = {}
    for name, store in (("with", with_needs), ("without", without)):
        index = _index(toolset, store)
        first[name] = sum(_names(index.search(need, 1)) == [tool] for need, tool in asked) / len(asked)
    assert first["with"] >= 0.9 and first["with"] > first["without"] + 0.1, first


def test_needs_never_bring_a_tool_outside_the_view_into_its_results(catalog, shipped):
    toolset, with_needs, _ = catalog
    view = Toolset(
        [(spec.server, spec.definition) for spec in toolset.by_name.values() if spec.server != "slack-legacy"]
    )
    post = next(s for s in toolset.by_name.values() if s.tool == "slack_post_message")
    index = _index(view, with_needs)
    for need in shipped.of(post):
        assert not any(spec.server == "slack-legacy" for spec in index.search(need, 10))


def test_search_takes_each_tools_hubness_off_its_similarity():
    toolset = Toolset([("s", {"name": name, "inputSchema": {"type": "object"}}) for name in ("alpha", "beta")])
    query = np.array([1.0] + [0.0] * 383, dtype=np.float32)
    vectors = np.stack([query, 0.95 * query + 0.31 * np.eye(384, dtype=np.float32)[1]]).astype(np.float32)
    flat = SearchIndex(toolset, ToolVectors(vectors, np.zeros(2, dtype=np.float32)), lambda _: query)
    assert _names(flat.search("zzz", 2)) == ["s__alpha", "s__beta"]
    hub = SearchIndex(toolset, ToolVectors(vectors, np.array([0.9, 0.1], dtype=np.float32)), lambda _: query)
    assert _names(hub.search("zzz", 2)) == ["s__beta", "s__alpha"]


# the reference needs


def test_the_shipped_reference_vectors_are_the_query_models_own(embedder, shipped):
    vectors = shipped_reference(embedder.query_model_id, shipped.reference)
    assert vectors is not None and len(vectors) == len(shipped.reference) == needs.REFERENCE_NEEDS
    again = embedder.encode_queries(list(shipped.reference[:20]))
    assert np.min(np.sum(again * vectors[:20], axis=1)) > 0.999  # float16 in the file
    assert shipped_reference("another-model", shipped.reference) is None
    assert shipped_reference(embedder.query_model_id, shipped.reference[1:]) is None


def test_without_shipped_vectors_the_store_embeds_the_reference_itself(tmp_path):
    base = embedding.load(1, "base")
    assert not isinstance(base, str)
    mine = tmp_path / "needs.jsonl"
    rows = [{"server": "clock", "tool": "now", "needs": [f"what time is it in city {i}" for i in range(12)]}]
    mine.write_text("\n".join(json.dumps(row) for row in rows))
    known = needs.load(shipped=False, extra=mine)
    assert shipped_reference(base.query_model_id, known.reference) is None
    store = VectorStore(base, tmp_path / "v.npz", needs=known)
    specs = list(Toolset([("clock", {"name": "now", "description": "Current time"})]).by_name.values())
    store.compute(specs, store.keys_for(specs))
    first = store.matrix(store.keys_for(specs))
    # its nearness to needs at large, and the share a tool with needs carries beside tools without
    assert first is not None and 0.5 < float(first.hubness[0]) - NEEDS_HUBNESS < 1.0
    store.save()
    again = VectorStore(base, tmp_path / "v.npz", needs=known)
    kept = again.matrix(again.keys_for(specs))
    assert kept is not None and again.computed == 0
    assert float(kept.hubness[0]) == pytest.approx(float(first.hubness[0]), abs=1e-3)


def test_a_tool_with_needs_carries_a_fixed_share_more_hubness_than_one_without(tmp_path):
    base = embedding.load(1, "base")
    assert not isinstance(base, str)
    mine = tmp_path / "needs.jsonl"
    mine.write_text(json.dumps({"server": "clock", "tool": "now", "needs": ["what time is it in Lima"]}))
    specs = list(Toolset([("clock", {"name": "now", "description": "Current time"})]).by_name.values())
    with_needs = VectorStore(base, needs=needs.load(shipped=False, extra=mine))
    without = VectorStore(base, needs=needs.Needs({}, with_needs.needs.reference))
    for store in (with_needs, without):
        store.compute(specs, store.keys_for(specs))
    near, far = with_needs.matrix(with_needs.keys_for(specs)), without.matrix(without.keys_for(specs))
    assert near is not None and far is not None
    raw = float(near.vectors[0] @ far.vectors[0])
    assert raw < 0.999  # the needs moved the vector
    # one reference need, fewer than a tool's hubness reads: the raw hubness is 0 for both
    assert float(near.hubness[0]) == pytest.approx(float(far.hubness[0]) + NEEDS_HUBNESS)
