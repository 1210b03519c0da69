"""What one key may use in Code Mode: its tools as `module.function`, built once per visible set.

Servers become modules and tools become functions, each made a Python / Starlark identifier
(`github-legacy` -> `github_legacy`, `get-issue` -> `get_issue`, a keyword gets a trailing `_`).
Names are assigned over sorted input, so the same tools always get the same names; clashes
after cleaning get `_2`, `_3`, ... in that order. Parameter names are made identifiers the same
way and mapped back to the upstream's names when a script calls the tool.
"""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["ToolSpec", "Toolset", "identifier"]

_INVALID = re.compile(r"[^A-Za-z0-9_]+")
_KEYWORDS: Final = frozenset({"load", "True", "False", "None"} | set(keyword.kwlist))
"""Keywords of Python and Starlark (stubs must parse as Python, scripts as Starlark)."""
_GLOBALS: Final = frozenset({"fail", "print", "parallel", "result", "struct", "len", "str", "dict", "list"})
"""Names a script uses on their own: a module (written bare before its `.`) must not look like one."""


def identifier(name: str, fallback: str = "x", reserved: frozenset[str] = _KEYWORDS) -> str:
    """`name` made a valid identifier that is not `reserved` (deterministic, may collide)."""
    ident = _INVALID.sub("_", name).strip("_") or fallback
    if ident[0].isdigit():
        ident = f"_{ident}"
    if ident in reserved or keyword.issoftkeyword(ident):
        ident = f"{ident}_"
    return ident


def _unique(names: Iterable[str], fallback: str, reserved: frozenset[str] = _KEYWORDS) -> dict[str, str]:
    """original -> identifier, first come first served over the given (sorted) order."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for name in names:
        base = identifier(name, fallback, reserved)
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}_{n}"
        taken.add(ident)
        out[name] = ident
    return out


@dataclass(frozen=True, slots=True)
class ToolSpec:
    module: str
    function: str
    server: str
    tool: str
    """The upstream's own tool name."""
    definition: dict[str, Any]
    """The upstream's `Tool` as wire JSON."""
    params: dict[str, str] = field(default_factory=dict)
    """Identifier a script uses -> the upstream's parameter name."""

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.function}"

    @property
    def description(self) -> str:
        return str(self.definition.get("description") or "")

    @property
    def schema(self) -> dict[str, Any]:
        schema = self.definition.get("inputSchema")
        return schema if isinstance(schema, dict) else {}

    def upstream_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """A script's keyword arguments with the upstream's parameter names."""
        return {self.params.get(name, name): value for name, value in arguments.items()}


class Toolset:
    """Tools of several servers, named for scripts. Immutable once built."""

    def __init__(self, tools: Iterable[tuple[str, dict[str, Any]]]) -> None:
        by_server: dict[str, list[dict[str, Any]]] = {}
        for server, definition in tools:
            if isinstance(definition.get("name"), str):
                by_server.setdefault(server, []).append(definition)
        modules = _unique(sorted(by_server), "server", _KEYWORDS | _GLOBALS)
        self.modules: dict[str, list[ToolSpec]] = {}
        self.servers: dict[str, str] = {}
        """module -> server name."""
        self.by_name: dict[str, ToolSpec] = {}
        for server in sorted(by_server):
            module = modules[server]
            definitions = sorted(by_server[server], key=lambda d: d["name"])
            functions = _unique((d["name"] for d in definitions), "tool")
            specs = []
            for definition in definitions:
                properties = (definition.get("inputSchema") or {}).get("properties") or {}
                names = _unique(sorted(properties), "arg") if isinstance(properties, dict) else {}
                spec = ToolSpec(
                    module=module,
                    function=functions[definition["name"]],
                    server=server,
                    tool=definition["name"],
                    definition=definition,
                    params={ident: original for original, ident in names.items()},
                )
                specs.append(spec)
                self.by_name[spec.qualified] = spec
            self.modules[module] = specs
            self.servers[module] = server

    def __len__(self) -> int:
        return len(self.by_name)

    def closest(self, name: str, n: int = 3) -> list[str]:
        """The allowed `module.function` names most like `name` (for "did you mean")."""
        candidates = list(self.by_name)
        found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
        if len(found) < n and "." in name:
            # the function part alone: `gitub.create_issue` still finds `github.create_issue`
            function = name.rsplit(".", 1)[1]
            by_function = {spec.function: spec.qualified for spec in self.by_name.values()}
            for match in difflib.get_close_matches(function, list(by_function), n=n, cutoff=0.6):
                if by_function[match] not in found:
                    found.append(by_function[match])
        return found[:n]
