"""The Code Mode contract: the five meta-tools an agent in Code Mode sees instead of the catalog.

Ingress lists these definitions and forwards calls to them to the codemode service
(`CodeModeCall` on `subjects.CODEMODE_CALL`). The descriptions are the only tool text a model in
Code Mode reads, so they are short and exact; docs/code-mode.md explains them at length.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "CODE_MODE_HEADER",
    "EXECUTE_CODE",
    "META_TOOLS",
    "META_TOOL_NAMES",
    "code_mode_choice",
    "on_off",
]

CODE_MODE_HEADER: Final = "x-bastion-code-mode"
"""Request header `X-Bastion-Code-Mode: on|off`: overrides the key's `code_mode` setting."""

EXECUTE_CODE: Final = "execute_code"

_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}

META_TOOLS: Final[tuple[dict[str, Any], ...]] = (
    {
        "name": "list_tool_files",
        "description": (
            "List the tool stub files, one line per server you can use: path, tool count, summary. "
            "Read one with read_tool_file, then call its functions inside execute_code."
        ),
        "inputSchema": _NO_ARGUMENTS,
    },
    {
        "name": "read_tool_file",
        "description": (
            "Read a stub file (Python-style signatures of one server's tools), each line numbered. "
            "Optionally only lines start_line..end_line (1-based, inclusive)."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "e.g. servers/github.py"},
                "start_line": {"type": "integer", "minimum": 1, "default": 1},
                "end_line": {"type": ["integer", "null"], "minimum": 1, "default": None},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
    },
    {
        "name": "get_tool_docs",
        "description": "Full description and every parameter's schema of one tool.",
        "inputSchema": {
            "type": "object",
            "properties": {"name": {"type": "string", "description": "module.function, as in the stubs"}},
            "required": ["name"],
            "additionalProperties": False,
        },
    },
    {
        "name": "search_tools",
        "description": (
            "Find tools by keywords, best match first: one line each, module.function(signature) — summary."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    },
    {
        "name": EXECUTE_CODE,
        "description": (
            "Run a Starlark script (Python subset: no imports, while, recursion, try or classes). "
            "Call tools as module.function(arg=value): the result is the tool's JSON (dict/list) or text; "
            "a failed call stops the script with its error. "
            'parallel([("module.function", {"arg": value}), ...]) runs calls concurrently, results in order. '
            "Returns what print() wrote, then `result` if the script set that variable. "
            "Time, memory, output and tool calls are limited; an exceeded limit is named."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Starlark source"}},
            "required": ["code"],
            "additionalProperties": False,
        },
    },
)

META_TOOL_NAMES: Final = frozenset(tool["name"] for tool in META_TOOLS)


def on_off(header: str | None, default: bool, name: str) -> bool | str:
    """A request switch: the header `name` if given (`on`/`off`), else `default`.

    An error message (str) for any other value."""
    if header is None:
        return default
    value = header.strip().lower()
    if value in ("on", "off"):
        return value == "on"
    return f"{name} must be 'on' or 'off', got {header[:40]!r}"


def code_mode_choice(header: str | None, key_default: bool) -> bool | str:
    """Whether a request is in Code Mode: the header if given (`on`/`off`), else the key's setting.

    Returns an error message (str) for any other header value."""
    return on_off(header, key_default, "X-Bastion-Code-Mode")
