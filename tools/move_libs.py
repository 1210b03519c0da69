"""Move `libs/common`'s flat modules into named packages and rewrite every reference to them.

Re-runnable: `.venv/bin/python tools/move_libs.py` on a tree that is already moved changes nothing, and
on a file added later that still names an old module (`libs.common.messages`, `from libs.common import
nats`, `libs/common/probes.py`) rewrites that file. Steps, in this order:

1. relative imports under `libs/` become absolute, resolved where the file stands *before* it moves;
2. `git mv` of every old module (or folder) that still exists, and each new package's `__init__.py`;
3. every `*.py *.md *.toml *.yaml *.yml *.json *.txt *.js` under the repo: dotted names, `from
   libs.common import x` and `libs/common/x.py` paths rewritten from `MOVES` (and `SPLITS`, for the
   modules whose names went two ways);
4. `ruff check --fix --select I` and `ruff format` on the Python files it changed (import order).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from libs.common.contracts import messages_codemode, messages_outcome, messages_policy

ROOT = Path(__file__).resolve().parents[1]
COMMON = ROOT / "libs" / "common"

PACKAGES: dict[str, list[str]] = {
    "contracts": [
        "admin_principals", "codemode", "command_servers", "config", "config_records", "config_text",
        "discovery", "egress", "entities", "errors", "gateway_tasks", "grants", "guardrails", "json_codec",
        "keys", "llm", "llm_config", "messages", "messages_audit", "messages_base", "messages_records",
        "messages_routed", "naming", "oauth", "oauth_upstream", "openapi_config", "pins", "refused_values",
        "registry_entries", "repeats", "results", "subjects",
    ],
    "settings": ["handed_secrets"],
    "runtime": [
        "logs", "metrics", "observability", "package_version", "patience", "probes", "refusals", "runner",
        "sealing", "semconv", "tasks", "tracing", "walls",
    ],
    "bus": [
        "blobs", "bus_client", "kvwatch", "local_lane", "nats", "permissions", "rejoin", "relay", "starting",
        "stores", "visible", "work_signing",
    ],
    "audit": ["audit_chain", "audit_content", "audit_fields", "audit_journal", "audit_publisher", "service_trail"],
    "supply_chain": ["catalog_manifest", "pin_diff", "pin_store"],
    "analytics": [
        "analytics_bind", "analytics_hidden_tables", "analytics_params", "analytics_refusal", "analytics_sql",
    ],
    "cedar": ["approvals", "cedar_eval", "cedar_policies", "policy_store"],
    "web": ["favicon", "guarded_http", "http_serving", "page_security"],
}  # fmt: skip

# old module -> new dotted path under libs.common (a rename where the old name is now a package's)
MOVES: dict[str, str] = {old: f"{pkg}.{old}" for pkg, olds in PACKAGES.items() for old in olds}
MOVES["analytics"] = "analytics.queries"

# a module split in two: the names listed went to another module; the rest follow MOVES. A split made
# after the move rewrites the moved name too (`from libs.common.contracts.config import load_config`).
_CONFIG_FILE = ("env_references", "key_hash", "load_config", "parse_config")
SPLITS: dict[str, dict[str, str]] = {
    "analytics": {"ask": "analytics.asking"},
    "egress": {name: "web.egress_rules" for name in ("EgressRefused", "EgressRules", "Resolver", "system_resolver")},
    "config": {name: "settings.config_file" for name in _CONFIG_FILE},
    "config_records": {"key_records": "settings.config_file"},
    "messages_routed": {
        name: module.__name__.removeprefix("libs.common.")
        for module in (messages_codemode, messages_outcome, messages_policy)
        for name in module.__all__
    },
}

DOCS: dict[str, str] = {
    "contracts": '''"""Contracts: the data every service and every other package of `libs.common` agrees on.

Bus messages, subjects, error kinds, the configuration's models and their sections, pins, names and
keys. Data only: nothing here opens a connection, a socket or a process (tests/unit/test_architecture.py).
Below: nothing of ours. Above: settings, runtime, bus and the rest.
"""
''',
    "runtime": '''"""Runtime: what every service process runs on, whatever it does.

The runner (start, signals, shutdown), the walls a process confines itself in (`walls/`), logs,
metrics, tracing and semantic conventions, probes, patience (retries), task helpers, sealing of
stored secrets and the refusal log.
Below: contracts and settings. Above: bus and the rest.
"""
''',
    "bus": '''"""Bus: the NATS side of every service.

Connecting (`nats`), the bus client and its local lane, relaying requests (`relay`, `rejoin`), KV
watches, blob (object store) transfers, streams and stores, the roles' permissions and work signing.
Below: contracts, settings and runtime. Above: audit, supply_chain, analytics, cedar and web.
"""
''',
    "audit": '''"""Audit: the audit trail every service writes.

The hash chain, event fields and content digests, the local journal and the publisher that drains
it onto the bus, and the per-service trail that ties them together.
Below: contracts, settings, runtime and bus. Beside it: supply_chain, analytics, cedar and web.
"""
''',
    "supply_chain": '''"""Supply chain: what a tool definition is pinned to and how pins travel.

The signed catalog manifest, the diff of two definitions and the pin store in NATS KV (the pin
records themselves are data, in `contracts.pins`).
Below: contracts, settings, runtime and bus. Beside it: audit, analytics, cedar and web.
"""
''',
    "analytics": '''"""Analytics: read-only SQL over the audit tables.

The query messages and their limits (`queries`), the read-only check of the SQL (`analytics_sql` and
its helpers), binding parameters for ClickHouse and `asking` the audit service over NATS.
Below: contracts, settings, runtime and bus. Beside it: audit, supply_chain, cedar and web.
"""
''',
    "cedar": '''"""Cedar: the policy engine's shared parts.

Compiling and evaluating Cedar policies, the policy store in NATS KV and the approvals store.
Below: contracts, settings, runtime and bus. Beside it: audit, supply_chain, analytics and web.
"""
''',
    "web": '''"""Web: HTTP shared by the services that serve or fetch it.

Serving (uvicorn on a bound socket), page security headers, the favicon, and the guarded HTTP client
whose connections follow the egress rules.
Below: contracts, settings, runtime and bus. Beside it: audit, supply_chain, analytics and cedar.
"""
''',
}

SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".txt", ".js"}
OWN_FILES = frozenset({"move_libs.py", "test_move_libs.py"})  # they name the old modules on purpose
SKIP = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)


# -- step 1: relative imports become absolute --------------------------------------------------------

_RELATIVE = re.compile(r"^(?P<indent>[ \t]*)from (?P<dots>\.+)(?P<rest>[\w.]*) import ", re.M)


def absolute_imports(path: Path) -> str:
    package = path.relative_to(ROOT).with_suffix("").parts
    package = package[:-1]  # a module's package; for __init__, its own folder (`parts` ends in "__init__")

    def swap(m: re.Match[str]) -> str:
        up = len(m["dots"]) - 1
        base = package[: len(package) - up] if up else package
        name = ".".join([*base, *([m["rest"]] if m["rest"] else [])])
        return f"{m['indent']}from {name} import "

    return _RELATIVE.sub(swap, path.read_text())


# -- step 3: references rewritten --------------------------------------------------------------------


def _names(text: str) -> list[tuple[str, str | None]]:
    body = text.strip().removeprefix("(").removesuffix(")")
    body = re.sub(r"#[^\n]*", "", body)
    out = []
    for part in body.replace("\n", " ").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, alias = part.partition(" as ")
        out.append((name.strip(), alias.strip() or None))
    return out


def _emit(indent: str, groups: dict[str, list[str]]) -> str:
    return "\n".join(f"{indent}from {module} import {', '.join(names)}" for module, names in groups.items())


class Renames:
    """The rewrite of every reference to the modules of `base` (a dotted package) that `moves` renames
    (old module -> new dotted path under `base`), `splits` naming the modules whose names went two
    ways. A fixed point: a rewritten text is rewritten to itself."""

    def __init__(self, base: str, moves: dict[str, str], splits: dict[str, dict[str, str]] | None = None) -> None:
        self.base, self.moves, self.splits = base, moves, splits or {}
        self.leaves: dict[str, dict[str, str]] = {}  # package -> {module in it: ...}, for the `<base>.<pkg>.` guard
        for new in [*moves.values(), *(new for split in self.splits.values() for new in split.values())]:
            pkg, _, leaf = new.partition(".")
            self.leaves.setdefault(pkg, {})[leaf.split(".")[0]] = new
        olds = "|".join(sorted(moves, key=len, reverse=True))
        dotted, slashed = re.escape(base), re.escape(base.replace(".", "/"))
        self._from_base_re = re.compile(rf"^(?P<indent>[ \t]*)from {dotted} import (?P<names>\([^)]*\)|[^\n]*)", re.M)
        self._from_module_re = re.compile(
            rf"^(?P<indent>[ \t]*)from {dotted}\.(?P<old>{olds}) import (?P<names>\([^)]*\)|[^\n]*)", re.M
        )
        self._dotted_re = re.compile(rf"(?<![\w.]){dotted}\.(?P<old>{olds})" + r"(?P<tail>(?:\.\w+)*+)")
        self._path_re = re.compile(rf"(?<![\w]){slashed}/(?P<old>{olds})(?P<ext>\.py|/|(?![\w]))")
        # a split made after the move: its names are rewritten from the moved module name as well
        self._moved = {moves[old]: old for old in self.splits}
        moved = "|".join(re.escape(name) for name in sorted(self._moved, key=len, reverse=True))
        self._from_moved_re = re.compile(
            rf"^(?P<indent>[ \t]*)from {dotted}\.(?P<moved>{moved}) import (?P<names>\([^)]*\)|[^\n]*)", re.M
        )
        self._dotted_moved_re = re.compile(rf"(?<![\w.]){dotted}\.(?P<moved>{moved})\.(?P<name>\w+)")

    def _new_for(self, old: str, symbol: str | None = None) -> str:
        if symbol is not None and symbol in self.splits.get(old, {}):
            return self.splits[old][symbol]
        return self.moves[old]

    def _from_base(self, m: re.Match[str]) -> str:
        """`from libs.common import nats, settings` -> one line per package (a renamed module keeps its
        old name with `as`)."""
        names = _names(m["names"])
        if not any(name in self.moves for name, _ in names):
            return m.group(0)
        groups: dict[str, list[str]] = {}
        for name, alias in names:
            if name in self.moves:
                module, _, leaf = f"{self.base}.{self.moves[name]}".rpartition(".")
                local = alias or name
                groups.setdefault(module, []).append(leaf if local == leaf else f"{leaf} as {local}")
            else:
                groups.setdefault(self.base, []).append(f"{name} as {alias}" if alias else name)
        return _emit(m["indent"], groups)

    def _from_module(self, m: re.Match[str]) -> str:
        """`from libs.common.analytics import AnalyticsQuery, ask` -> the module each name now lives in."""
        old = m["old"]
        names = _names(m["names"])
        if old in self.leaves and all(name in self.leaves[old] for name, _ in names):
            return m.group(0)  # `from libs.common.analytics import queries`: the package, already moved
        if old not in self.splits:
            return m.group(0).replace(f"{self.base}.{old} import", f"{self.base}.{self.moves[old]} import", 1)
        groups: dict[str, list[str]] = {}
        for name, alias in names:
            module = f"{self.base}.{self._new_for(old, name)}"
            groups.setdefault(module, []).append(f"{name} as {alias}" if alias else name)
        return _emit(m["indent"], groups)

    def _in_package(self, package: str, module: str) -> bool:
        """A module a later branch added to a package the move made (`catalog/own_skills.py`): not an old name."""
        folder = ROOT.joinpath(*self.base.split("."), package)
        return bool(module) and ((folder / f"{module}.py").is_file() or (folder / module).is_dir())

    def _from_moved(self, m: re.Match[str]) -> str:
        """`from libs.common.contracts.config import ConfigError, load_config` -> a line per module."""
        old = self._moved[m["moved"]]
        names = _names(m["names"])
        if not any(name in self.splits[old] for name, _ in names):
            return m.group(0)
        groups: dict[str, list[str]] = {}
        for name, alias in names:
            module = f"{self.base}.{self._new_for(old, name)}"
            groups.setdefault(module, []).append(f"{name} as {alias}" if alias else name)
        return _emit(m["indent"], groups)

    def _dotted_moved(self, m: re.Match[str]) -> str:
        return f"{self.base}.{self._new_for(self._moved[m['moved']], m['name'])}.{m['name']}"

    def _dotted(self, m: re.Match[str]) -> str:
        old, tail = m["old"], m["tail"]
        first = tail[1:].split(".")[0] if tail else ""
        if old in self.leaves and (
            first in self.leaves[old]
            or (not tail and m.string.startswith(" import ", m.end()))
            or self._in_package(old, first)
        ):
            return m.group(0)  # already `<base>.<package>.<module>`, or `from <package> import <module>`
        return f"{self.base}.{self._new_for(old, first or None)}{tail}"

    def _path(self, m: re.Match[str]) -> str:
        old = m["old"]
        if old in self.leaves and m["ext"] == "/":
            return m.group(0)  # `libs/common/analytics/` is the package now
        return f"{self.base.replace('.', '/')}/{self.moves[old].replace('.', '/')}{m['ext']}"

    def rewrite(self, text: str) -> str:
        text = self._from_base_re.sub(self._from_base, text)
        text = self._from_module_re.sub(self._from_module, text)
        if self._moved:
            text = self._from_moved_re.sub(self._from_moved, text)
            text = self._dotted_moved_re.sub(self._dotted_moved, text)
        text = self._dotted_re.sub(self._dotted, text)
        return self._path_re.sub(self._path, text)


RENAMES = Renames("libs.common", MOVES, SPLITS)
LEAVES = RENAMES.leaves
rewrite = RENAMES.rewrite


# -- the run -------------------------------------------------------------------------------------------


def _files(own: frozenset[str] | set[str] = OWN_FILES) -> list[Path]:
    """The repository's text files a move rewrites, but for `own` (the move's own script and test).

    The files git would commit (tracked, and new ones it does not ignore): what a test run installs
    under ignored folders (`.tools`' venvs, ~5,000 files of site-packages) is no file of ours, and
    reading it cost the test of this rule half a minute. Without git (an exported tree), every folder
    but `SKIP`'s."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
            paths += [Path(folder, n) for n in names]
    else:
        paths = [ROOT / name for name in listed.split("\0") if name]
    return [p for p in paths if p.suffix in SUFFIXES and p.name not in own and p.is_file()]


def make_absolute(folder: Path) -> list[str]:
    """Step 1 for every module under `folder`; the files changed, relative to the root."""
    changed = []
    for path in folder.rglob("*.py"):
        fixed = absolute_imports(path)
        if fixed != path.read_text():
            path.write_text(fixed)
            changed.append(str(path.relative_to(ROOT)))
    return changed


def git_moves(folder: Path, renames: Renames) -> None:
    """Step 2: `git mv` of every old module (or folder) of `renames` still under `folder`."""
    for old, new in renames.moves.items():
        for suffix in (".py", ""):
            source = folder / f"{old}{suffix}"
            target = folder / (new.replace(".", "/") + suffix)
            if (
                source.exists()
                and (suffix or source.is_dir())
                and source != target
                and not (old in renames.leaves and not suffix)
            ):
                git("mv", str(source.relative_to(ROOT)), str(target.relative_to(ROOT)))


def rewrite_tree(
    renames: Renames, own: frozenset[str] | set[str] = OWN_FILES, absolute: Sequence[str] = ()
) -> list[str]:
    """Steps 3 and 4: every file that names an old module rewritten, its imports (and those of the
    files step 1 made `absolute`) sorted and formatted; the files rewritten, relative to the root."""
    changed: list[str] = []
    for path in _files(own):
        before = path.read_text(errors="strict")
        after = renames.rewrite(before)
        if after != before:
            path.write_text(after)
            changed.append(str(path.relative_to(ROOT)))
    python = sorted({*absolute, *(p for p in changed if p.endswith(".py"))})
    if python:
        ruff = str(Path(sys.executable).parent / "ruff")
        subprocess.run([ruff, "check", "--fix", "--select", "I", "--quiet", *python], cwd=ROOT, check=False)
        subprocess.run([ruff, "format", "--quiet", *python], cwd=ROOT, check=False)
    return changed


def main() -> int:
    absolute = make_absolute(ROOT / "libs")
    for pkg, doc in [*DOCS.items(), ("settings", None)]:
        folder = COMMON / pkg
        folder.mkdir(exist_ok=True)
        init = folder / "__init__.py"
        if doc is not None and not init.exists():
            init.write_text(doc)
            git("add", str(init.relative_to(ROOT)))
    git_moves(COMMON, RENAMES)
    changed = rewrite_tree(RENAMES, absolute=absolute)
    print(f"moved; {len(changed)} files rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
