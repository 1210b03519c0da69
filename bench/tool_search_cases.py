"""Tool search by case: tools with shipped needs, tools without, definitions only, servers held out.

    .venv/bin/python bench/tool_search_cases.py [--query-model tuned|base] [--query-model-file F.onnx]

The graded set (tests/data/tool_search/queries.jsonl, 400 needs over the 1,587 tools of the 68
servers in tests/data/tool-schemas) is only read, never trained on. The held-out servers are the
ones `tools/search_model/train.py --hold-out` leaves out (every third by name, 22 of 68; 125 graded
needs have all their tools there). Every case ranks all 1,587 tools with the service's own index
and vectors (`SearchIndex`, `VectorStore`); what changes is which tools have needs:

- `service`: every tool its shipped needs, as the service ranks today (all 400 needs);
- `with needs`: the 275 needs of the other 46 servers, whose tools keep their needs, the held-out
  servers' tools having none (a deployment whose own servers are not in the needs file);
- `without needs`: the 125 needs of the held-out servers in that same catalog;
- `definitions only`: no tool has needs (`BASTION_SEARCH_NEEDS=false`), all 400, then the 125.
The hubness yardstick (`Needs.reference`) is sampled from the needs the catalog has.

The shipped query model (`tuned`) was trained on needs of all 68 servers, the held-out ones too, so
its figures for them are what a catalog it was trained for gets; `--query-model base` (the
published model, trained on none of these needs) gives what a catalog nobody trained for gets.
Prints one line per case, then one JSON object of them all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tool_search import evaluate, load_queries, load_toolset

from services.codemode import embedding, needs
from services.codemode.search import SearchIndex
from services.codemode.toolset import Toolset, ToolSpec
from services.codemode.vectors import VectorStore

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "data" / "tool-schemas"
QUERIES = ROOT / "tests" / "data" / "tool_search" / "queries.jsonl"


def held_out(servers: list[str]) -> set[str]:
    """As tools/search_model/train.py --hold-out: every third server by name, from the third."""
    return {server for i, server in enumerate(sorted(servers)) if i % 3 == 2}


def needs_of(specs: list[ToolSpec], shipped: needs.Needs, keep: set[str]) -> needs.Needs:
    """The shipped needs of the tools of the servers `keep`, as lines naming their server."""
    lines: dict[str, tuple[needs.Line, ...]] = {}
    for spec in specs:
        written = shipped.of(spec)
        if spec.server in keep and written:
            lines[spec.tool] = (*lines.get(spec.tool, ()), needs.Line(spec.server, None, written))
    known = needs.Needs(lines)
    return needs.Needs(lines, needs.sample(known) if lines else shipped.reference)


def index_for(toolset: Toolset, embedder: embedding.Embedder, known: needs.Needs) -> SearchIndex:
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    store = VectorStore(embedder, needs=known)
    keys = store.keys_for(specs)
    store.compute(specs, keys)
    queries = embedding.QueryVectors(embedder, 4096)
    return SearchIndex(toolset, store.matrix(keys), queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--query-model", choices=["tuned", "base"], default="tuned")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--query-model-file",
        type=Path,
        help="a query model of one's own (an int8 ONNX file from tools/search_model), in place of the shipped one",
    )
    args = parser.parse_args()
    if args.query_model_file is not None:  # research: e.g. the model trained without the held-out servers
        embedding.QUERY_MODEL = args.query_model_file
        embedding._QUERY_MODEL_SHA256 = hashlib.sha256(args.query_model_file.read_bytes()).hexdigest()
    embedder = embedding.load(args.threads, args.query_model)
    if isinstance(embedder, str):
        raise SystemExit(embedder)
    toolset = load_toolset(SCHEMAS)
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    servers = sorted({spec.server for spec in specs})
    held = held_out(servers)
    queries = load_queries(QUERIES)
    on_held = [q for q in queries if all(name.split("__", 1)[0] in held for name in q["relevant"])]
    elsewhere = [q for q in queries if q not in on_held]
    shipped = needs.load()
    every = index_for(toolset, embedder, needs_of(specs, shipped, set(servers)))
    mixed = index_for(toolset, embedder, needs_of(specs, shipped, set(servers) - held))
    bare = index_for(toolset, embedder, needs.Needs())
    cases: list[tuple[str, SearchIndex, list[dict[str, Any]]]] = [
        ("service: every tool its shipped needs", every, queries),
        ("held-out servers, every tool its written needs", every, on_held),
        ("with needs (other servers' tools without)", mixed, elsewhere),
        ("without needs (held-out servers, others with)", mixed, on_held),
        ("definitions only", bare, queries),
        ("definitions only, held-out servers", bare, on_held),
    ]
    results = {}
    for name, index, asked in cases:
        result = evaluate(index, asked)
        results[name] = {key: result[key] for key in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10")}
        results[name]["queries"] = len(asked)
        print(
            f"{name} ({len(asked)} needs, queries by {args.query_model}): recall@1 {result['recall_at_1']:.1%}  "
            f"recall@5 {result['recall_at_5']:.1%}  recall@10 {result['recall_at_10']:.1%}  "
            f"MRR@10 {result['mrr_at_10']:.3f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
