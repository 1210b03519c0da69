"""Group `services/ingress`'s flat modules into packages by concern and rewrite every reference to them.

Re-runnable, like `tools/move_libs.py`, whose steps it runs with its own mapping: on a tree already
moved it changes nothing; a file merged later that still names an old module
(`services.ingress.task_router`, `from services.ingress import streams`, `services/ingress/keys.py`,
or `from ..request_path import` in a module a branch moved by itself) is rewritten. Steps:

1. relative imports under `services/ingress` become absolute, resolved where the file stands;
2. each package's `__init__.py`, and `git mv` of every old module that is still at the top level;
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

DOCS: dict[str, str] = {
    "tasks": '''"""MCP tasks through the gateway (docs/tasks.md): the task methods and which call becomes a
task (`task_router`), the records on the bus (`task_store`), the two forms agents speak
(`task_forms`), the tasks the gateway hosts itself (`hosted_tasks`, `approval_tasks`) and the
upstreams' task ids in the gateway's names (`upstream_task_ids`).

Below: sending, catalog, context, protocol, audit_events; the handlers only as the `TaskHost`
protocol (`task_host`). Above: the handlers, which route a task method here first.
"""
''',
    "sending": '''"""The send path: a request routed to one upstream, from a handler to policy or straight to an
executor, and back.

`routed_sender` opens the agent's call stream and keeps what cancellation needs; `request_path`
runs the send loop (encode, route, send, wait, retry on a stale grant or a rejoining replica,
read) over NATS; `grant_cache` holds policy's reusable decisions; `down_servers` says which
servers an executor reports unavailable. How each request was routed: `services.ingress.metrics`.

Below: sessions (call streams), catalog, context, protocol. Above: the handlers, tasks, web's
registry routes, mcp_edge's streams and `/v1`.
"""
''',
    "sessions": '''"""Agent sessions and the streams to them: signed session ids (`session_ids`), what a session
asked for that outlives a request (`session_state`, in KV), the call streams an upstream writes to
while a call runs (`streams`) and the standalone streams of server-initiated messages
(`notifications`).

Below: catalog, protocol. Above: context, sending and everything that answers an agent.
"""
''',
    "catalog": '''"""What ingress knows of the upstreams' tools, prompts and resources: the aggregated catalog
held in memory (`aggregated`) and each key's cached `tools/list` (`tool_lists`).

Below: auth (a key's record). Above: sessions, sending, modes, tasks, web, the handlers.
"""
''',
    "modes": '''"""The modes that change what `tools/list` shows and where a meta-tool call goes: Code Mode
(`codemode`) and discovery mode (`discovery`), both answered by the codemode service.

Below: catalog, auth, audit_events, protocol. Above: the handlers.
"""
''',
    "auth": '''"""Who is calling: virtual keys (`keys`) and OAuth access tokens (`access_tokens`), a user's team
and customer (`owners`), what a refused credential is logged as (`refused_credentials`) and the
OAuth routes forwarded to the oauth service (`oauth_routes`). Authorization is policy's.

Below: nothing of ingress's. Above: catalog and everything that names a caller.
"""
''',
    "web": '''"""HTTP around the MCP endpoint: limits enforced below the ASGI app (`http_limits`),
single-valued headers (`http_headers`), the host names served (`hosts`), head and body in one
write (`response_writes`), closed connections (`lost_connections`), and the plain HTTP routes: the
landing page (`pages`) and the gateway as an MCP Registry (`registry_out`).

Below: sending, catalog, auth. Above: mcp_edge and `service`, which mount them.
"""
''',
}


def main() -> int:
    absolute = make_absolute(INGRESS)
    for pkg, doc in DOCS.items():
        init = INGRESS / pkg / "__init__.py"
        init.parent.mkdir(exist_ok=True)
        if not init.exists():
            init.write_text(doc)
            git("add", str(init.relative_to(ROOT)))
    git_moves(INGRESS, RENAMES)
    changed = rewrite_tree(RENAMES, OWN_FILES, absolute)
    print(f"moved; {len(changed)} files rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
