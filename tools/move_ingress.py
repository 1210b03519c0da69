"""Group `services/ingress`'s flat modules into packages by concern and rewrite every reference to them.

Re-runnable, like `tools/move_libs.py`, whose steps it runs with its own mapping: on a tree already
moved it changes nothing; a file merged later that still names an old module
(`services.ingress.task_router`, `from services.ingress import streams`, `services/ingress/keys.py`,
or `from ..request_path import` in a module a branch moved by itself) is rewritten. Steps:

1. relative imports under `services/ingress` become absolute, resolved where the file stands;
2. each package's `__init__.py` (when missing), and `git mv` of every old module that is still at the top level;
3. every `*.py *.md *.toml *.yaml *.yml *.json *.txt *.js` of the repo rewritten from `MOVES`;
4. `ruff check --fix --select I` and `ruff format` on the Python files it changed.

The `llm_*` modules are not moved here: they go to `services/ingress/llm/` with the `/v1` work.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python tools/move_ingress.py`: the repo root, for `tools.move_libs`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.move_libs import ROOT, Renames, git, git_moves, make_absolute, rewrite_tree

INGRESS = ROOT / "services" / "ingress"

PACKAGES: dict[str, list[str]] = {
    "tasks": ["task_router", "task_store", "task_forms", "hosted_tasks", "approval_tasks", "upstream_task_ids"],
    "sending": ["routed_sender", "request_path", "grant_cache", "down_servers"],
    "sessions": ["session_state", "streams", "notifications"],
    "catalog": ["tool_lists"],
    "modes": ["codemode", "discovery"],
    "auth": ["access_tokens", "keys", "owners", "refused_credentials", "oauth_routes"],
    "web": ["http_headers", "http_limits", "hosts", "pages", "response_writes", "lost_connections", "registry_out"],
    "mcp_edge": ["answers"],
}

# old module -> new dotted path under services.ingress (a rename where the old name is now a package's)
MOVES: dict[str, str] = {old: f"{pkg}.{old}" for pkg, olds in PACKAGES.items() for old in olds}
MOVES["sessions"] = "sessions.session_ids"
MOVES["catalog"] = "catalog.aggregated"

RENAMES = Renames("services.ingress", MOVES)
rewrite = RENAMES.rewrite
OWN_FILES = frozenset({"move_ingress.py", "test_move_libs.py"})  # they name the old modules on purpose


def main() -> int:
    absolute = make_absolute(INGRESS)
    for pkg in PACKAGES:
        init = INGRESS / pkg / "__init__.py"
        init.parent.mkdir(exist_ok=True)
        if not init.exists():  # each package's docstring, what it holds and what sits around it, is in the tree
            init.write_text(f'"""services.ingress.{pkg}: docs/architecture.md, "The map"."""\n')
            git("add", str(init.relative_to(ROOT)))
    git_moves(INGRESS, RENAMES)
    changed = rewrite_tree(RENAMES, OWN_FILES, absolute)
    print(f"moved; {len(changed)} files rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
