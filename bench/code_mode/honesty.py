"""The mechanical honesty check of a Code Mode transcript: a script may only use what the model saw.

Every tool a script calls must have been shown, with its parameters, by an earlier meta-tool
answer of the same transcript:
  search_tools    a result line `module.function(signature) — summary`
  read_tool_file  the line `def function(signature) -> dict:` of `servers/<module>.py`
  get_tool_docs   the docs of `module.function` (signature and a `- name:` line per parameter)
and every keyword argument the script passes must appear as a parameter (`name:`) in that
evidence. Checked twice: before the script runs, in its syntax tree (Starlark parses as Python:
direct calls `module.function(arg=...)` and `parallel` entries `("module.function", {"arg": ...})`),
which names the offending line; and after it ran, against the calls the upstreams actually
received, so a tool or argument name computed at run time cannot slip through.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Shown", "ToolUse", "check", "check_calls", "check_fields", "tool_uses"]


@dataclass(frozen=True)
class Shown:
    """One earlier meta-tool answer."""

    tool: str
    arguments: dict[str, object]
    output: str


@dataclass(frozen=True)
class ToolUse:
    name: str
    """module.function"""
    arguments: tuple[str, ...]
    line: int
    positional: bool = False


def tool_uses(code: str, modules: Iterable[str]) -> list[ToolUse]:
    modules = set(modules)
    tree = ast.parse(code)
    uses = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in modules
        ):
            names = tuple(k.arg for k in node.keywords if k.arg is not None)
            uses.append(ToolUse(f"{node.func.value.id}.{node.func.attr}", names, node.lineno, bool(node.args)))
        elif (
            isinstance(node, ast.Tuple)
            and len(node.elts) == 2
            and isinstance(node.elts[0], ast.Constant)
            and isinstance(node.elts[0].value, str)
            and node.elts[0].value.split(".")[0] in modules
        ):
            arguments = node.elts[1]
            names = (
                tuple(k.value for k in arguments.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
                if isinstance(arguments, ast.Dict)
                else ()
            )
            uses.append(ToolUse(node.elts[0].value, names, node.lineno))
    return sorted(uses, key=lambda use: (use.line, use.name))


def _evidence(name: str, shown: list[Shown]) -> list[str]:
    module, _, function = name.partition(".")
    found = []
    for answer in shown:
        if answer.tool == "search_tools":
            found += [line for line in answer.output.splitlines() if f"{name}(" in line]
        elif answer.tool == "read_tool_file" and answer.arguments.get("path") == f"servers/{module}.py":
            found += [line for line in answer.output.splitlines() if re.search(rf"\bdef {re.escape(function)}\(", line)]
        elif answer.tool == "get_tool_docs" and answer.arguments.get("name") == name and f"{name}(" in answer.output:
            found.append(answer.output)
    return found


def _unshown(name: str, arguments: Iterable[str], shown: list[Shown], where: str) -> list[str]:
    evidence = _evidence(name, shown)
    if not evidence:
        return [f"{where}: {name} was never shown by a meta-tool earlier in the transcript"]
    text = "\n".join(evidence)
    return [
        f"{where}: argument {argument!r} of {name} was never shown"
        for argument in arguments
        if not re.search(rf"(?<![\w.]){re.escape(argument)}\s*:", text)
    ]


def check(code: str, shown: list[Shown], modules: Iterable[str]) -> list[str]:
    """Before a script runs: problems found in its text; empty when every tool and argument it
    names was shown earlier. Calls whose tool or arguments are computed at run time escape this
    reading; `check_calls` catches them from what the upstreams actually received."""
    try:
        uses = tool_uses(code, modules)
    except SyntaxError as exc:
        return [f"the script does not parse: {exc}"]
    problems = []
    for use in uses:
        found = _unshown(use.name, use.arguments, shown, f"line {use.line}")
        if use.positional and not any("never shown by" in p for p in found):
            found.append(f"line {use.line}: {use.name} is called with positional arguments")
        problems += found
    return problems


def check_calls(calls: Iterable[tuple[str, Iterable[str]]], shown: list[Shown]) -> list[str]:
    """After a script ran: every call the upstreams received from it, as (`module.function`,
    argument names as the stubs spell them), must have been shown with those arguments."""
    problems: list[str] = []
    for name, arguments in calls:
        problems += [p for p in _unshown(name, arguments, shown, "at run time") if p not in problems]
    return problems


def _field_reads(tree: ast.AST) -> list[tuple[str, int]]:
    """String keys a script reads: `value["key"]` and `value.get("key", ...)`."""
    reads = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            reads.append((node.slice.value, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            reads.append((node.args[0].value, node.lineno))
    return reads


def _own_words(tree: ast.AST) -> list[str]:
    """The script's own string literals, except dict keys and the keys it reads."""
    keys = {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys if k is not None}
    keys |= {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    keys |= {
        id(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in keys
    ]


def check_fields(code: str, task: str, outputs: list[str]) -> list[str]:
    """Result shapes are knowledge too: every key a script reads (`value["key"]`, `.get("key")`)
    must have been seen earlier in the transcript: in an answer of a meta-tool or an earlier script
    as `"key"`, `'key'` or `key:`, or as a word of the task itself; or be a name the script
    chose itself in a string of its own (an alias in its SQL), not as a dict key."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"the script does not parse: {exc}"]
    text = "\n".join(outputs)
    named = "\n".join(_own_words(tree))
    problems = []
    for key, line in _field_reads(tree):
        if re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", named):  # e.g. an alias in its own SQL
            continue
        quoted = f'"{key}"' in text or f"'{key}'" in text or re.search(rf"(?<![\w]){re.escape(key)}\s*:", text)
        if quoted or re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", task):
            continue
        problem = f"line {line}: reads the field {key!r}, which the transcript never showed"
        if problem not in problems:
            problems.append(problem)
    return problems
