"""Which parts of a call's Cedar `context` a policy set can read, so a call's context holds only those.

Cedar builds a request's context from JSON on every decision, in time that grows with the context: a
call with thirty arguments cost ~550 µs where one with a single argument cost ~90 µs, though the policy
read one attribute. Cedar names every attribute it reads statically (`context.arguments.amount`,
`context.arguments has amount`, `context.arguments["x y"]`: no expression computes a name), so the
policies' JSON form (EST) says what a decision can see, once per policy set.

`Reads` is a tree of the attribute names read under `context`: a name maps to the tree read under it,
or to `WHOLE` when the value itself is used (compared, `contains`, `isEmpty`, passed to a function).
Everything not named is left out of the context, which changes no decision:

- an attribute only read through (`.a.b`) keeps what is read under it;
- `has a` keeps `a` when present (with what else is read under it), so the test answers as it would;
- a record used as a value (`context.arguments == {...}`, `context.arguments.isEmpty()`, the whole
  `context`) is kept whole, with everything in it;
- a value that is not a record is kept as it is.

Unknown node kinds are walked as values: reading more than needed costs time, never a decision.
`tests/unit/test_context_reads.py` holds every policy form against the full context's decisions.
"""

from __future__ import annotations

import json
from typing import Any, Final, TypeAlias

__all__ = ["WHOLE", "Reads", "context_reads", "pruned"]

WHOLE: Final = None
"""The value is read as a whole: keep it all."""

Reads: TypeAlias = "dict[str, Reads] | None"
"""Attribute name -> what is read under it; `WHOLE` (None): everything."""

_LEAVES: Final = frozenset(("Value", "Var", "Slot", "Unknown"))
"""Node kinds with no expression under them (a `Value` literal may look like one, and is not)."""


def context_reads(policies_json: str) -> Reads:
    """What the Cedar JSON policy set `policies_json` reads of `context` (`WHOLE`: all of it)."""
    reads: dict[str, Reads] = {}
    try:
        whole = not _walk(json.loads(policies_json), reads)
    except RecursionError:  # nested past Python's stack: read it all rather than guess
        return WHOLE
    return WHOLE if whole else reads


def pruned(value: Any, reads: Reads) -> Any:
    """`value` with only the record attributes `reads` names (a value that is not a record: as it is)."""
    if reads is WHOLE or not isinstance(value, dict):
        return value
    return {name: pruned(value[name], under) for name, under in reads.items() if name in value}


def _walk(node: Any, reads: dict[str, Reads]) -> bool:
    """Note in `reads` what `node` (any JSON under a policy set) reads of `context`; False: all of it."""
    if isinstance(node, list):
        return all(_walk(item, reads) for item in node)
    if not isinstance(node, dict):
        return True
    path = _context_path(node)
    if path is not None:  # `context` or a `.` chain on it, used as a value
        return _mark(reads, path)
    has = node.get("has")
    if len(node) == 1 and isinstance(has, dict):
        under = _context_path(has.get("left"))
        attr = has.get("attr")
        if under is not None and isinstance(attr, str):
            return _mark(reads, [*under, attr], whole=False)
    return all(_walk(child, reads) for kind, child in node.items() if kind not in _LEAVES)


def _context_path(node: Any) -> list[str] | None:
    """The attribute names of `context.a.b...` when `node` is that expression, else None."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    if node.get("Var") == "context":
        return []
    access = node.get(".")
    if not isinstance(access, dict) or not isinstance(access.get("attr"), str):
        return None
    under = _context_path(access.get("left"))
    return None if under is None else [*under, access["attr"]]


def _mark(reads: dict[str, Reads], path: list[str], whole: bool = True) -> bool:
    """Note that the value at `path` is read: whole, or only whether it is there (`has`).

    False when `path` is `context` itself."""
    if not path:
        return False
    level: dict[str, Reads] = reads
    for name in path[:-1]:
        below = level.setdefault(name, {})
        if below is WHOLE:
            return True  # kept whole already: everything under it is
        level = below
    if whole:
        level[path[-1]] = WHOLE
    else:
        level.setdefault(path[-1], {})
    return True
