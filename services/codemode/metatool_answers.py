"""What the meta-tools answer, as `CallToolResult` wire dicts (pure).

A run's answer is compact text: what the script printed, then `result: <json>` if it set one; on
failure, what it printed so far, then an error a model can act on (the kind, line and column, the
offending line with a caret, a short trace; for an unknown tool the closest allowed names; for a
limit, which limit and its value).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Final

import orjson

from libs.common.contracts.codemode import META_TOOL_NAMES

from .rewrite import restore
from .sandbox import RunOutcome
from .toolset import Toolset

__all__ = ["error_result", "lone_result", "run_result", "text_result", "tool_value"]

_UNDEFINED = re.compile(r"^undefined: (\S+)$")
_MAX_TRACE: Final = 6
_NOT_HERE: Final = frozenset({"json", "time", "os", "sys", "re", "math", "http", "requests", "open", "socket"})
_LABEL: Final = {
    "syntax": "SyntaxError",
    "name": "NameError",
    "runtime": "Error",
    "tool": "ToolError",
    "result": "ResultError",
    "internal": "InternalError",
}


def text_result(text: str, *, is_error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if is_error:
        result["isError"] = True
    return result


def error_result(text: str) -> dict[str, Any]:
    return text_result(text, is_error=True)


def _source_line(code: str, line: int, column: int) -> list[str]:
    lines = code.splitlines()
    if not 1 <= line <= len(lines):
        return []
    text = lines[line - 1]
    out = [f"  {line} | {text}"]
    if column >= 1:
        out.append(f"  {' ' * len(str(line))} | {' ' * (column - 1)}^")
    return out


def _name_hint(message: str, toolset: Toolset) -> str:
    """An undefined `module.function` (or module) explained, with the closest allowed names."""
    match = _UNDEFINED.match(message)
    if match is None:
        return message
    name = restore(match.group(1))
    if "." in name:
        closest = toolset.closest(name)
        hint = f"; closest: {', '.join(closest)}" if closest else "; search_tools finds tools by keyword"
        return f"no tool {name} for this key{hint}"
    if name in META_TOOL_NAMES:
        return f"{name} is a meta-tool of the agent; a script cannot call it"
    if name in _NOT_HERE:
        return (
            f"undefined: {name} (the sandbox has no modules besides the tool modules, and no files, network or clock)"
        )
    modules = difflib.get_close_matches(name, list(toolset.modules), n=3, cutoff=0.6)
    return f"undefined: {name}" + (f"; tool modules like it: {', '.join(modules)}" if modules else "")


def _error_text(error: dict[str, Any], code: str, toolset: Toolset) -> list[str]:
    kind = error.get("type", "internal")
    if kind == "limit":
        return [f"LimitExceeded: {error['message']}"]
    message = str(error.get("message", ""))
    if kind == "name":
        message = _name_hint(message, toolset)
    if kind == "tool":
        message = f"{error.get('tool')} failed: {message}"
    line, column = int(error.get("line") or 0), int(error.get("column") or 0)
    where = f" at line {line}, column {column}" if line else ""
    out = [f"{_LABEL.get(kind, 'Error')}{where}: {message}"]
    out += _source_line(code, line, column)
    trace = error.get("trace") or []
    if len(trace) > 1:
        frames = trace[-_MAX_TRACE:]
        out.append("trace: " + ", ".join(f"line {f['line']} in {f['function']}" for f in frames))
    for more in error.get("more") or []:
        out.append(f"also: {_name_hint(str(more), toolset)}")
    return out


def run_result(outcome: RunOutcome, code: str, toolset: Toolset, max_output_bytes: int) -> dict[str, Any]:
    parts: list[str] = []
    if outcome.output:
        parts.append(outcome.output)
    if outcome.truncated:
        parts.append(f"[printed output cut at the limit of {max_output_bytes} bytes]")
    if outcome.error is not None:
        parts += _error_text(outcome.error, code, toolset)
        return error_result("\n".join(parts))
    if outcome.result is not None:
        parts.append(f"result: {outcome.result}")
    if not parts:
        parts.append("(no output: print() something or set `result`)")
    return text_result("\n".join(parts))


def lone_result(output_schema: Any) -> dict[str, Any] | None:
    """The schema of `result` when a tool's output schema is an object of that one property.

    How the SDKs' servers (MCPServer, FastMCP) declare a return value that is not an object, which they
    send wrapped as `{"result": value}`. Scripts get the value itself; stubs show its type."""
    if not isinstance(output_schema, dict):
        return None
    properties = output_schema.get("properties")
    if not isinstance(properties, dict) or set(properties) != {"result"}:
        return None
    inner = properties["result"]
    return inner if isinstance(inner, dict) else {}


def tool_value(result: dict[str, Any], output_schema: dict[str, Any] | None = None) -> Any:
    """What a tool call returns inside a script.

    Structured content, else text (parsed as JSON when it is JSON), else the content blocks without
    binary data.

    A value wrapped as `{"result": value}` (`lone_result`) is unwrapped; FastMCP flags its wrapper
    (`x-fastmcp-wrap-result`), and then a string is parsed when it is JSON text (mcp-atlassian
    returns its JSON that way), as it would be from a plain text result."""
    structured = result.get("structuredContent")
    if structured is not None:
        if lone_result(output_schema) is not None and isinstance(structured, dict) and set(structured) == {"result"}:
            inner = structured["result"]
            flagged = isinstance(output_schema, dict) and output_schema.get("x-fastmcp-wrap-result") is True
            return _json_or_text(inner) if flagged and isinstance(inner, str) else inner
        return structured
    content = result.get("content") or []
    texts = [block.get("text", "") for block in content if isinstance(block, dict) and block.get("type") == "text"]
    if texts:
        return _json_or_text("\n".join(texts))
    return [
        {k: v for k, v in block.items() if k not in ("data", "blob")} for block in content if isinstance(block, dict)
    ]


def _json_or_text(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
