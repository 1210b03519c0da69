"""Tool-definition tokens per request: the classic catalog against Code Mode's meta-tools.

    .venv/bin/python bench/code_mode_tokens.py --schemas tests/data/tool-schemas/code-mode-set.txt

Reads every `*.json` in the folder, or the dumps a `.txt` list names (`bench/tool_dumps.py`): a
`tools/list` result per server, named after the server,
and counts o200k_base tokens of what a model receives with every request:
  classic    every tool, named as Bastion lists it (`<server>__<tool>`), with its description and
             input schema
  Code Mode  the five meta-tools exactly as `libs.common.contracts.codemode` defines them
Both are counted in the Anthropic Messages API tool format, compact JSON (see `bench/tokens.py`).
Prints one line per server, then, last, one JSON line:
  {"servers": N, "tools": N, "classic_tokens": N, "code_mode_tokens": N, "reduction": 0.xx}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokens import count_json, definition
from tool_dumps import dump_files

from libs.common.contracts.codemode import META_TOOLS
from libs.common.contracts.naming import assign_names

__all__ = ["measure"]


def load_listings(folder: Path) -> dict[str, list[dict[str, Any]]]:
    files = dump_files(folder)
    if not files:
        raise SystemExit(f"no *.json tool listings in {folder}")
    listings = {}
    for path in files:
        try:
            tools = json.loads(path.read_text())["tools"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}: not a tools/list result ({exc})") from exc
        listings[path.stem] = tools
    return listings


def classic_definitions(listings: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every tool under the name Bastion's catalog gives it."""
    by_pair = {(server, tool["name"]): tool for server, tools in listings.items() for tool in tools}
    names = assign_names(by_pair)
    return [definition(by_pair[pair], name) for name, pair in sorted(names.items(), key=lambda item: item[1])]


def measure(folder: Path) -> tuple[dict[str, Any], list[tuple[str, int, int]]]:
    listings = load_listings(folder)
    definitions = classic_definitions(listings)
    per_server = [
        (server, len(tools), count_json([d for d in definitions if d["name"].startswith(f"{server}__")]))
        for server, tools in listings.items()
    ]
    classic = count_json(definitions)
    code_mode = count_json([definition(tool) for tool in META_TOOLS])
    summary = {
        "servers": len(listings),
        "tools": len(definitions),
        "classic_tokens": classic,
        "code_mode_tokens": code_mode,
        "reduction": round(1 - code_mode / classic, 4) if classic else 0.0,
    }
    return summary, per_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--schemas", type=Path, required=True, help="folder of tools/list results (*.json), or a .txt list of them"
    )
    args = parser.parse_args()
    summary, per_server = measure(args.schemas)
    print(f"{'server':24} {'tools':>6} {'tokens':>8}")
    for server, tools, tokens in per_server:
        print(f"{server:24} {tools:6} {tokens:8}")
    print(f"{'all (one tools array)':24} {summary['tools']:6} {summary['classic_tokens']:8}")
    print(f"{'Code Mode meta-tools':24} {len(META_TOOLS):6} {summary['code_mode_tokens']:8}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
