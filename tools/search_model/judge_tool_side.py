"""Research (the project's .venv): judge `train_tool_side.py`'s vectors as the service would rank them.

    .venv/bin/python tools/search_model/judge_tool_side.py DIR/vectors.npz

Hybrid ranking with the service's own index (`SearchIndex`: BM25, fusion weights, name and server
bonuses) over all 1,587 tools of tests/data/tool-schemas, definitions only (no needs, so no hubness,
as `bench/tool_search_cases.py` ranks its "definitions only" cases), the tools' vectors and the
queries' from the npz. Prints the 125 graded needs whose tools all sit on the held-out servers
(train.py --hold-out's split), then all 400. The graded set is only read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tool_search import evaluate, load_queries, load_toolset  # noqa: E402
from tool_search_cases import QUERIES, SCHEMAS, held_out  # noqa: E402

from services.codemode.search import SearchIndex  # noqa: E402
from services.codemode.vectors import ToolVectors  # noqa: E402


def main(path: Path) -> None:
    data = np.load(path)
    toolset = load_toolset(SCHEMAS)
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    names = [f"{spec.server}__{spec.tool}" for spec in specs]
    if names != [str(name) for name in data["names"]]:
        raise SystemExit(f"{path}: its tools are not tests/data/tool-schemas' in the index's order")
    by_query = {str(q): v.astype(np.float32) for q, v in zip(data["queries"], data["query_vectors"], strict=True)}
    vectors = ToolVectors(np.ascontiguousarray(data["tools"], dtype=np.float32), np.zeros(len(specs), np.float32))
    index = SearchIndex(toolset, vectors, by_query.__getitem__)
    queries = load_queries(QUERIES)
    held = held_out(sorted({spec.server for spec in specs}))
    on_held = [q for q in queries if all(name.split("__", 1)[0] in held for name in q["relevant"])]
    results = {}
    for case, asked in (("held-out servers, definitions only", on_held), ("all, definitions only", queries)):
        result = evaluate(index, asked)
        results[case] = {key: result[key] for key in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10")}
        print(
            f"{case} ({len(asked)}): recall@1 {result['recall_at_1']:.1%}  recall@5 {result['recall_at_5']:.1%}  "
            f"recall@10 {result['recall_at_10']:.1%}  MRR@10 {result['mrr_at_10']:.3f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
