"""Tool-definition tokens per request in discovery mode, against the classic catalog.

    .venv/bin/python bench/discovery_tokens.py --schemas tests/data/tool-schemas \\
        --queries tests/data/tool_search/queries.jsonl [--limit 5]

Counts o200k_base tokens (bench/tokens.py, the Code Mode benchmarks' counting) of:
  classic     every tool, named as Bastion lists it, with description and input schema: what a
              model receives with every request;
  discovery   what `tools/list` gives in discovery mode with nothing pinned: `find_tools` alone;
  found       one `find_tools` answer (the tools' definitions, `--limit` of them), averaged over
              the queries, found by the same hybrid search the codemode service runs.
A discovery session pays `discovery` on every request plus `found` once per search (and the found
tools' definitions on later requests, once listed). Prints per-part figures, then one JSON line:
  {"tools", "classic_tokens", "discovery_tokens", "found_tokens_mean", "reduction"}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from code_mode_tokens import classic_definitions, load_listings
from tokens import count_json, definition
from tool_search import DEFAULT_CACHE, build_index, load_queries, load_toolset

from libs.common.contracts.discovery import FIND_TOOLS
from libs.common.contracts.naming import assign_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemas", type=Path, required=True, help="folder of tools/list dumps, or a .txt list")
    parser.add_argument("--queries", type=Path, required=True, help="JSON lines: id, query, relevant")
    parser.add_argument("--limit", type=int, default=5, help="tools per find_tools answer")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="tool vector cache file")
    args = parser.parse_args()
    listings = load_listings(args.schemas)
    classic = classic_definitions(listings)
    classic_tokens = count_json(classic)
    discovery_tokens = count_json([definition(FIND_TOOLS)])
    names = {
        pair: name
        for name, pair in assign_names(
            (server, tool["name"]) for server, tools in listings.items() for tool in tools
        ).items()
    }
    by_name = {d["name"]: d for d in classic}
    index, _ = build_index(load_toolset(args.schemas), "hybrid", args.cache)
    found = []
    for query in load_queries(args.queries):
        specs = index.search(query["query"], args.limit)
        answer = [by_name[names[(spec.server, spec.tool)]] for spec in specs]
        found.append(count_json(answer))
    mean_found = statistics.mean(found)
    print(f"classic tools/list: {len(classic)} tools, {classic_tokens:,} tokens per request")
    print(f"discovery tools/list: find_tools only, {discovery_tokens:,} tokens per request")
    print(f"one find_tools answer ({args.limit} tools): {mean_found:,.0f} tokens on average, max {max(found):,}")
    summary = {
        "tools": len(classic),
        "classic_tokens": classic_tokens,
        "discovery_tokens": discovery_tokens,
        "found_tokens_mean": round(mean_found),
        "reduction": round(1 - discovery_tokens / classic_tokens, 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
