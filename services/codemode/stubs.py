"""Python-style stubs generated from tool JSON schemas: what `read_tool_file` and `get_tool_docs` show a model.

Pure and deterministic: the same toolset always renders the same text. A stub file is a module
docstring, then per tool `def function(required: type, ..., optional: type = default) -> dict:`
with a one-line docstring. Types read like Python: `str`, `int`, `float`, `bool`, `list[T]`,
`Literal["a", "b"]`, unions `A | B`, and nested objects as `{"key": T, "optional?": T}`, a dict
display that is also valid Python syntax.
"""

from __future__ import annotations

import json
from typing import Any, Final

from .metatool_answers import lone_result
from .toolset import Toolset, ToolSpec

__all__ = ["file_path", "list_files", "render_docs", "render_file", "signature", "summary", "type_of"]

_MAX_DEPTH: Final = 3
_MAX_SUMMARY: Final = 160
_MAX_DEFAULT: Final = 40
_MAX_LITERALS: Final = 12
_MAX_RETURN: Final = 40
"""Longest return type a file of stubs shows; longer ones become their kind (`dict`, `list`)."""
_SIMPLE: Final = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def file_path(module: str) -> str:
    return f"servers/{module}.py"


def summary(text: str, limit: int = _MAX_SUMMARY) -> str:
    """The first sentence or line of a description, on one line, at most `limit` characters."""
    first = text.strip().split("\n\n", 1)[0]
    line = " ".join(first.split())
    for end in (". ", "! ", "? "):
        cut = line.find(end)
        if 0 < cut < limit:
            line = line[: cut + 1]
            break
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """Follow a local `$ref` (`#/$defs/X`, `#/definitions/X`) once; anything else as is."""
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return target if isinstance(target, dict) else {}
    return schema


def type_of(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> str:
    """A JSON schema as a Python-looking type (valid Python expression syntax)."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return "Any"
    if "const" in schema:
        return f"Literal[{_literal(schema['const'])}]"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        values = schema["enum"][:_MAX_LITERALS]
        more = ", ..." if len(schema["enum"]) > _MAX_LITERALS else ""
        return f"Literal[{', '.join(_literal(v) for v in values)}{more}]"
    for union in ("anyOf", "oneOf"):
        if isinstance(schema.get(union), list) and schema[union]:
            return _union(type_of(option, root, depth + 1) for option in schema[union])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union(type_of({**schema, "type": k}, root, depth) for k in kind)
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "array":
        items = schema.get("items")
        return f"list[{type_of(items, root, depth + 1)}]" if items else "list"
    if kind == "object" or "properties" in schema:
        return _object(schema, root, depth)
    return "Any"


def _union(types: Any) -> str:
    seen: list[str] = []
    for t in types:
        if t not in seen:
            seen.append(t)
    return "Any" if "Any" in seen else " | ".join(seen)


def _object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> str:
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        extra = schema.get("additionalProperties")
        return f"dict[str, {type_of(extra, root, depth + 1)}]" if isinstance(extra, dict) and extra else "dict"
    if depth >= _MAX_DEPTH:
        return "dict"
    required = _required(schema)
    fields = [
        f"{json.dumps(name if name in required else name + '?')}: {type_of(sub, root, depth + 1)}"
        for name, sub in _ordered(properties, required)
    ]
    return "{" + ", ".join(fields) + "}"


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    return properties if isinstance(properties, dict) else {}


def _required(schema: dict[str, Any]) -> set[str]:
    names = schema.get("required")
    return {name for name in names if isinstance(name, str)} if isinstance(names, list) else set()


def _ordered(properties: dict[str, Any], required: set[str]) -> list[tuple[str, Any]]:
    """Required first, then optional, each in the schema's own order."""
    items = list(properties.items())
    return [item for item in items if item[0] in required] + [item for item in items if item[0] not in required]


def _literal(value: Any) -> str:
    """A JSON value as a Python literal (always valid syntax)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else "None"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    return "None"


def _parameters(spec: ToolSpec) -> list[str]:
    schema = spec.schema
    properties = _properties(schema)
    required = _required(schema)
    ident = {original: name for name, original in spec.params.items()}
    parts = []
    for name, sub in _ordered(properties, required):
        text = f"{ident.get(name, name)}: {type_of(sub, schema)}"
        if name not in required:
            default = sub.get("default") if isinstance(sub, dict) else None
            rendered = _literal(default)
            text += f" = {rendered if len(rendered) <= _MAX_DEFAULT else '...'}"
        parts.append(text)
    return parts


def signature(spec: ToolSpec) -> str:
    """`(required: T, ..., optional: T = default)`: required parameters before optional ones."""
    return "(" + ", ".join(_parameters(spec)) + ")"


def _docstring(text: str) -> str:
    """Text safe inside a triple-quoted docstring: no escapes, no early end."""
    safe = text.replace("\\", "\\\\").replace('"""', "'''")
    return f'"""{safe} """' if safe.endswith('"') else f'"""{safe}"""'


def returns(spec: ToolSpec, *, short: bool = True) -> str:
    """What a call of the tool gives a script (`answers.tool_value`).

    The wrapped value's type, the output schema's type, or `Any` (text, or its JSON value when it is
    JSON) without one. `short`: for a file of stubs, a long type is cut to its kind (`get_tool_docs`
    shows it whole)."""
    output = spec.definition.get("outputSchema")
    inner = lone_result(output)
    if inner is not None:
        kind = type_of(inner, output)
    elif isinstance(output, dict):
        kind = type_of(output)
    else:
        return "Any"
    if short and len(kind) > _MAX_RETURN:
        return "dict" if kind.startswith("{") else kind.split("[", 1)[0]
    return kind


def render_file(toolset: Toolset, module: str) -> str:
    """The stub of one module (server)."""
    specs = toolset.modules[module]
    lines = [
        _docstring(
            f"Tools of server {toolset.servers[module]!r}: {len(specs)}. "
            f"Call them inside execute_code as {module}.<function>(arg=value); get_tool_docs for details."
        ),
        "",
    ]
    for spec in specs:
        lines.append(f"def {spec.function}{signature(spec)} -> {returns(spec)}:")
        lines.append(f"    {_docstring(summary(spec.description) or spec.tool)}")
        lines.append("")
    return "\n".join(lines)


def list_files(toolset: Toolset) -> str:
    """One line per module: `servers/<module>.py  <n> tools — <summary>`."""
    lines = []
    for module, specs in toolset.modules.items():
        names = ", ".join(spec.function for spec in specs[:6]) + (", ..." if len(specs) > 6 else "")
        count = f"{len(specs)} tool" + ("" if len(specs) == 1 else "s")
        lines.append(f"{file_path(module)}  {count} — server {toolset.servers[module]}: {names}")
    return "\n".join(lines)


def render_docs(spec: ToolSpec) -> str:
    """Everything about one tool: signature, full description, each parameter's full schema."""
    schema = spec.schema
    properties = _properties(schema)
    required = _required(schema)
    ident = {original: name for name, original in spec.params.items()}
    lines = [
        f"{spec.qualified}{signature(spec)} -> {returns(spec)}",
        f"(server {spec.server!r}, tool {spec.tool!r})",
        "",
    ]
    lines.append(spec.description.strip() or "(no description)")
    if properties:
        lines += ["", "Parameters:"]
    for name, sub in _ordered(properties, required):
        sub = sub if isinstance(sub, dict) else {}
        label = ident.get(name, name)
        also = f" (upstream name {name!r})" if label != name else ""
        need = "required" if name in required else "optional"
        lines.append(f"- {label}: {type_of(sub, schema)}, {need}{also}")
        if sub.get("description"):
            lines.append(f"    {' '.join(str(sub['description']).split())}")
        detail = {k: v for k, v in sub.items() if k not in ("description", "title")}
        if set(detail) - {"type"}:  # the type line already says the rest
            lines.append(f"    schema: {json.dumps(detail, ensure_ascii=False, sort_keys=True)}")
    if isinstance(spec.definition.get("outputSchema"), dict):
        lines += ["", f"Returns: {returns(spec, short=False)}"]
    else:
        lines += ["", "Returns: the tool's text, or the value it holds when that text is JSON (no output schema)"]
    return "\n".join(lines)
