"""How well `search_tools` finds the right tool: recall@k, MRR@10 and latency on a graded query set.

    .venv/bin/python bench/tool_search.py --schemas tests/data/tool-schemas \\
        --queries tests/data/tool_search/queries.jsonl [--engine lexical|embedding|hybrid] [--split even|odd]

`--schemas` is a folder of real `tools/list` dumps (`<server>.json`), or a `.txt` list of them
(`bench/tool_dumps.py`); every tool of every dump is searchable, as for a key that may call them
all. `--queries` is JSON lines `{"id", "query", "relevant": ["<server>__<tool>", ...]}`, the
server named after its dump's file stem (tests/data/tool_search/README.md).

The index is the codemode service's own (`services.codemode.search.SearchIndex`), built as a view
builds it; tool vectors come from the same cache the service keeps (`--cache`, computed on the
first run). Each query is searched once for the scores (top 10) and its time is the wall-clock
time of that one `search` call, query embedding included (no query cache: every query is
embedded, by `--query-model` as the service's `BASTION_SEARCH_QUERY_MODEL`: `tuned`, the default, or
`base`), tools ranked with their known needs as the service ranks them (`--needs shipped`, the
default, as `BASTION_SEARCH_NEEDS`; `none` ranks by definitions alone; `--needs-file` adds a
deployment's own, as `BASTION_SEARCH_NEEDS_FILE`), with `--threads` ONNX Runtime threads as the
service's `BASTION_SEARCH_THREADS`; the CPU time of the same call (the process's, all threads) is
printed beside it, the figure to read on a machine whose cores are busy with other work, where
wall-clock time is mostly waiting.

- recall@k: share of queries with at least one relevant tool among the first k results;
- MRR@10: mean over queries of 1 / rank of the first relevant tool in the top 10 (0 if none).

Prints the figures, then, last, one JSON line:
  {"recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "p95_ms", "tools"}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tool_dumps import dump_files

from libs.common.settings import CodeModeSettings
from services.codemode import embedding, needs
from services.codemode.search import SearchIndex
from services.codemode.toolset import Toolset
from services.codemode.vectors import SHIPPED_VECTORS, VectorStore

__all__ = ["build_index", "evaluate", "load_queries"]

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "bastion-tool-search-vectors.npz"


def load_toolset(schemas: Path) -> Toolset:
    pairs = []
    for path in dump_files(schemas):
        try:
            tools = json.loads(path.read_text())["tools"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}: not a tools/list result ({exc})") from exc
        pairs.extend((path.stem, tool) for tool in tools)
    if not pairs:
        raise SystemExit(f"no tools in {schemas}")
    return Toolset(pairs)


def load_queries(path: Path, split: str = "all") -> list[dict[str, Any]]:
    queries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if split == "all":
        return queries
    parity = 0 if split == "even" else 1
    return [q for q in queries if int("".join(c for c in q["id"] if c.isdigit()) or 0) % 2 == parity]


def build_index(
    toolset: Toolset,
    engine: str,
    cache: Path | None,
    threads: int = 1,
    query_model: embedding.QueryModel = "tuned",
    known: needs.Needs | None = None,
) -> tuple[SearchIndex, dict[str, float]]:
    """The index and what building it cost (model load, vectors computed, seconds)."""
    if engine == "lexical":
        started = time.perf_counter()
        index = SearchIndex(toolset)
        return index, {"build_s": time.perf_counter() - started}
    started = time.perf_counter()
    embedder = embedding.load(threads, query_model)
    if isinstance(embedder, str):
        raise SystemExit(f"--engine {engine} needs the embedding model: {embedder}")
    if embedder.query_fallback:
        raise SystemExit(f"--query-model {query_model}: {embedder.query_fallback}")
    loaded = time.perf_counter()
    store = VectorStore(embedder, cache, needs=known, shipped=SHIPPED_VECTORS)  # as the service reads them
    specs = sorted(toolset.by_name.values(), key=lambda spec: spec.qualified)
    keys = store.keys_for(specs)
    store.compute(specs, keys)
    store.save()
    vectors = store.matrix(keys)
    embedded = time.perf_counter()
    index = SearchIndex(toolset, vectors, lambda text: embedder.encode_queries([text])[0], engine=engine)  # type: ignore[arg-type]
    return index, {
        "model_load_s": loaded - started,
        "vectors_computed": float(store.computed),
        "vectors_s": embedded - loaded,
        "build_s": time.perf_counter() - embedded,
    }


def evaluate(index: SearchIndex, queries: list[dict[str, Any]]) -> dict[str, Any]:
    hits = {1: 0, 5: 0, 10: 0}
    reciprocal = 0.0
    times = []
    cpu = []
    misses = []
    for query in queries:
        relevant = set(query["relevant"])
        started, started_cpu = time.perf_counter(), time.process_time()
        found = index.search(query["query"], 10)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        names = [f"{spec.server}__{spec.tool}" for spec in found]
        rank = next((n for n, name in enumerate(names, 1) if name in relevant), None)
        for k in hits:
            hits[k] += rank is not None and rank <= k
        reciprocal += 1 / rank if rank else 0.0
        if rank != 1:
            misses.append((query["id"], query["query"], rank, names[:3]))
    total = len(queries)
    times.sort()
    cpu.sort()
    return {
        "recall_at_1": round(hits[1] / total, 4),
        "recall_at_5": round(hits[5] / total, 4),
        "recall_at_10": round(hits[10] / total, 4),
        "mrr_at_10": round(reciprocal / total, 4),
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
        "cpu_p50_ms": round(statistics.median(cpu), 3),
        "cpu_p95_ms": round(cpu[min(len(cpu) - 1, int(0.95 * len(cpu)))], 3),
        "misses": misses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemas", type=Path, required=True, help="folder of tools/list dumps, or a .txt list")
    parser.add_argument("--queries", type=Path, required=True, help="JSON lines: id, query, relevant")
    parser.add_argument("--engine", choices=["lexical", "embedding", "hybrid"], default="hybrid")
    parser.add_argument("--split", choices=["all", "even", "odd"], default="all", help="queries by id parity")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="tool vector cache file")
    parser.add_argument(
        "--threads", type=int, default=CodeModeSettings().search_threads, help="ONNX Runtime threads per query"
    )
    parser.add_argument(
        "--query-model",
        choices=["tuned", "base"],
        default=CodeModeSettings().search_query_model,
        help="what embeds queries (BASTION_SEARCH_QUERY_MODEL): the fine-tuned model or the tools' own",
    )
    parser.add_argument(
        "--needs",
        choices=["shipped", "none"],
        default="shipped" if CodeModeSettings().search_needs else "none",
        help="rank with the shipped needs (BASTION_SEARCH_NEEDS) or by definitions alone",
    )
    parser.add_argument("--needs-file", type=Path, help="a deployment's own needs (BASTION_SEARCH_NEEDS_FILE)")
    parser.add_argument("--misses", action="store_true", help="list the queries whose first result is wrong")
    args = parser.parse_args()
    toolset = load_toolset(args.schemas)
    queries = load_queries(args.queries, args.split)
    if not queries:
        raise SystemExit(f"no queries in {args.queries} (split {args.split})")
    known = needs.load(args.needs == "shipped", args.needs_file)
    index, cost = build_index(toolset, args.engine, args.cache, args.threads, args.query_model, known)
    result = evaluate(index, queries)
    print(
        f"engine {args.engine}: {len(toolset)} tools, {len(queries)} queries ({args.split}), {args.threads} thread(s), "
        f"queries embedded by the {args.query_model} model, needs: {args.needs}"
        + (f" and {args.needs_file}" if args.needs_file else "")
    )
    print("  " + ", ".join(f"{name} {value:.3f}" for name, value in cost.items()))
    if args.misses:
        for ident, text, rank, top in result["misses"]:
            print(f"  {ident} rank {rank or '>10'}: {text!r} -> {', '.join(top)}")
    print(
        f"recall@1 {result['recall_at_1']:.1%}  recall@5 {result['recall_at_5']:.1%}  "
        f"recall@10 {result['recall_at_10']:.1%}  MRR@10 {result['mrr_at_10']:.3f}  "
        f"latency p50 {result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms "
        f"(CPU p50 {result['cpu_p50_ms']:.2f} ms, p95 {result['cpu_p95_ms']:.2f} ms)"
    )
    keys = ["recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "p95_ms"]
    print(json.dumps({**{key: result[key] for key in keys}, "tools": len(toolset)}))


if __name__ == "__main__":
    main()
